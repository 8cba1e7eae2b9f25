"""The trials' own pictures (tuner.store.artifacts) in the report: the best trial's, and one initial
network per init scheme, side by side. Embedded as ``<img>`` data URIs, so the file stays
self-contained and an SVG can run no script."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState

from tuner.core.keys import PRUNE_REASON
from tuner.store import artifacts as art
from tuner.views.real_params import real_params
from tuner.views.report._figures import is_complete


class Gallery:
    """Reads pictures of ``study``'s trials from its artifact folder (if there is one)."""

    def __init__(self, study: optuna.Study, artifact_dir: str | Path | None) -> None:
        self.study = study
        directory = art.artifact_dir(art.storage_url(study._storage), artifact_dir)
        self.store: FileSystemArtifactStore | None = (
            art.open_store(directory, create=False)
            if directory is not None and directory.is_dir() else None
        )

    def picture(self, trial: FrozenTrial, name: str) -> bytes | None:
        if self.store is None:
            return None
        artifact_id = art.trial_artifacts(self.study, trial).get(name)
        return art.read_artifact(self.store, artifact_id) if artifact_id else None

    def best(self, best: FrozenTrial, title: str | None = None) -> str:
        """The best trial's learning curve and initial activations (under ``title``: by
        default "Best trial #N: its pictures")."""
        pics = [(n, self.picture(best, n)) for n in (art.LEARNING_CURVE, art.INIT_ACTIVATIONS)]
        cells = "".join(_img(data, name) for name, data in pics if data)
        if not cells and not art.trial_artifacts(self.study, best):
            return ("<p class='note'>The best trial stored no pictures: its objective calls "
                    "neither <code>ctx.check_init</code> nor <code>ctx.report</code> (they "
                    "capture the initial network and the learning curve), or "
                    "<code>[objective] artifacts = false</code>.</p>")
        if not cells:
            return (f"<p class='note'>The best trial's pictures (learning curve, initial "
                    f"activations) are not in the artifact store{self._where()}.</p>")
        title = escape(title or f"Best trial #{best.number}: its pictures")
        return f"<h3>{title}</h3><div class='row'>{cells}</div>"

    def per_init(self, trials: list[FrozenTrial], maximize: bool, by: str = "") -> str:
        """For every init scheme tried, the initial network of its best trial (or, when none
        completed, of its last pruned one): why a scheme trains or not, at a glance. ``by``:
        what "best" means when the value is not the study's only metric ("by val_mse, …")."""
        chosen: dict[str, FrozenTrial] = {}
        for t in trials:
            scheme = real_params(t).get("init")
            if scheme is None or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
                continue
            current = chosen.get(str(scheme))
            if current is None or _better(t, current, maximize):
                chosen[str(scheme)] = t
        cells = []
        for scheme, t in sorted(chosen.items(), key=lambda kv: _rank(kv[1], maximize)):
            data = self.picture(t, art.INIT_ACTIVATIONS)
            if data:
                how = (f"{t.value:.4g}" if is_complete(t)
                       else escape(str(t.user_attrs.get(PRUNE_REASON, "pruned"))))
                cells.append(_img(data, f"{scheme}: trial {t.number}",
                                  f"<b>{escape(scheme)}</b> · trial {t.number} · {how}"))
        if not cells:
            return ""
        best = f"best trial ({escape(by)})" if by else "best trial"
        return ("<h2>Initial networks per init scheme</h2><p>Activations of each scheme's "
                f"{best} before its first training step (a scheme with no complete trial: its last "
                f"pruned one).</p><div class='row'>{''.join(cells)}</div>")

    def _where(self) -> str:
        return "" if self.store is not None else " (no artifact folder found; see --artifact-dir)"


def _better(a: FrozenTrial, b: FrozenTrial, maximize: bool) -> bool:
    if is_complete(a) != is_complete(b):
        return is_complete(a)
    if is_complete(a):
        return a.value > b.value if maximize else a.value < b.value
    return a.number > b.number  # two pruned ones: the latest


def _rank(t: FrozenTrial, maximize: bool) -> tuple[int, float]:
    """Best complete trials first (as in the box plot), then the pruned ones."""
    if is_complete(t):
        return 0, -t.value if maximize else t.value
    return 1, -t.number


def _img(data: bytes, alt: str, caption: str = "") -> str:
    uri = "data:image/svg+xml;base64," + base64.b64encode(data).decode()
    text = f"<div class='sub'>{caption}</div>" if caption else ""
    return f"<div>{text}<img class='pic' alt='{escape(alt)}' src='{uri}'></div>"
