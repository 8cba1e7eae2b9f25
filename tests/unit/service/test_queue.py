"""The queue's rules on a real SQLite storage: the choice of study, pause, cancel, more trials,
and the pool's record kept out of every listing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import optuna
import pytest
from _workerkit import sleepy_study
from optuna.trial import TrialState

from tuner.core.errors import ConfigError, StudyNotFoundError
from tuner.core.keys import FAIL_REASON, POOL_STUDY, QUEUE_ATTR
from tuner.run.config import load_config
from tuner.service import queue as rules
from tuner.service.submit import submit
from tuner.store.queue import (
    PAUSED,
    QUEUED,
    PoolWorker,
    QueuedStudy,
    QueueEntry,
    beat,
    forget,
    pool_workers,
    queued_studies,
)
from tuner.store.sqlite_reader import read_sqlite
from tuner.store.storage import open_storage
from tuner.store.studies import snapshots, study_names


def q(name: str, priority: int = 0, running: int = 0, budget: int = 10, finished: int = 0,
      max_parallel: int | None = None, state: str = QUEUED, submitted: float = 0.0
      ) -> QueuedStudy:
    """A queued study as the queue reads it, with ``running`` stand-in running trials."""
    return QueuedStudy(name=name, study_id=0,
                       entry=QueueEntry(state, priority, max_parallel, submitted),
                       directions=["MAXIMIZE"], metrics=["value"], budget=budget,
                       finished=finished, running=running, best=None, trial_seconds=None)


def test_higher_priority_first_whatever_its_share() -> None:
    chosen = rules.choose([q("low", priority=0), q("high", priority=5, running=4)])
    assert chosen is not None and chosen.name == "high"


def test_among_equals_the_study_furthest_below_its_fair_share() -> None:
    # a: 2 of at most 4 running (half full); b: 1 of at most 4 (a quarter): b is served
    studies = [q("a", running=2, max_parallel=4), q("b", running=1, max_parallel=4)]
    assert rules.choose(studies).name == "b"
    # without a limit a study can use as many workers as it has trials left
    studies = [q("a", running=2, budget=4), q("b", running=2, budget=20)]
    assert rules.choose(studies).name == "b"


def test_first_submitted_breaks_a_tie() -> None:
    assert rules.choose([q("late", submitted=2.0), q("early", submitted=1.0)]).name == "early"


def test_no_room_no_choice() -> None:
    full = q("full", running=2, max_parallel=2)  # at its limit
    covered = q("covered", running=3, budget=5, finished=2)  # running trials cover the budget
    done = q("done", budget=5, finished=5)
    paused = q("paused", state=PAUSED)
    assert [rules.room(s) for s in (full, covered, done, paused)] == [0, 0, 0, 0]
    assert rules.choose([full, covered, done, paused]) is None
    # a study this worker cannot serve is left to others
    assert rules.choose([q("a"), q("b", priority=-1)], skip={"a"}).name == "b"


def test_room_is_the_smaller_of_budget_and_limit() -> None:
    assert rules.room(q("s", running=1, budget=10, finished=7, max_parallel=3)) == 2
    assert rules.room(q("s", running=1, budget=10, finished=2, max_parallel=3)) == 2
    assert rules.room(q("s", running=0, budget=10, finished=8)) == 2


@pytest.fixture
def submitted(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    """Two sleepy studies submitted to a fresh SQLite storage."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("alpha", "beta"):
        submit(load_config(sleepy_study(tmp_path, name, 4, 0.0)), sqlite_url,
               priority=1 if name == "alpha" else 0, max_parallel=2)
    yield open_storage(sqlite_url)
    sys.modules.pop("sleepy", None)


def test_submit_stores_the_entry_and_a_second_submit_keeps_its_place(
        submitted, tmp_path: Path, sqlite_url: str) -> None:
    studies = {s.name: s for s in queued_studies(submitted)}
    assert studies["alpha"].entry.priority == 1 and studies["alpha"].entry.max_parallel == 2
    assert studies["alpha"].state == QUEUED and studies["alpha"].left == 4
    first = studies["beta"].entry.submitted
    time.sleep(0.01)
    again = submit(load_config(tmp_path / "beta.toml"), sqlite_url, priority=7)
    assert again.entry.priority == 7 and again.entry.max_parallel is None
    assert again.entry.submitted == first


def test_pause_unpause_and_cancel(submitted) -> None:
    assert rules.pause(submitted, "alpha").state == PAUSED
    assert rules.choose(queued_studies(submitted)).name == "beta"
    assert rules.unpause(submitted, "alpha").state == QUEUED
    assert rules.choose(queued_studies(submitted)).name == "alpha"

    study = optuna.load_study(study_name="beta", storage=submitted)
    running = study.ask()  # a pool worker's trial, mid-way
    done = study.ask()
    study.tell(done, 0.5)
    row = rules.act(submitted, "cancel", "beta")
    assert row["state"] == "cancelled" and row["cancelled_trials"] == 1
    trial = submitted.get_trial(running._trial_id)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[FAIL_REASON] == rules.CANCEL_REASON
    assert submitted.get_trial(done._trial_id).state == TrialState.COMPLETE  # kept
    with pytest.raises(rules.StateError, match="cancelled already"):
        rules.pause(submitted, "beta")
    with pytest.raises(rules.StateError, match="cancelled already"):
        rules.cancel(submitted, "beta")
    assert rules.unpause(submitted, "beta").state == QUEUED
    with pytest.raises(rules.StateError, match="queued, not paused"):
        rules.unpause(submitted, "beta")


def test_resume_queues_more_trials_past_the_finished_ones(submitted) -> None:
    study = optuna.load_study(study_name="alpha", storage=submitted)
    for _ in range(4):
        t = study.ask()
        study.tell(t, 0.1)
    with pytest.raises(rules.StateError, match="has its budget"):
        rules.cancel(submitted, "alpha")  # finished: nothing to cancel, nothing changed
    assert QueueEntry.of(submitted.get_study_user_attrs(study._study_id)).state == QUEUED
    row = rules.act(submitted, "resume", "alpha", n_trials=3)
    assert (row["state"], row["finished"], row["budget"]) == (QUEUED, 4, 7)
    with pytest.raises(ConfigError, match="n_trials"):
        rules.act(submitted, "resume", "alpha")


def test_a_study_never_submitted_is_not_in_the_queue(submitted, tmp_path: Path) -> None:
    optuna.create_study(study_name="plain", storage=submitted)
    with pytest.raises(StudyNotFoundError, match="not in the queue"):
        rules.pause(submitted, "plain")
    with pytest.raises(StudyNotFoundError, match="no study named"):
        rules.pause(submitted, "nope")
    assert [s.name for s in queued_studies(submitted)] == ["alpha", "beta"]


def test_an_entry_of_another_shape_reads_as_none() -> None:
    assert QueueEntry.of({QUEUE_ATTR: {"state": "exploded"}}) is None
    assert QueueEntry.of({QUEUE_ATTR: "queued"}) is None
    entry = QueueEntry.of({QUEUE_ATTR: {"state": "paused", "priority": 3, "max_parallel": 0}})
    assert entry is not None and entry.max_parallel is None and entry.priority == 3


def test_pool_heartbeats_and_the_hidden_record(submitted, sqlite_url: str) -> None:
    me = PoolWorker(id="host:1", host="host", pid=1, device=None, started=time.time(),
                    seen=0.0, blocked={"alpha": "cannot import module 'sleepy'"})
    beat(submitted, me)
    beat(submitted, PoolWorker(id="host:2", host="host", pid=2, device="cpu",
                               started=time.time(), seen=0.0))
    assert {w.id for w in pool_workers(submitted, max_age_s=30)} == {"host:1", "host:2"}
    forget(submitted, "host:2")
    assert [w.id for w in pool_workers(submitted, max_age_s=30)] == ["host:1"]
    assert POOL_STUDY in {s.study_name for s in submitted.get_all_studies()}
    # never a study of the user's: list (both readers), the views and the queue leave it out
    assert study_names(submitted) == ["alpha", "beta"]
    assert [s.study_name for s in read_sqlite(sqlite_url, None)] == ["alpha", "beta"]
    assert [s.study_name for s in snapshots(submitted)] == ["alpha", "beta"]
    view = rules.queue_view(submitted)
    assert [s["name"] for s in view["studies"]] == ["alpha", "beta"]
    assert [w["id"] for w in view["workers"]] == ["host:1"]
    rows = {r["name"]: r for r in view["studies"]}
    assert rows["alpha"]["blocked"] == {"host:1": "cannot import module 'sleepy'"}
    assert rows["beta"]["blocked"] == {}


def test_eta_from_the_mean_trial_time_over_its_width() -> None:
    s = q("s", running=2, budget=10, finished=4)
    s.trial_seconds = 3.0
    assert s.eta_s() == pytest.approx(3.0 * 6 / 2)
    idle = q("idle", budget=10, finished=4, max_parallel=2)
    idle.trial_seconds = 3.0
    assert idle.eta_s(pool_size=8) == pytest.approx(3.0 * 6 / 2)  # its limit, not the pool
    assert q("untimed").eta_s() is None


from _storages import sqlite_and_postgres  # noqa: E402,F401  (the url fixture)


def test_the_sql_reader_agrees_with_optunas(url: str) -> None:
    """A pool worker reads the queue with a few SQL queries (store.queue._read_sql); on any
    storage it must give what reading through Optuna gives: counts, best, times, workers."""
    from tuner.core.keys import WARM_START, WORKER
    from tuner.store.queue import _read_optuna, _read_sql

    storage = open_storage(url)
    name = f"q-{time.time_ns()}"
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.set_user_attr("tuner:config", {"study": {"n_trials": 9, "metric": "val_loss"}})
    QueueEntry(priority=2, max_parallel=3).store(storage, study._study_id)
    for value in (0.5, 0.2, 0.9):
        t = study.ask()
        study.tell(t, value)
    warm = study.ask()
    warm.set_user_attr(WARM_START, "other #0")
    study.tell(warm, 0.01)  # a prior observation: not the study's best, not counted
    pruned = study.ask()
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    for who in ("host:1", "host:2", None):
        t = study.ask()
        if who:
            t.set_user_attr(WORKER, who)
            storage.flush(t._trial_id)  # as a pool worker does: a running trial's writes wait
    by_sql = {q.name: q for q in _read_sql(storage.engine)}[name]
    by_optuna = {q.name: q for q in _read_optuna(storage)}[name]
    assert by_sql == by_optuna
    counted = {q.name: q for q in _read_sql(storage.engine, counts_only=True)}[name]
    assert (counted.finished, counted.running, counted.budget, counted.entry) == \
        (by_sql.finished, by_sql.running, by_sql.budget, by_sql.entry)
    assert (by_sql.finished, by_sql.running, by_sql.best, by_sql.workers) == \
        (4, 3, 0.2, ["host:1", "host:2"])
    assert by_sql.metrics == ["val_loss"] and by_sql.directions == ["MINIMIZE"]
    assert by_sql.entry.priority == 2 and by_sql.budget == 9
    assert by_sql.trial_seconds is not None and by_sql.trial_seconds >= 0
