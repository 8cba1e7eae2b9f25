"""Shared fixtures: study files, storages (SQLite, journal, the local PostgreSQL) and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tuner.core.toml_text import dump_toml

TUNER = str(Path(sys.executable).parent / "tuner")
PG_ADMIN_URL = os.environ.get("TUNER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

TINY = {
    "study": {"name": "tiny", "sampler": "random", "pruner": "none", "n_trials": 3, "seed": 0},
    "objective": {"name": "classifier", "dataset": "iris", "model": "mlp", "epochs": 2},
    "space": {
        "lr": {"low": 1e-3, "high": 0.1, "log": True},
        "batch_size": {"low": 16, "high": 32},
        "init": ["xavier_uniform", "kaiming_normal"],
        "width": 16,
        "depth": 1,
    },
}


def to_toml(data: dict[str, Any]) -> str:
    """Test study files are written by the same writer the report uses for stored configs."""
    return dump_toml(data)


def merged(base: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    """``base`` with some tables updated (a value of ``None`` removes that key)."""
    out = {k: dict(v) for k, v in base.items()}
    for section, updates in sections.items():
        table = out.setdefault(section, {})
        for k, v in updates.items():
            if v is None:
                table.pop(k, None)
            else:
                table[k] = v
    return out


@pytest.fixture
def study_file(tmp_path: Path) -> Callable[..., Path]:
    """``study_file(study={...}, space={...})`` writes the tiny study, updated, and returns it."""

    def make(name: str = "study.toml", base: dict[str, Any] = TINY, **sections: Any) -> Path:
        path = tmp_path / name
        path.write_text(to_toml(merged(base, **sections)))
        return path

    return make


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tuner.db'}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session on the local server; dropped after."""
    yield from fresh_pg_database()


@pytest.fixture
def own_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (a pool serves every study of its storage, so
    it cannot share the session's)."""
    yield from fresh_pg_database()


def fresh_pg_database() -> Iterator[str]:
    import sqlalchemy

    from tuner.store.storage import normalise_url

    name = f"tuner_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(normalise_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sqlalchemy.exc.OperationalError as e:
        pytest.fail(f"the local PostgreSQL server is needed for this test ({PG_ADMIN_URL}): {e}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's PostgreSQL database (tests keep apart by unique study names)."""
    return pg_database


def unique(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_tuner(*args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None,
              input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``tuner`` console script in ``cwd``, unaffected by the caller's
    ``$TUNER_STORAGE``/``$TUNER_ARTIFACT_DIR`` (so its default SQLite lives in ``cwd``)."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("TUNER_STORAGE", "TUNER_ARTIFACT_DIR")}
    return subprocess.run([TUNER, *args], cwd=cwd, env={**full_env, **(env or {})}, text=True,
                          capture_output=True, timeout=timeout,
                          input=input if input is not None else "")


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """:func:`run_tuner` in ``tmp_path`` unless told another folder."""

    def run(*args: str, cwd: Path | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run_tuner(*args, cwd=cwd or tmp_path, **kwargs)

    return run
