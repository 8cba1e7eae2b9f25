"""Reports of a stored study: a self-contained HTML page (:func:`write_report`) and the small
per-trial SVG pictures the dashboard shows (:mod:`tuner.nn.pictures`).

plotly is imported only when a report is built: trials import :mod:`tuner.nn.pictures`
and should not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

__all__ = ["build_report", "write_report"]


def write_report(study: optuna.Study, path: str | Path, *,
                 artifact_dir: str | Path | None = None) -> Path:
    """Write the HTML report of ``study`` to ``path``; ConfigError (nothing written) for a
    study without complete trials or a path that cannot be written. ``artifact_dir``: where
    the trial pictures are (default: beside the storage, see :mod:`tuner.store.artifacts`)."""
    from tuner.views.report._build import write_report as write

    return write(study, path, artifact_dir=artifact_dir)


def build_report(study: optuna.Study, *, artifact_dir: str | Path | None = None) -> str:
    """The HTML report of ``study`` as a string."""
    from tuner.views.report._build import build_report as build

    return build(study, artifact_dir=artifact_dir)
