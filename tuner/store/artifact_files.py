"""Where a storage keeps its trials' pictures on disk, and removing them: the part of
:mod:`tuner.store.artifacts` that needs no Optuna, so ``tuner delete`` of a plain SQLite file
(:mod:`tuner.store.sqlite_delete`) stays light. The artifact ids are Optuna's file names in its
``FileSystemArtifactStore``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tuner.store.urls import resolve_url, storage_file

ENV_VAR = "TUNER_ARTIFACT_DIR"
SERVER_DEFAULT = "tuner-artifacts"  # for database servers: in the working directory


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


def remove_artifacts(directory: Path, artifact_ids: list[str]) -> int:
    """Remove these artifacts' files from the store in ``directory`` (as Optuna's
    ``FileSystemArtifactStore.remove`` does: the file named by the id); returns how many were
    there (missing ones are skipped: a copied database, a folder cleaned by hand)."""
    if not artifact_ids or not directory.is_dir():
        return 0
    removed = 0
    for artifact_id in artifact_ids:
        path = directory / artifact_id
        if path.is_file():
            os.remove(path)
            removed += 1
    return removed
