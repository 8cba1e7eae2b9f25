"""Per-trial pictures in an Optuna file artifact store, shown by ``tuner dashboard``.

Every trial of an objective that uses the toolkit (``ctx.check_init``, ``ctx.report``; the
built-in classifier does) stores two SVG artifacts:

* ``init-activations.svg``: per-layer activation histograms of the freshly initialised network
  on a validation batch (captured before the first training step), and
* ``learning-curve.svg``: the losses, the study's metric and any other reported curve per
  epoch (:func:`tuner.nn.pictures.learning_curve_svg`).

Where they go: ``$TUNER_ARTIFACT_DIR`` if set, else a folder beside the storage file
(``tuner.db`` → ``tuner-artifacts/``, ``journal:runs.log`` → ``runs-artifacts/``), else (a
database server) ``tuner-artifacts/`` in the working directory. ``tuner dashboard`` and
``tuner report`` look in the same place, or where ``--artifact-dir`` says. ``[objective]
artifacts = false`` turns them off. They cost a trial ~4–10 ms (BENCHMARKS.md, pictures): two
small writes to the storage and two small files; a failing disk only warns, never fails a trial.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.storages import BaseStorage

from tuner.core.errors import StorageError
from tuner.store.artifact_files import (  # noqa: F401  (re-exported: the views' one import)
    artifact_dir,
    remove_artifacts,
)
from tuner.store.rdb import uncached
from tuner.store.urls import JOURNAL_PREFIX

LEARNING_CURVE = "learning-curve.svg"
INIT_ACTIVATIONS = "init-activations.svg"
VAL_ROWS = 256  # validation rows pushed through the initial network for its histograms
_CACHE_KEY = "artifacts:store"
log = logging.getLogger("tuner")


def storage_url(storage: BaseStorage) -> str | None:
    """The URL a storage object was opened with (``journal:PATH`` for a journal file), or
    ``None`` for storages without one (in-memory)."""
    if isinstance(storage, optuna.storages.JournalStorage):
        path = getattr(storage._backend, "_file_path", None)  # JournalFileBackend
        return f"{JOURNAL_PREFIX}{path}" if path else None
    backend = uncached(storage)
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


def sink_for(trial: optuna.Trial, cache: dict[str, Any], enabled: bool = True) -> _Sink | None:
    """Where this process puts trial pictures (resolved once per process and study, kept in
    ``cache``), or ``None`` when they are off or the folder cannot be made (a warning)."""
    if _CACHE_KEY not in cache:
        sink = None
        if enabled:
            directory = artifact_dir(storage_url(trial.storage))
            try:
                sink = _Sink(open_store(directory)) if directory is not None else None
            except StorageError as e:
                log.warning("%s; trials will not save pictures", e)
        cache[_CACHE_KEY] = sink
    return cache[_CACHE_KEY]


def save_files(sink: _Sink, trial: optuna.Trial, files: Mapping[str, str],
               cache: dict[str, Any]) -> None:
    """Upload ``files`` (``{name: text}``) as artifacts of ``trial``. A failing disk warns once
    and turns pictures off for the rest of the run (``cache``)."""
    try:
        for name, text in files.items():
            path = Path(sink.scratch.name) / name
            path.write_text(text, encoding="utf-8")
            upload_artifact(artifact_store=sink.store, file_path=str(path), study_or_trial=trial)
    except OSError as e:
        log.warning("trial %d: could not save its pictures (%s); later trials will not try",
                    trial.number, e)
        cache[_CACHE_KEY] = None


# --------------------------------------------------------------------------- reading back
def trial_artifacts(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, str]:
    """``{filename: artifact_id}`` of a stored trial (the latest upload of each name)."""
    metas = get_all_artifact_meta(trial, storage=study._storage)
    return {m.filename: m.artifact_id for m in metas}


def study_artifact_ids(study: optuna.Study) -> list[str]:
    """The artifact ids of every trial of ``study`` (read before the study is deleted)."""
    return [m.artifact_id for t in study.get_trials(deepcopy=False)
            for m in get_all_artifact_meta(t, storage=study._storage)]


def read_artifact(store: FileSystemArtifactStore, artifact_id: str) -> bytes | None:
    """The bytes of an artifact, or ``None`` when its file is missing from ``store``."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        with store.open_reader(artifact_id) as f:
            return f.read()
    except (ArtifactNotFound, OSError):
        return None
