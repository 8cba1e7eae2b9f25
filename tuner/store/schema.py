"""Optuna's schema check, without alembic for a database that is already at head.

``RDBStorage.__init__`` always builds Optuna's ``_VersionManager``, which imports alembic
(0.13-0.17 s here, a quarter of ``tuner list``) to learn two revisions: the database's (one row
of ``alembic_version``) and the installed Optuna's head (the newest of its migration scripts).
For the usual database, written by this Optuna, they are equal and the manager does nothing
else. :func:`without_alembic_at_head` has the storage build :class:`AtHeadVersionManager`
instead: it reads that row and the scripts' ``revision``/``down_revision`` lines itself, and
only when the database is at head does it stand in; in every other case (a new database, an
older or a newer schema, a script it cannot read) it builds Optuna's own manager, which stamps,
checks and words its errors exactly as it always does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from optuna.storages._rdb import storage as optuna_rdb

from tuner.store.snapshot import head_revision

_swap = threading.RLock()


def database_revision(engine: Any) -> str | None:
    """The schema revision stamped in the database (``None``: not stamped, no table yet)."""
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    except Exception:  # no such table (a new database): Optuna's own manager creates it
        return None
    return rows[0][0] if len(rows) == 1 else None


class AtHeadVersionManager:
    """Takes the place of Optuna's ``_VersionManager`` (same constructor). At head, the real
    manager would do nothing and its check would pass, so neither runs; anything else that is
    asked of it (``upgrade``, ``get_current_version`` …) builds the real one first."""

    def __init__(self, url: str, engine: Any, scoped_session: Any) -> None:
        self._args = (url, engine, scoped_session)
        self._real: Any = None
        head = head_revision()
        if head is None or database_revision(engine) != head:
            self._real = _ORIGINAL(*self._args)

    def check_table_schema_compatibility(self) -> None:
        if self._real is not None:
            self._real.check_table_schema_compatibility()

    def __getattr__(self, name: str) -> Any:
        if self.__dict__.get("_real") is None:
            self._real = _ORIGINAL(*self._args)
        return getattr(self._real, name)


_ORIGINAL = optuna_rdb._VersionManager


@contextlib.contextmanager
def without_alembic_at_head() -> Iterator[None]:
    """While an ``RDBStorage`` is built (or unpickled) in this block, it gets an
    :class:`AtHeadVersionManager`."""
    with _swap:
        optuna_rdb._VersionManager = AtHeadVersionManager  # type: ignore[misc]
        try:
            yield
        finally:
            optuna_rdb._VersionManager = _ORIGINAL  # type: ignore[misc]
