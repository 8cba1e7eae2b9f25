"""Storage passwords: masked in every message, and taken from the environment or a file."""

from __future__ import annotations

from pathlib import Path

import pytest
from _workerkit import create_study, finish, sleepy_study, spawn, trials
from conftest import unique

from tuner.core.errors import StorageError
from tuner.store.credentials import PASSWORD_ENV, PASSWORD_FILE_ENV, mask_url, with_password
from tuner.store.storage import open_storage

PW = "Zq9-hunter2"


@pytest.mark.parametrize("url, shown", [
    ("postgresql://tuner:secret@db/tuner", "postgresql://tuner:***@db/tuner"),
    ("postgresql+psycopg://u:p%40ss@h:5432/d", "postgresql+psycopg://u:***@h:5432/d"),
    ("mysql+pymysql://u:pw@h/d?charset=utf8", "mysql+pymysql://u:***@h/d?charset=utf8"),
    ("postgresql://u@h/d?password=pw&sslmode=require",
     "postgresql://u@h/d?password=***&sslmode=require"),
    ("postgresql://u@h/d", "postgresql://u@h/d"),
    # SQLAlchemy accepts raw spaces and '@' in a password: both stay hidden
    ("postgresql://u:pa ss@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
    ("postgresql://u:p@ss@h/d", "postgresql://u:***@h/d"),
    ("a postgresql://u:pw@h/d, b mysql://v:x@k/e", "a postgresql://u:***@h/d, b mysql://v:***@k/e"),
    ("sqlite:///tuner.db", "sqlite:///tuner.db"),
    ("journal:study.log", "journal:study.log"),
])
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize("url, env, file_text, expected", [
    ("postgresql://tuner@db/t", {PASSWORD_ENV: "pw"}, None, "postgresql://tuner:pw@db/t"),
    ("postgresql://tuner@db/t", {PASSWORD_ENV: "ignored"}, "from-file\n",
     "postgresql://tuner:from-file@db/t"),
    ("postgresql://tuner@db/t", {PASSWORD_ENV: "p@ss/w:rd"}, None,
     "postgresql://tuner:p%40ss%2Fw%3Ard@db/t"),
    ("postgresql://tuner:in-url@db/t", {PASSWORD_ENV: "pw"}, None, "postgresql://tuner:in-url@db/t"),
    ("postgresql://db/t", {PASSWORD_ENV: "pw"}, None, "postgresql://db/t"),  # no user: no password
    ("postgresql://tuner@db/t", {}, None, "postgresql://tuner@db/t"),  # libpq may find one
    ("sqlite:///x.db", {PASSWORD_ENV: "pw"}, None, "sqlite:///x.db"),
    ("journal:x.log", {PASSWORD_ENV: "pw"}, None, "journal:x.log"),
])
def test_password_from_env_or_file(url: str, env: dict[str, str], file_text: str | None,
                                   expected: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_FILE_ENV, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if file_text is not None:
        (tmp_path / "pw").write_text(file_text)
        monkeypatch.setenv(PASSWORD_FILE_ENV, str(tmp_path / "pw"))
    assert with_password(url) == expected


@pytest.mark.parametrize("file_text, match", [
    (None, r"TUNER_STORAGE_PASSWORD_FILE=.*: cannot read the password file \(No such file"),
    ("\n", r"TUNER_STORAGE_PASSWORD_FILE=.*: the password file is empty"),
])
def test_bad_password_file(file_text: str | None, match: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pw"
    if file_text is not None:
        path.write_text(file_text)
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(path))
    with pytest.raises(StorageError, match=match):
        with_password("postgresql://tuner@db/t")


@pytest.mark.postgres
def test_the_password_from_a_file_reaches_the_driver(pg_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text(PW + "\n")
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(tmp_path / "pw"))
    storage = open_storage(pg_url)
    assert storage.engine.url.password == PW  # trust auth accepts it; a real server checks it
    assert PW not in storage.shown


@pytest.mark.postgres
@pytest.mark.slow
def test_no_command_echoes_the_password(pg_url: str, tmp_path: Path) -> None:
    url = pg_url.replace("://postgres@", f"://postgres:{PW}@", 1)
    name = unique("pw")
    study = sleepy_study(tmp_path, name, n_trials=2, sleep=0.1)
    runs = [
        ("run", str(study), "--storage", url, "--jobs", "2"),
        ("list", "--storage", url),
        ("show", "no-such-study", "--storage", url),
        ("list", "--storage", url.replace("127.0.0.1:5432", "127.0.0.1:1")),
    ]
    for args in runs:
        (rc, out, err), = finish([spawn(*args, cwd=tmp_path)], timeout=120)
        assert rc in (0, 2), (args, err)
        assert PW not in out + err, args
    cmdlines = [t.user_attrs["cmdline"] for t in trials(pg_url, name)]
    assert cmdlines and all(PW not in c for c in cmdlines)  # the workers' `ps` lines


@pytest.mark.postgres
def test_password_file_for_a_worker(pg_url: str, tmp_path: Path) -> None:
    name = unique("pwfile")
    create_study(sleepy_study(tmp_path, name, n_trials=1, sleep=0.1), pg_url)
    (tmp_path / "pw").write_text(PW)
    env = {"TUNER_STORAGE": pg_url, PASSWORD_FILE_ENV: str(tmp_path / "pw")}
    (rc, _, err), = finish([spawn("worker", name, cwd=tmp_path, env=env)])
    assert rc == 0, err
    env[PASSWORD_FILE_ENV] = str(tmp_path / "missing")
    (rc, _, err), = finish([spawn("worker", name, cwd=tmp_path, env=env)])
    assert rc == 2
    assert err.startswith("error: $TUNER_STORAGE_PASSWORD_FILE=") and len(err.splitlines()) == 1


@pytest.mark.parametrize(("url", "install"), [
    ("mysql://tuner:s3cr3t@127.0.0.1/tuner", "pip install mysqlclient (or write mysql+pymysql"),
    ("mysql+pymysql://tuner:s3cr3t@127.0.0.1/tuner", "pip install PyMySQL"),
])
def test_a_url_whose_driver_is_missing_names_the_package(url: str, install: str,
                                                          tmp_path: Path) -> None:
    from conftest import run_tuner

    r = run_tuner("list", "--storage", url, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "its database driver is not installed" in r.stderr and install in r.stderr
    assert "s3cr3t" not in r.stderr and "tuner:***@" in r.stderr
    assert list(tmp_path.iterdir()) == []
