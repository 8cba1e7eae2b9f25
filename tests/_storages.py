"""What the storage tests share: the ``url`` fixture (each test on a real SQLite file and on
the local PostgreSQL; import ``sqlite_and_postgres`` into a test module to have it) and
counting the commits that write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy


@pytest.fixture(params=["sqlite", "postgres"], name="url")
def sqlite_and_postgres(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tuner.db'}"
    return request.getfixturevalue("pg_url")


def writing_commits(engine: object) -> tuple[list[int], object]:
    """``(commits, stop)``: ``commits`` gets an entry for each commit on ``engine`` (an
    engine, or ``sqlalchemy.engine.Engine`` for every engine) that wrote something; ``stop()``
    stops counting."""
    wrote: set[int] = set()  # connections that wrote since their last commit
    commits: list[int] = []

    def statement(conn, cursor, text, *args) -> None:
        if text.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            wrote.add(id(conn))

    def commit(conn) -> None:
        if id(conn) in wrote:
            wrote.discard(id(conn))
            commits.append(1)

    sqlalchemy.event.listen(engine, "before_cursor_execute", statement)
    sqlalchemy.event.listen(engine, "commit", commit)

    def stop() -> None:
        sqlalchemy.event.remove(engine, "before_cursor_execute", statement)
        sqlalchemy.event.remove(engine, "commit", commit)

    return commits, stop


@contextmanager
def statements(storage) -> Iterator[list[str]]:
    """Every SQL statement ``storage`` (tuner's RDB storage) runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, text, *args) -> None:
        seen.append(text)

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sqlalchemy.event.remove(storage.engine, "before_cursor_execute", record)
