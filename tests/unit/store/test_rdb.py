"""The RDB storage's own promises, on real SQLite and PostgreSQL databases.

A connection that drops *after* the server committed a new trial, but before the answer
reached tuner, is made by failing the commit's answer once (a session ``after_commit`` hook
that raises the error a cut connection raises): the commit is real, only its answer is lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import unique
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import event, exc
from sqlalchemy.orm import Session

from tuner.store.rdb import CREATE_TOKEN, ResilientRDBStorage
from tuner.store.storage import open_storage


class LostAnswers:
    """Make the next ``n`` commits of ``storage`` that create a trial succeed on the server and
    then fail as if the connection dropped before their answer came back."""

    def __init__(self, storage: ResilientRDBStorage, n: int = 1) -> None:
        self.left = n
        self.factory = storage.scoped_session.session_factory
        event.listen(self.factory, "after_flush", self._note)
        event.listen(self.factory, "after_commit", self._lose)

    @staticmethod
    def _note(session: Session, _context: object) -> None:
        if any(isinstance(row, models.TrialModel) for row in session.new):
            session.info["made_trial"] = True

    def _lose(self, session: Session) -> None:
        if session.info.pop("made_trial", False) and self.left > 0:
            self.left -= 1
            raise exc.OperationalError("COMMIT", {}, ConnectionResetError(
                "server closed the connection unexpectedly"))

    def close(self) -> None:
        event.remove(self.factory, "after_flush", self._note)
        event.remove(self.factory, "after_commit", self._lose)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResilientRDBStorage]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tuner.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    opened = open_storage(url)
    assert isinstance(opened, ResilientRDBStorage)
    yield opened
    opened.engine.dispose()


def test_a_lost_commit_answer_creates_one_trial_not_two(storage: ResilientRDBStorage) -> None:
    study = optuna.create_study(study_name=unique("lost"), storage=storage)
    lost = LostAnswers(storage)
    try:
        trial = study.ask()
    finally:
        lost.close()
    assert lost.left == 0  # the answer really was lost once
    got = study.get_trials(deepcopy=False)
    assert [(t.number, t.state) for t in got] == [(0, TrialState.RUNNING)]
    assert trial._trial_id == got[0]._trial_id and trial.number == 0
    study.tell(trial, 1.0)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]


def test_every_trial_of_a_study_is_made_once_through_repeated_lost_answers(
        storage: ResilientRDBStorage) -> None:
    study = optuna.create_study(study_name=unique("lost"), storage=storage)
    for i in range(3):
        lost = LostAnswers(storage)
        try:
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        finally:
            lost.close()
        assert len(study.trials) == i + 1
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


def test_a_queued_trial_keeps_its_parameters_and_gets_its_own_token(
        storage: ResilientRDBStorage) -> None:
    study = optuna.create_study(study_name=unique("queued"), storage=storage)
    study.enqueue_trial({"x": 0.25})
    study.enqueue_trial({"x": 0.75})
    waiting = study.get_trials(deepcopy=False)
    assert [t.state for t in waiting] == [TrialState.WAITING] * 2
    tokens = {t.system_attrs[CREATE_TOKEN] for t in waiting}
    assert len(tokens) == 2
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert [t.params["x"] for t in study.trials] == [0.25, 0.75]


def _commit_failed(cause: str) -> optuna.exceptions.StorageInternalError:
    """What Optuna raises when a commit fails: its wrapper, with the database's error as the
    cause (raised for real, so ``__cause__`` is set as Optuna sets it)."""
    try:
        try:
            raise exc.OperationalError("COMMIT", {}, Exception(cause))
        except exc.OperationalError as e:
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit. This typically happens due to "
                "invalid data in the commit, e.g. exceeding max length.") from e
    except optuna.exceptions.StorageInternalError as wrapped:
        return wrapped


def test_a_commit_that_lost_a_race_on_open_is_retried_and_a_real_one_names_its_cause() -> None:
    """Seen in the soak: a process opening the storage while others worked failed with
    Optuna's 'An exception is raised during the commit…', which names no cause."""
    from tuner.store.storage import _lost_schema_race, _reason

    assert _lost_schema_race(_commit_failed("deadlock detected"))
    assert _lost_schema_race(_commit_failed('duplicate key value violates "version_info_pkey"'))
    other = _commit_failed("permission denied for table studies")
    assert not _lost_schema_race(other)
    assert _reason(other, "postgresql://u@h/db") == "permission denied for table studies"


def test_a_pooled_connection_the_server_closed_is_replaced_silently(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Pooled connections are not pinged before each use (a round trip per transaction): one
    that the server closed while idle (a restart, an idle timeout) fails its call, which is
    repeated at once on a new connection, with no warning, as a ping would have done."""
    import sqlalchemy

    from tuner.store.storage import normalise_url

    storage = open_storage(pg_url)
    name = unique("idle")
    storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], name)
    pooled = [storage.engine.connect() for _ in range(storage.engine.pool.checkedin())]
    pids = {conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() for conn in pooled}
    for conn in pooled:
        conn.close()  # back to the pool, still open
    admin = sqlalchemy.create_engine(normalise_url(pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for pid in pids:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
    admin.dispose()
    caplog.clear()
    with caplog.at_level("INFO", logger="tuner"):
        assert storage.get_study_id_from_name(name) >= 0
    assert caplog.records == []
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() not in pids
