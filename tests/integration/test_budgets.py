"""A study's budget and timeout, whatever mix of processes runs it (issue 12 items 1 and 2).

Every process that runs trials (``run``, ``resume``, ``worker``, ``--jobs``) claims under the
study's lock, so the budget is exact for any mix of them; a ``--timeout`` flag is its run's own,
never stored; a stored ``[study] timeout`` counts from the study's first trial.
Real ``tuner`` processes on a real SQLite file or the local PostgreSQL server.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from _workerkit import finish, sleepy_study, spawn, trials, wait_for
from conftest import run_tuner, to_toml, unique
from optuna.trial import TrialState

from tuner.core.keys import CONFIG_ATTR
from tuner.store.storage import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _stored(url: str, name: str) -> dict:
    return optuna.load_study(study_name=name, storage=open_storage(url)).user_attrs[CONFIG_ATTR]


def _finished(url: str, name: str) -> int:
    return sum(t.state in FINISHED for t in trials(url, name))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_resume_beside_two_workers_stops_at_the_grown_budget(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Seen: 57 finished trials for a budget of 40, because resume ran its N attempts
    whatever the workers did."""
    url = (f"sqlite:///{tmp_path / 'tuner.db'}" if kind == "sqlite"
           else request.getfixturevalue("pg_url"))
    name = unique("mixed")
    study = sleepy_study(tmp_path, name, n_trials=40, sleep=0.8)
    first = run_tuner("run", str(study), "--storage", url, "--n-trials", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    resume = spawn("resume", name, "--storage", url, "--n-trials", "19", cwd=tmp_path)
    # The workers join once resume has grown the budget and is running trials.
    wait_for(lambda: _stored(url, name)["study"]["n_trials"] == 20 and _finished(url, name) >= 2,
             what="resume to be under way")
    workers = [spawn("worker", name, "--storage", url, cwd=tmp_path) for _ in range(2)]
    results = finish([resume, *workers])
    for rc, _, err in results:
        assert rc == 0, err
    got = trials(url, name)
    assert sum(t.state in FINISHED for t in got) == 20, [t.state.name for t in got]
    assert not [t for t in got if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.user_attrs["pid"] for t in got}) >= 3  # the workers did take trials
    assert _stored(url, name)["study"]["n_trials"] == 20


@pytest.mark.slow
def test_a_run_and_a_worker_together_keep_the_budget(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("pair")
    study = sleepy_study(tmp_path, name, n_trials=12, sleep=0.4)
    created = run_tuner("run", str(study), "--storage", url, "--create-only", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert f"tuner worker {name}" in created.stdout and trials(url, name) == []
    procs = [spawn("run", str(study), "--storage", url, cwd=tmp_path),
             spawn("worker", name, "--storage", url, cwd=tmp_path)]
    for rc, _, err in finish(procs):
        assert rc == 0, err
    assert _finished(url, name) == 12
    assert len(trials(url, name)) == 12


@pytest.mark.slow
def test_a_worker_keeps_to_a_budget_grown_while_it_runs(tmp_path: Path) -> None:
    """A worker used to read the budget once, at start: one grown later (by a ``resume
    --n-trials`` elsewhere) reached only workers started after it, and this one stopped at 3."""
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("grown")
    study = sleepy_study(tmp_path, name, n_trials=3, sleep=0.6)
    created = run_tuner("run", str(study), "--storage", url, "--create-only", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    worker = spawn("worker", name, "--storage", url, cwd=tmp_path)
    wait_for(lambda: trials(url, name), what="the worker's first trial")
    stored = optuna.load_study(study_name=name, storage=open_storage(url))
    raw = stored.user_attrs[CONFIG_ATTR]
    raw["study"]["n_trials"] = 7  # what resume --n-trials writes (store.studies.grow_budget)
    stored.set_user_attr(CONFIG_ATTR, raw)
    [(rc, _, err)] = finish([worker])
    assert rc == 0, err
    got = trials(url, name)
    assert _finished(url, name) == 7 and len(got) == 7, [t.state.name for t in got]
    assert "[7/7] trial" in err, err  # its progress line counts to the grown budget
    assert len({t.user_attrs["pid"] for t in got}) == 1  # all of them the one worker's


def test_a_timeout_flag_is_not_stored_and_does_not_block_later_runs(tmp_path: Path) -> None:
    """Seen: after ``run --timeout 0.001`` every later worker and resume exited at once,
    at 0 of 16 done, saying the study already had its budget."""
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("flag")
    study = sleepy_study(tmp_path, name, n_trials=3, sleep=0.05)
    first = run_tuner("run", str(study), "--storage", url, "--timeout", "0.001", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "this run's --timeout has passed" in first.stdout
    assert "already has its budget" not in first.stdout
    assert _stored(url, name)["study"].get("timeout") is None
    worker = run_tuner("worker", name, "--storage", url, cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    assert _finished(url, name) == 3


def test_a_stored_timeout_counts_from_the_first_trial_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("clock")
    sleepy_study(tmp_path, name, n_trials=100, sleep=0.3)
    study = tmp_path / f"{name}.toml"
    text = study.read_text().replace("[study]\n", "[study]\ntimeout = 2\n", 1)
    study.write_text(text)
    first = run_tuner("run", str(study), "--storage", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    done = _finished(url, name)
    assert 1 <= done < 100
    assert "its timeout of 2s ([study] timeout, counted from its first trial at" in first.stdout
    # Later processes keep to the study's clock: they start no trial, and say why.
    worker = run_tuner("worker", name, "--storage", url, cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    assert "its timeout of 2s" in worker.stdout and "already has its budget" not in worker.stdout
    assert _finished(url, name) == done
    # Asking for trials runs past it.
    more = run_tuner("resume", name, "--storage", url, "--n-trials", "2", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert _finished(url, name) == done + 2


def test_create_only_writes_the_study_and_runs_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("made")
    path = tmp_path / "made.toml"
    path.write_text(to_toml({"study": {"name": name, "n_trials": 5},
                             "objective": {"name": "classifier"},
                             "space": {"lr": {"low": 1e-3, "high": 0.1, "log": True}}}))
    got = run_tuner("run", str(path), "--storage", url, "--create-only", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert f"study {name!r} is stored in {url}: 0 of 5 finished trials" in got.stdout
    assert trials(url, name) == [] and _stored(url, name)["study"]["n_trials"] == 5


def _dead(storage, trial_id: int) -> None:
    """Make trial ``trial_id``'s last heartbeat ancient: its process died long ago."""
    storage.record_heartbeat(trial_id)
    with storage.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00' "
                             f"WHERE trial_id = {trial_id}")


@pytest.fixture
def budget_two(sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    """A SQLite study with a stored budget of 2 and fast heartbeats."""
    monkeypatch.setenv("TUNER_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("TUNER_HEARTBEAT_GRACE", "2")
    storage = open_storage(sqlite_url)
    study = optuna.create_study(storage=storage, study_name="two")
    study.set_user_attr(CONFIG_ATTR, {"study": {"n_trials": 2}})
    return storage, study


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_dead_trial_is_not_queued_again_once_the_budget_is_covered(budget_two) -> None:
    """The soak's leftover: a dead worker's retry queued after the study had its budget
    stayed WAITING forever."""
    from tuner.run.claim import Decision, decide

    storage, study = budget_two
    for _ in range(2):
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    late = study.ask()  # a process that raced the last trial, then died
    _dead(storage, late._trial_id)
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    assert decide(study, storage, 2)[0] is Decision.DONE


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_the_last_process_waits_for_a_running_trial_then_leaves_nothing_behind(
        budget_two) -> None:
    from tuner.run.claim import Decision, decide

    storage, study = budget_two
    for _ in range(2):
        study.tell(study.ask(), 0.5)
    running = study.ask()
    storage.record_heartbeat(running._trial_id)  # alive: its process may still fail it
    assert decide(study, storage, 2)[0] is Decision.WAIT
    _dead(storage, running._trial_id)
    optuna.storages.fail_stale_trials(study)
    assert decide(study, storage, 2)[0] is Decision.DONE
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_a_surplus_retry_left_waiting_is_dropped_when_the_budget_is_met(budget_two) -> None:
    from tuner.run.claim import Decision, decide

    storage, study = budget_two
    for _ in range(2):
        study.tell(study.ask(), 0.5)
    study.enqueue_trial({}, user_attrs={})  # a user's own: stays
    retry = storage.create_new_trial(study._study_id)
    storage.set_trial_system_attr(retry, "failed_trial", 1)
    storage.set_trial_state_values(retry, TrialState.WAITING)
    assert decide(study, storage, 2)[0] is Decision.DONE
    by_id = {t._trial_id: t for t in study.get_trials()}
    assert by_id[retry].state == TrialState.FAIL
    assert by_id[retry].user_attrs["fail_reason"] == "retry not needed: the study had its budget"
    assert [t.state for t in by_id.values()].count(TrialState.WAITING) == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
@pytest.mark.parametrize("beat", ["at creation", "never (an older tuner)"])
def test_a_trial_whose_process_died_right_after_creating_it_is_failed_and_retried(
        budget_two, sqlite_url: str, beat: str) -> None:
    """The soak's other leftover: a worker killed between creating its trial and its first
    heartbeat left the trial RUNNING forever (Optuna's stale check reads heartbeats only).
    Now a trial's first heartbeat is written with it, so Optuna's check finds it once that
    beat is old; a trial an older tuner created (a creation token, no beat) is failed too."""
    from optuna.storages import RDBStorage

    from tuner.run.loop import _fail_stale_trials

    storage, study = budget_two
    ours = study.ask()  # tuner's storage: the trial carries a creation token and a beat
    ours.suggest_float("x", 0, 1)
    plain = optuna.load_study(study_name="two", storage=RDBStorage(sqlite_url)).ask()
    with storage.engine.begin() as conn:
        beats = conn.exec_driver_sql("SELECT trial_id FROM trial_heartbeats").fetchall()
        assert beats == [(ours._trial_id,)], "written with the trial, not by a thread"
        if beat == "at creation":  # its process died then; the beat has aged past grace
            conn.exec_driver_sql("UPDATE trial_heartbeats SET heartbeat = '2000-01-01'")
        else:
            conn.exec_driver_sql("DELETE FROM trial_heartbeats")
        conn.exec_driver_sql("UPDATE trials SET datetime_start = '2000-01-01 00:00:00'")
    _fail_stale_trials(study, storage)
    by_id = {t._trial_id: t for t in study.get_trials()}
    assert by_id[ours._trial_id].state == TrialState.FAIL
    assert by_id[plain._trial_id].state == TrialState.RUNNING  # plain Optuna's: not ours to fail
    retries = [t for t in by_id.values() if t.system_attrs.get("failed_trial") == ours.number]
    assert [t.state for t in retries] == [TrialState.WAITING]
    assert retries[0].params == by_id[ours._trial_id].params
