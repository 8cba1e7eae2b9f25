"""PostgreSQL for real: many workers, a database that goes away, and bad storages.

Everything here talks to the local PostgreSQL server (``conftest.pg_database``); a TCP proxy
(``_workerkit.FlakyProxy``) stands between a worker and the server when a test cuts the line.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from _workerkit import (
    FlakyProxy,
    create_study,
    finish,
    running_trial_of,
    sleepy_study,
    spawn,
    states,
    trials,
    wait_for,
)
from conftest import PG_ADMIN_URL, unique

from tuner.store.storage import normalise_url, open_storage

pytestmark = pytest.mark.postgres
PASSWORD = "s3cr3t-Pa55"


def with_password(url: str) -> str:
    return url.replace("://postgres@", f"://postgres:{PASSWORD}@", 1)


@pytest.mark.slow
def test_four_workers_finish_a_40_trial_study_exactly(pg_url: str, tmp_path: Path) -> None:
    name = unique("four")
    create_study(sleepy_study(tmp_path, name, n_trials=40, sleep=0.05), pg_url)
    url = with_password(pg_url)
    results = finish([spawn("worker", name, "--threads", "1", cwd=tmp_path,
                            env={"TUNER_STORAGE": url}) for _ in range(4)])
    assert [rc for rc, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    got = trials(pg_url, name)
    assert sorted(t.number for t in got) == list(range(len(got)))
    assert states(pg_url, name) == {"COMPLETE": 40}
    per_worker = [int(re.search(r"(\d+) trials this run", out)[1]) for _, out, _ in results]
    assert sum(per_worker) == 40  # no trial counted twice, none lost
    assert sum(n > 0 for n in per_worker) >= 2
    assert all(PASSWORD not in out + err for _, out, err in results)


@pytest.mark.slow
def test_dropped_connections_are_retried_and_the_study_completes(pg_url: str,
                                                                 tmp_path: Path) -> None:
    name = unique("drop")
    create_study(sleepy_study(tmp_path, name, n_trials=6, sleep=0.4), pg_url)
    proxy = FlakyProxy()
    url = pg_url.replace(":5432/", f":{proxy.port}/")
    proc = spawn("worker", name, "--storage", url, cwd=tmp_path,
                 env={"TUNER_STORAGE_RETRY_S": "30"})
    try:
        for done in (2, 4):
            wait_for(lambda d=done: states(pg_url, name).get("COMPLETE", 0) >= d, what=f"{done}")
            proxy.drop()  # the server "restarts": every open connection is cut
        (rc, _, err), = finish([proc])
    finally:
        proxy.close()
    assert rc == 0, err
    assert states(pg_url, name) == {"COMPLETE": 6}


@pytest.mark.slow
def test_a_database_gone_for_good_is_reported_with_the_password_masked(pg_url: str,
                                                                      tmp_path: Path) -> None:
    name = unique("gone")
    create_study(sleepy_study(tmp_path, name, n_trials=4, sleep=1.5), pg_url)
    proxy = FlakyProxy()
    url = with_password(pg_url).replace(":5432/", f":{proxy.port}/")
    proc = spawn("worker", name, cwd=tmp_path,
                 env={"TUNER_STORAGE": url, "TUNER_STORAGE_RETRY_S": "3"})
    wait_for(lambda: running_trial_of(pg_url, name, proc.pid, tmp_path) is not None,
             what="a running trial")
    proxy.close()
    (rc, out, err), = finish([proc], timeout=60)
    assert rc == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: lost the connection to storage postgresql://postgres:***@")
    assert "within 3s" in last
    assert PASSWORD not in out + err and "Traceback" not in err


@pytest.fixture(scope="module")
def newer_schema_url() -> Iterator[str]:
    """A database whose Optuna tables were set up by a (pretend) newer Optuna."""
    name = f"tuner_newer_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(normalise_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    storage = open_storage(url)
    with storage.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'v9.0.0.a'")
        conn.exec_driver_sql("UPDATE version_info SET library_version = '9.0.0'")
    storage.engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


HOST = "127.0.0.1"
# (case, URL made from the session database's URL, study name, what the one line must say)
BAD = [
    ("unreachable-host", lambda db: f"postgresql://postgres:{PASSWORD}@{HOST}:1/test", "s",
     r"cannot open storage postgresql://postgres:\*\*\*@127\.0\.0\.1:1/test: .*refused"),
    ("unknown-host", lambda db: f"postgresql://postgres:{PASSWORD}@no-such-host.invalid/test",
     "s", r"cannot open storage postgresql://postgres:\*\*\*@no-such-host\.invalid/test: "),
    ("wrong-credentials", lambda db: f"postgresql://nobody_tuner:{PASSWORD}@{HOST}/test", "s",
     r"cannot open storage postgresql://nobody_tuner:\*\*\*@.*role \"nobody_tuner\" does not"),
    ("unknown-database", lambda db: f"postgresql://postgres:{PASSWORD}@{HOST}/no_such_db_tuner",
     "s", r"database \"no_such_db_tuner\" does not exist"),
    ("unknown-study", with_password, "no-such-study", r"no study named 'no-such-study'"),
    ("newer-schema", "newer", "s", r"cannot open storage .*set up by optuna 9\.0\.0.*updat"),
]


@pytest.mark.parametrize("case, make_url, name, match", BAD, ids=[b[0] for b in BAD])
def test_bad_storage_is_one_line_exit_2_password_masked(
    case: str, make_url: Callable[[str], str] | str, name: str, match: str, pg_url: str,
    request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    if make_url == "newer":
        url = with_password(request.getfixturevalue("newer_schema_url"))
    else:
        url = make_url(pg_url)
    (rc, out, err), = finish([spawn("worker", name, "--storage", url, cwd=tmp_path)], timeout=60)
    assert rc == 2, err
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and re.search(match, err), err
    assert PASSWORD not in err


def test_worker_that_cannot_import_the_objective(pg_url: str, tmp_path: Path) -> None:
    name = unique("noimport")
    create_study(sleepy_study(tmp_path, name, n_trials=2, sleep=0.1), pg_url)
    elsewhere = tmp_path / "other-machine"
    elsewhere.mkdir()
    (rc, _, err), = finish([spawn("worker", name, "--storage", with_password(pg_url),
                                    cwd=elsewhere)])
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert re.match(rf"error: <stored study '{name}'>: \[objective\] name: cannot import module "
                    r"'sleepy'.*every worker must "
                    r"be able to import", err), err
    assert PASSWORD not in err
    assert trials(pg_url, name) == []  # nothing was started
