"""Paths a study file names (a CSV/NPZ dataset, a checkpoint): resolved against the study file
once, when it is read, and stored absolute, so a resumed study reads the same files."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
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


def replaced_on_write(path: Path) -> bool:
    """How to write an output file at ``path``: ``True``, write a temporary file beside it and
    ``os.replace`` it over the target (the target is missing or a regular file: readers never
    see half a file); ``False``, write into the target itself, because it is a character
    device or a FIFO (``-o /dev/null`` must stay the machine's ``/dev/null``, even as root).
    Raises :class:`OSError` for any other kind of target (a block device, a socket)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return True
    if stat.S_ISREG(mode):
        return True
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return False
    raise OSError(errno.EINVAL, "it is neither a regular file nor a character device or FIFO")


def write_replacing(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as :func:`replaced_on_write` says: into a temporary file
    beside it, then over it in one rename (an interrupted write leaves the old file or none;
    the new file gets the umask's permissions, as ``open`` would), or into a device or FIFO.
    Raises :class:`OSError`."""
    if not replaced_on_write(path):
        with path.open("w", encoding="utf-8") as f:
            f.write(text)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
