"""store.schema: Optuna's schema check without importing alembic when the database is at head,
and Optuna's own manager, with its own words, in every other case. Real SQLite files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tuner.core.errors import StorageError
from tuner.store import schema, snapshot
from tuner.store.storage import open_storage


def _stamped(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def test_the_head_read_from_the_scripts_is_alembics(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")  # Optuna's own
    assert schema.head_revision() == storage._version_manager.get_head_version()
    assert _stamped(tmp_path / "o.db") == [schema.head_revision()]


def test_a_new_database_is_stamped_by_optunas_own_manager(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'new.db'}")
    assert _stamped(tmp_path / "new.db") == [schema.head_revision()]
    assert storage._version_manager._real is not None  # it was not at head when opened
    again = open_storage(f"sqlite:///{tmp_path / 'new.db'}", must_exist=True)
    assert again._version_manager._real is None
    assert again.get_current_version() == schema.head_revision()  # asked: the real one answers


def test_reading_a_database_at_head_never_imports_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'head.db'}"
    optuna.create_study(study_name="s", storage=url).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    probe = ("import sys\nfrom tuner.store.storage import open_storage\n"
             f"s = open_storage({url!r}, must_exist=True)\n"
             "print(len(s.get_all_trials(s.get_study_id_from_name('s'))),"
             " [m for m in sys.modules if m.startswith('alembic')])\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "[]"]


def test_an_older_schema_gets_optunas_advice(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    optuna.storages.RDBStorage(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    with pytest.raises(StorageError, match="optuna storage upgrade"):
        open_storage(f"sqlite:///{db}", must_exist=True)


def _scripts(folder: Path, *scripts: str) -> Path:
    folder.mkdir()
    for i, text in enumerate(scripts):
        (folder / f"v{i}.py").write_text(f'"""a migration"""\n{text}\n\ndef upgrade():\n    pass\n')
    return folder


def test_the_head_of_a_chain_and_of_unclear_scripts(tmp_path: Path) -> None:
    chain = ('revision = "a"\ndown_revision = None', "revision = 'b'\ndown_revision = 'a'",
             'revision = "c"\ndown_revision = "b"')
    assert snapshot.head_in(_scripts(tmp_path / "chain", *chain)) == "c"
    assert snapshot.head_in(_scripts(tmp_path / "fork", *chain, 'revision = "d"\n'
                                   'down_revision = "b"')) is None
    assert snapshot.head_in(_scripts(tmp_path / "odd", *chain, "rev = 'e'")) is None
    assert snapshot.head_in(_scripts(tmp_path / "none")) is None


def test_when_the_head_is_unclear_optunas_manager_does_the_check(tmp_path, monkeypatch) -> None:
    db = tmp_path / "x.db"
    optuna.storages.RDBStorage(f"sqlite:///{db}")
    assert open_storage(f"sqlite:///{db}")._version_manager._real is None
    monkeypatch.setattr(schema, "head_revision", lambda: None)
    assert open_storage(f"sqlite:///{db}")._version_manager._real is not None
