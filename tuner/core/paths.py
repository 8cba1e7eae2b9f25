"""Paths a study file names (a CSV/NPZ dataset, a checkpoint): resolved against the study file
once, when it is read, and stored absolute, so a resumed study reads the same files."""

from __future__ import annotations

from pathlib import Path


def resolve_path(path: str, where: str) -> str:
    """An absolute path for a file a study file names: relative paths are relative to the study
    file (``where``), or to the working directory for a config that came from elsewhere."""
    base = Path(where).parent if Path(where).suffix == ".toml" else Path.cwd()
    return str((base / Path(path).expanduser()).resolve())


def missing_file_hint(where: str) -> str:
    """What to add to "FILE does not exist" when the study came from storage (resume, worker):
    its files were resolved to absolute paths on the machine that created it."""
    if Path(where).suffix == ".toml":
        return ""
    return ("; a stored study reads its files at the absolute paths it was created with: "
            "make the file available at that path on this machine")
