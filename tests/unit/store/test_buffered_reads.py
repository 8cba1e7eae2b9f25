"""How little a running study reads back (tuner.store.buffered, tuner.store.rdb): Optuna's trial
cache takes this process's running trials from its copies and the trials it just finished
from what it wrote, and a new trial's first heartbeat goes with its creation. Each answer is
checked against what a fresh storage reads from the real SQLite and PostgreSQL databases."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tests._storages import sqlite_and_postgres, statements  # noqa: F401 (the url fixture)
from tests.conftest import unique
from tuner.store import buffered, incremental
from tuner.store.storage import open_storage

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")


def stored(url: str, study_id: int) -> dict[int, FrozenTrial]:
    """Every trial of the study as a fresh storage (another process) reads it."""
    fresh = open_storage(url)
    return {t._trial_id: t for t in RDBStorage._get_trials(fresh, study_id, None, set(), -1)}


def started(study: optuna.Study) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("init", ["zeros", "orthogonal"])
    trial.set_user_attr("batch_size", 32)
    trial.report(0.25, 1)
    return trial


def reading_incrementally(url: str) -> tuple[Any, optuna.Study]:
    """A storage and a new study on it whose trial cache holds one finished trial, trial 0:
    from now on its reads are the incremental ones (before any trial has finished, Optuna's
    cache reads everything)."""
    storage = open_storage(url)
    study = optuna.create_study(study_name=unique("reads"), storage=storage)
    study.tell(started(study), 0.5)
    study.get_trials()
    return storage, study


def test_the_trial_cache_reads_this_processs_trials_without_reading_them(url: str):
    storage, study = reading_incrementally(url)
    pruned, failed, running = started(study), started(study), started(study)
    storage.set_trial_system_attr(running._trial_id, "grid_id", 3)  # written at once
    study.tell(pruned, state=TrialState.PRUNED)
    study.tell(failed, state=TrialState.FAIL)
    unfinished = {pruned._trial_id, failed._trial_id, running._trial_id}
    cached = study._storage._studies[study._study_id]
    assert cached.unfinished_trial_ids == unfinished
    with statements(storage) as seen:  # what the cache's next read asks
        got = storage._get_trials(study._study_id, None, unfinished,
                                  cached.last_finished_trial_id)
    assert len(seen) == 1, seen  # ids and states only: each answer is this process's own
    assert [t.number for t in got] == [1, 2, 3]
    storage.flush()  # the running trial's buffered values, so that the database has them too
    truth = stored(url, study._study_id)
    for trial in got:
        assert trial == truth[trial._trial_id], trial.number  # every field, end times included
    assert [t.state for t in got] == [TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING]
    assert storage._finished == {}, "kept only until the cache has read them"


def test_a_finished_trial_is_read_back_as_stored_without_a_query(url: str):
    storage = open_storage(url)
    study = optuna.create_study(study_name=unique("reads"), storage=storage,
                                direction="maximize")
    trial = started(study)
    trial.report(float("inf"), 2)  # stored as NULL
    study.tell(trial, 0.75)
    with statements(storage) as seen:
        mine = storage.get_trial(trial._trial_id)  # what Optuna's tell reads back
    assert seen == []
    assert mine == stored(url, study._study_id)[trial._trial_id]
    assert mine.value == 0.75 and mine.intermediate_values == {1: 0.25, 2: float("inf")}
    mine.user_attrs["changed"] = True  # a caller's change does not reach the kept trial
    assert "changed" not in storage.get_trial(trial._trial_id).user_attrs
    assert [t.value for t in study.trials] == [0.75]


def test_a_trial_failed_elsewhere_is_read_in_full(url: str):
    storage = open_storage(url)
    name = unique("reads")
    study = optuna.create_study(study_name=name, storage=storage)
    trial = started(study)
    study.get_trials()
    other = optuna.load_study(study_name=name, storage=open_storage(url))
    other._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # declared dead
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]
    other_running = other.ask()  # another process's running trial: read as it is stored
    got = {t.number: t for t in study.get_trials()}
    assert got[other_running.number].state == TrialState.RUNNING
    assert got[other_running.number] == stored(url, study._study_id)[other_running._trial_id]


def test_a_new_trials_first_heartbeat_is_written_with_it(url: str):
    storage = open_storage(url)
    study = optuna.create_study(study_name=unique("beat"), storage=storage)

    def beats() -> dict[int, object]:
        with storage.engine.connect() as conn:
            return dict(conn.exec_driver_sql(
                "SELECT trial_id, heartbeat FROM trial_heartbeats").fetchall())

    trial = study.ask()
    first = beats()[trial._trial_id]
    with statements(storage) as seen:
        storage.record_heartbeat(trial._trial_id)  # the thread's first beat: already written
    assert seen == []
    with statements(storage) as seen:
        storage.record_heartbeat(trial._trial_id)  # the next one, an interval later
    assert any("trial_heartbeats" in s for s in seen), seen
    assert beats()[trial._trial_id] >= first
    queued = storage.create_new_trial(study._study_id, FrozenTrial(
        number=-1, state=TrialState.WAITING, value=None, datetime_start=None,
        datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
        intermediate_values={}, trial_id=-1))
    assert queued not in beats()  # a queued trial is not running: no beat until it runs


def test_a_read_that_finds_nothing_new_is_one_light_query(url: str):
    storage, study = reading_incrementally(url)
    with statements(storage) as seen:
        assert [t.number for t in study.get_trials()] == [0]
    assert len(seen) == 1, seen  # Optuna's own read: 3 queries to find that nothing is new


def test_another_processs_running_trial_is_read_again_only_when_it_changed(url: str,
                                                                          monkeypatch):
    monkeypatch.setattr(incremental, "QUIET_S", 1e9)  # however slow the machine
    storage, study = reading_incrementally(url)
    name = study.study_name
    elsewhere = open_storage(url)  # another worker's storage
    other = optuna.load_study(study_name=name, storage=elsewhere)
    theirs = started(other)
    elsewhere.flush()  # what another tuner process writes of a running trial, every few seconds

    def read() -> tuple[FrozenTrial, list[str]]:
        with statements(storage) as seen:
            [trial] = [t for t in study.get_trials() if t.number == theirs.number]
        return trial, seen

    def as_stored() -> FrozenTrial:
        return stored(url, study._study_id)[theirs._trial_id]

    trial, seen = read()
    assert len(seen) > 1 and trial == as_stored()  # new to this process: read in full
    trial, seen = read()
    assert len(seen) == 1 and trial == as_stored()  # unchanged: the light query, the copy
    for change in (lambda: theirs.report(0.5, 2),  # an intermediate value
                   lambda: theirs.set_user_attr("note", "text"),  # an attribute
                   lambda: theirs.set_user_attr("note", "longer text")):  # a longer one
        change()
        elsewhere.flush()
        trial, seen = read()
        assert len(seen) > 1 and trial == as_stored()
    theirs.set_user_attr("batch_size", 64)  # a rewrite of the same length (was 32)
    elsewhere.flush()
    assert read()[0].user_attrs["batch_size"] == 32  # unseen for up to QUIET_S seconds
    # (5 s in use: a trial read in full that long ago is read in full again)
    monkeypatch.setattr(incremental, "QUIET_S", 0.0)
    trial, seen = read()
    assert trial.user_attrs["batch_size"] == 64 and trial == as_stored()
    other.tell(theirs, 0.25)  # its end: read in full at once
    trial, seen = read()
    assert trial.state == TrialState.COMPLETE and trial == as_stored() and len(seen) > 1


def test_a_queued_trial_is_read_again_only_once_taken(url: str, monkeypatch):
    monkeypatch.setattr(incremental, "QUIET_S", 1e9)
    storage, study = reading_incrementally(url)
    name = study.study_name
    study.enqueue_trial({"lr": 0.01})
    study.get_trials()
    with statements(storage) as seen:
        assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE, TrialState.WAITING]
    assert len(seen) == 1, seen  # the queued trial, unchanged: the light query only
    other = optuna.load_study(study_name=name, storage=open_storage(url))
    taken = other.ask()  # another worker takes it
    assert taken.number == 1
    [_, trial] = study.get_trials()
    assert trial.state == TrialState.RUNNING
    assert trial == stored(url, study._study_id)[taken._trial_id]


def test_each_loaded_study_gets_another_processs_trials(url: str, monkeypatch):
    """Two studies loaded on one storage are two trial caches: what one has read is not
    taken for what the other holds."""
    monkeypatch.setattr(incremental, "QUIET_S", 1e9)
    storage = open_storage(url)
    name = unique("reads")
    first = optuna.create_study(study_name=name, storage=storage)
    first.tell(started(first), 0.5)
    second = optuna.load_study(study_name=name, storage=storage)
    elsewhere = open_storage(url)
    theirs = started(optuna.load_study(study_name=name, storage=elsewhere))
    elsewhere.flush()
    for study in (first, second, first, second):  # each cache reads it, then holds it
        assert [t.params for t in study.get_trials()][1] == theirs.params
    theirs.report(0.75, 2)
    elsewhere.flush()
    assert first.get_trials()[1].intermediate_values == {1: 0.25, 2: 0.75}
    assert second.get_trials()[1].intermediate_values == {1: 0.25, 2: 0.75}


def test_a_cache_holding_many_unfinished_trials_is_read_optunas_way(url: str, monkeypatch):
    monkeypatch.setattr(buffered, "MAX_LIGHT", 1)
    _, study = reading_incrementally(url)
    for _ in range(2):
        study.enqueue_trial({"lr": 0.01})
    for _ in range(2):  # the second read: two unfinished trials held
        got = study.get_trials()
    assert [t.state for t in got] == [TrialState.COMPLETE, *[TrialState.WAITING] * 2]
    truth = stored(url, study._study_id)
    assert all(t == truth[t._trial_id] for t in got)


def test_a_light_read_on_postgresql_is_one_statement_outside_a_transaction(pg_url: str):
    storage, study = reading_incrementally(pg_url)
    with statements(storage) as seen:
        study.get_trials()
    assert len(seen) == 1, seen  # run in autocommit: no BEGIN or ROLLBACK round trips
    with storage.scoped_session() as session:  # the pool's connections are transactional
        assert session.connection().connection.dbapi_connection.autocommit is False
