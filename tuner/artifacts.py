"""Per-trial pictures in an Optuna file artifact store, shown by ``tuner dashboard``.

Every trial of the built-in classifier stores two SVG artifacts:

* ``init-activations.svg``: per-layer activation histograms of the freshly initialised network
  on a validation batch (captured before the first training step), and
* ``learning-curve.svg``: train/validation loss and validation accuracy per epoch.

Where they go: ``$TUNER_ARTIFACT_DIR`` if set, else a folder beside the storage file
(``tuner.db`` → ``tuner-artifacts/``, ``journal:runs.log`` → ``runs-artifacts/``), else (a
database server) ``tuner-artifacts/`` in the working directory. ``tuner dashboard`` and
``tuner report`` look in the same place, or where ``--artifact-dir`` says. ``[objective]
artifacts = false`` turns them off. They cost a trial about 2 ms (see BENCHMARKS.md): two
small writes to the storage and two small files; a failing disk only warns, never fails a trial.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.storages import BaseStorage

from tuner.errors import ConfigError, StorageError
from tuner.objectives import ObjectiveContext
from tuner.storage import JOURNAL_PREFIX, resolve_url, storage_file

ENV_VAR = "TUNER_ARTIFACT_DIR"
SERVER_DEFAULT = "tuner-artifacts"  # for database servers: in the working directory
LEARNING_CURVE = "learning-curve.svg"
INIT_ACTIVATIONS = "init-activations.svg"
VAL_ROWS = 256  # validation rows pushed through the initial network for its histograms
_CACHE_KEY = "artifacts:store"
log = logging.getLogger("tuner")


def artifact_dir(url: str | None = None, explicit: str | Path | None = None) -> Path | None:
    """Where the artifacts of storage ``url`` live (see the module doc); ``None`` for a storage
    without a place on disk (in-memory) unless ``explicit`` or ``$TUNER_ARTIFACT_DIR`` says."""
    chosen = explicit or os.environ.get(ENV_VAR)
    if chosen:
        return Path(chosen).expanduser().resolve()
    if url is None:
        return None
    url = resolve_url(url)
    path = storage_file(url)
    if path is None:  # a database server (sqlite:// in memory: nowhere)
        return None if url.startswith("sqlite:") else (Path.cwd() / SERVER_DEFAULT).resolve()
    return (path.parent / f"{path.stem}-artifacts").resolve()


def storage_url(storage: BaseStorage) -> str | None:
    """The URL a storage object was opened with (``journal:PATH`` for a journal file), or
    ``None`` for storages without one (in-memory)."""
    if isinstance(storage, optuna.storages.JournalStorage):
        path = getattr(storage._backend, "_file_path", None)  # JournalFileBackend
        return f"{JOURNAL_PREFIX}{path}" if path else None
    backend = getattr(storage, "_backend", storage)  # optuna wraps RDBStorage in a cache
    return backend.url if isinstance(backend, optuna.storages.RDBStorage) else None


def open_store(directory: Path, *, create: bool = True) -> FileSystemArtifactStore:
    """A file artifact store in ``directory`` (made if ``create``), or StorageError."""
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create artifact folder {directory}: {e.strerror}") from None
    elif not directory.is_dir():
        raise StorageError(f"artifact folder {directory} does not exist")
    return FileSystemArtifactStore(directory)


def check_setting(value: Any, where: str) -> None:
    """Validate ``[objective] artifacts`` (true or false)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: [objective] artifacts must be true or false, got {value!r}")


# --------------------------------------------------------------------------- inside a trial
def _scratch() -> tempfile.TemporaryDirectory:
    # upload_artifact copies from a file: keep that file in memory (tmpfs) where there is one.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix="tuner-pictures-", dir=shm)


@dataclass
class _Sink:
    """Where this process's trials put their pictures: the store, and one scratch folder
    for the whole run (a fresh temp folder per trial would cost more)."""

    store: FileSystemArtifactStore
    scratch: tempfile.TemporaryDirectory = field(default_factory=_scratch)


def _sink_for(trial: optuna.Trial, ctx: ObjectiveContext) -> _Sink | None:
    """The sink of this run (resolved once per process and study), or None when off."""
    if _CACHE_KEY not in ctx.cache:
        sink = None
        if ctx.settings.get("artifacts", True):
            directory = artifact_dir(storage_url(trial.storage))
            try:
                sink = _Sink(open_store(directory)) if directory is not None else None
            except StorageError as e:
                log.warning("%s; trials will not save pictures", e)
        ctx.cache[_CACHE_KEY] = sink
    return ctx.cache[_CACHE_KEY]


@dataclass
class TrialPictures:
    """The pictures of one trial: capture the initial network now, save both at the end."""

    trial: optuna.Trial
    ctx: ObjectiveContext
    sink: _Sink | None
    hp: Mapping[str, Any] = field(default_factory=dict)
    init_layers: list[Any] = field(default_factory=list)

    @classmethod
    def capture(cls, trial: optuna.Trial, ctx: ObjectiveContext, model: torch.nn.Module,
                x_val: torch.Tensor, hp: Mapping[str, Any]) -> TrialPictures:
        """Record the activation statistics of ``model`` (just initialised, not yet trained)
        on the first :data:`VAL_ROWS` rows of ``x_val (n, d)``; a no-op when artifacts are off."""
        sink = _sink_for(trial, ctx)
        pictures = cls(trial, ctx, sink, dict(hp))
        if sink is not None:
            from tuner.diagnostics import activation_stats

            pictures.init_layers = activation_stats(model, x_val[:VAL_ROWS])
        return pictures

    def save(self, curve: Mapping[str, Sequence[float]]) -> None:
        """Upload the pictures (no learning curve when no epoch finished); ``curve`` as in the
        trial's ``curve`` user attribute."""
        if self.sink is None:
            return
        from tuner.report.pictures import activations_svg, learning_curve_svg

        hp, n = self.hp, self.trial.number
        what = f"init {hp.get('init')} · activation {hp.get('activation')}"
        files = {INIT_ACTIVATIONS: activations_svg(
            self.init_layers, f"trial {n}: activations of the initial network", what)}
        if any(curve.values()):  # a trial pruned before its first epoch has no curve to draw
            files[LEARNING_CURVE] = learning_curve_svg(
                curve, f"trial {n}: learning curve", f"lr {hp.get('lr', float('nan')):.3g} · "
                f"batch size {hp.get('batch_size')} · {what}")
        try:
            for name, text in files.items():
                path = Path(self.sink.scratch.name) / name
                path.write_text(text, encoding="utf-8")
                upload_artifact(artifact_store=self.sink.store, file_path=str(path),
                                study_or_trial=self.trial)
        except OSError as e:
            log.warning("trial %d: could not save its pictures (%s); later trials will not try",
                        n, e)
            self.ctx.cache[_CACHE_KEY] = None


# --------------------------------------------------------------------------- reading back
def trial_artifacts(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, str]:
    """``{filename: artifact_id}`` of a stored trial (the latest upload of each name)."""
    metas = get_all_artifact_meta(trial, storage=study._storage)
    return {m.filename: m.artifact_id for m in metas}


def study_artifact_ids(study: optuna.Study) -> list[str]:
    """The artifact ids of every trial of ``study`` (read before the study is deleted)."""
    return [m.artifact_id for t in study.get_trials(deepcopy=False)
            for m in get_all_artifact_meta(t, storage=study._storage)]


def remove_artifacts(directory: Path, artifact_ids: list[str]) -> int:
    """Remove these artifacts' files from the store in ``directory``; returns how many were
    there (missing ones are skipped: a copied database, a folder cleaned by hand)."""
    if not artifact_ids or not directory.is_dir():
        return 0
    store = FileSystemArtifactStore(directory)
    removed = 0
    for artifact_id in artifact_ids:
        if (directory / artifact_id).is_file():
            store.remove(artifact_id)
            removed += 1
    return removed


def read_artifact(store: FileSystemArtifactStore, artifact_id: str) -> bytes | None:
    """The bytes of an artifact, or ``None`` when its file is missing from ``store``."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        with store.open_reader(artifact_id) as f:
            return f.read()
    except (ArtifactNotFound, OSError):
        return None
