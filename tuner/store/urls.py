"""Storage URLs as text: which one to use, and which file it keeps its studies in.

Resolution order: ``--storage`` > ``$TUNER_STORAGE`` > ``sqlite:///tuner.db`` (working dir).
Nothing here imports Optuna or SQLAlchemy (a plain ``sqlite:///FILE`` is read without them), so
the commands that only read stored studies (``list``, ``show``, ``export``) stay light;
:mod:`tuner.store.storage` opens what a URL names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tuner.core.errors import StorageError
from tuner.store.credentials import mask_url

DEFAULT_URL = "sqlite:///tuner.db"
ENV_VAR = "TUNER_STORAGE"
JOURNAL_PREFIX = "journal:"
SQLITE_TIMEOUT_S = 60  # how long a writer waits on a lock before "database is locked"
# sqlite:///FILE with nothing SQLAlchemy would decode or read as options: the path is the rest
_PLAIN_SQLITE = re.compile(r"sqlite:///(?P<path>[^?%#]+)")


def resolve_url(url: str | None = None) -> str:
    """The storage URL to use: the argument, else ``$TUNER_STORAGE`` (an empty one counts as
    unset), else the SQLite default. An empty argument (``--storage ""``) is an error, not a
    silent fall-back to a database the user did not name."""
    if url is not None and not url.strip():
        raise StorageError("--storage is empty; give a storage URL such as sqlite:///tuner.db, "
                           "postgresql://USER@HOST/DB or journal:FILE (or leave it out)")
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def normalise_url(url: str) -> str:
    """Map ``postgresql://`` / ``postgres://`` to the installed psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def plain_sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///FILE`` URL (no query, no %-escapes), read without
    SQLAlchemy; ``None`` for any other URL."""
    m = _PLAIN_SQLITE.fullmatch(url)
    return Path(m["path"]) if m and m["path"] != ":memory:" else None


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for other URLs or ``:memory:``)."""
    if not url.startswith("sqlite:"):
        return None
    plain = plain_sqlite_path(url)
    if plain is not None:
        return plain
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def storage_file(url: str) -> Path | None:
    """The file a ``journal:`` or ``sqlite:///`` URL keeps its studies in (``None`` for a
    database server or an in-memory database)."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):]).expanduser()
    return sqlite_path(url)


def check_not_storage(output: str | Path, url: str | None = None) -> None:
    """Raise :class:`StorageError` when ``output`` (a file a command is about to write) is the
    storage's own file at ``url`` (resolved as above), or one of its companions (``-wal``,
    ``-shm``, lock files): writing it would destroy the studies."""
    url = resolve_url(url)
    path = storage_file(url)
    if path is None:
        return
    out, db = Path(output).expanduser().resolve(), path.expanduser().resolve()
    if out.parent == db.parent and out.name.startswith(db.name):
        raise StorageError(f"refusing to write {output}: it is the storage {mask_url(url)} (or "
                           "one of its files); choose another output file")
