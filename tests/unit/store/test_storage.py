"""store.storage: which URL a command uses, and every way opening one fails, as one
StorageError that names the storage with its password masked. Real SQLite files and journals,
the local PostgreSQL server for the driver and password cases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest

from tuner.core.errors import StorageError
from tuner.store.buffered import BufferedRDBStorage
from tuner.store.storage import (
    DEFAULT_URL,
    check_not_storage,
    normalise_url,
    open_storage,
    resolve_url,
    sqlite_path,
    storage_file,
)


def test_the_flag_beats_the_environment_which_beats_the_default(monkeypatch) -> None:
    monkeypatch.delenv("TUNER_STORAGE", raising=False)
    assert resolve_url() == DEFAULT_URL == "sqlite:///tuner.db"
    monkeypatch.setenv("TUNER_STORAGE", "")
    assert resolve_url() == DEFAULT_URL  # empty counts as unset
    monkeypatch.setenv("TUNER_STORAGE", "journal:j.log")
    assert resolve_url() == "journal:j.log"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(StorageError, match="--storage is empty"):
        resolve_url("  ")


def test_urls_name_their_files_and_postgres_gets_psycopg3() -> None:
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///a.db") == "sqlite:///a.db"
    assert sqlite_path("sqlite:///a/b.db") == Path("a/b.db")
    assert sqlite_path("sqlite:////abs/b.db") == Path("/abs/b.db")
    assert sqlite_path("sqlite:///:memory:") is None and sqlite_path("postgresql://h/d") is None
    assert storage_file("journal:~/j.log") == Path("~/j.log").expanduser()


def test_a_sqlite_file_opens_buffered_in_wal_mode(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(storage, BufferedRDBStorage)
    optuna.create_study(study_name="s", storage=storage).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    again = open_storage(f"sqlite:///{tmp_path / 'a.db'}", must_exist=True)
    assert len(again.get_all_trials(again.get_study_id_from_name("s"))) == 2


@pytest.mark.parametrize(("url", "match"), [
    ("sqlite:///{tmp}/missing.db?must_exist", r"no storage at sqlite:///.*missing.db \(file "),
    ("sqlite:///{tmp}/nope/a.db", r"folder .*nope does not exist"),
    ("sqlite:///:memory:", r"in-memory SQLite database: a study there is lost"),
    ("sqlite://", r"in-memory SQLite database"),
    ("nosuchdb://h/d", r"unknown database dialect 'nosuchdb'"),
    ("postgresql://u@h:notaport/d", r"malformed storage URL"),
    ("journal:", r"journal storage needs a file"),
    ("journal:{tmp}/missing.log?must_exist", r"no storage at journal:.*missing.log"),
    ("journal:{tmp}/nope/j.log", r"folder .*nope does not exist"),
])
def test_a_storage_that_cannot_be_opened_is_one_error(tmp_path: Path, url: str, match) -> None:
    url, _, flag = url.format(tmp=tmp_path).partition("?")
    with pytest.raises(StorageError, match=match):
        open_storage(url, must_exist=flag == "must_exist")
    assert not any(tmp_path.iterdir())  # nothing was created


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    with pytest.raises(StorageError, match=r"cannot open storage sqlite:///.*notes.txt: .*"
                                           r"not a database"):
        open_storage(f"sqlite:///{tmp_path / 'notes.txt'}")


@pytest.mark.postgres
def test_a_bad_postgres_password_never_shows(pg_url: str) -> None:
    url = pg_url.replace("postgresql://postgres@", "postgresql://nobody:s3cret-pw@")
    with pytest.raises(StorageError) as e:
        open_storage(url)
    assert "s3cret-pw" not in str(e.value) and "***" in str(e.value)


def test_no_command_writes_over_the_storage_or_its_companions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    for name in ("tuner.db", "tuner.db-wal", "tuner.db.tuner-lock"):
        with pytest.raises(StorageError, match="it is the storage"):
            check_not_storage(tmp_path / name, url)
    check_not_storage(tmp_path / "report.html", url)
    check_not_storage(tmp_path / "tuner.db", "postgresql://h/d")  # a server keeps no file here
