"""Many worker processes on one study: exact budget, crash recovery, clean stops.

Real ``tuner`` processes on a real SQLite file, journal file or the local PostgreSQL server;
the objective sleeps (``tests/_workerkit.py``) so a test decides how long a trial runs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from _workerkit import (
    FAST_HEARTBEAT,
    create_study,
    finish,
    running_trial_of,
    sleepy_study,
    spawn,
    states,
    trials,
    wait_for,
)
from conftest import unique
from optuna.trial import TrialState

from tuner.core.errors import StorageError
from tuner.run.config import StudyConfig, load_config
from tuner.run.outcome import RunResult
from tuner.run.study import prepare_study
from tuner.run.workers import _jobs, run_jobs, threads_per_worker, work
from tuner.store.rdb import ResilientRDBStorage, reraise_lost
from tuner.store.settings import heartbeat_settings
from tuner.store.storage import open_storage


@pytest.fixture(params=["sqlite", "postgres"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage kind that has heartbeats: a fresh SQLite file, the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tuner.db'}"
    return request.getfixturevalue("pg_url")


def _assert_exact(url: str, name: str, budget: int) -> None:
    got = trials(url, name)
    numbers = [t.number for t in got]
    assert len(numbers) == len(set(numbers))
    assert sorted(numbers) == list(range(len(numbers)))
    finished = [t for t in got if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == budget, states(url, name)
    assert not [t for t in got if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.slow
def test_run_jobs_four_processes_on_sqlite_reach_exactly_the_budget(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = sleepy_study(tmp_path, "four", n_trials=16, sleep=0.2, record_threads=True)
    proc = spawn("run", str(study), "--jobs", "4", cwd=tmp_path, env={"TUNER_STORAGE": url})
    (rc, out, err), = finish([proc])
    assert rc == 0, err
    assert "database is locked" not in err
    _assert_exact(url, "four", 16)
    got = trials(url, "four")
    assert len({t.user_attrs["pid"] for t in got}) >= 2  # several processes did the work
    assert {t.user_attrs["torch_threads"] for t in got} == {threads_per_worker(4)}
    assert all("--storage" not in t.user_attrs["cmdline"] for t in got)  # URL stays out of ps
    assert "16 trials this run (16 complete)" in out


@pytest.mark.parametrize("wanted, jobs, expected", [
    (None, 1, 1), (None, 8, 1),  # training's default (one thread) fits any split
    ("64", 1, "cores"), ("64", 2, "cores//2"), ("64", 1000, 1), ("1", 1, 1),
])
def test_threads_per_worker_never_oversubscribe(wanted: str | None, jobs: int, expected: object,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cores = len(os.sched_getaffinity(0))
    if wanted is None:
        monkeypatch.delenv("TUNER_CPU_THREADS", raising=False)
    else:
        monkeypatch.setenv("TUNER_CPU_THREADS", wanted)
    expected = {"cores": cores, "cores//2": max(1, cores // 2)}.get(expected, expected)
    assert threads_per_worker(jobs) == expected


@pytest.mark.slow
def test_sigkilled_workers_trial_is_retried_with_the_same_params(any_url: str,
                                                                  tmp_path: Path) -> None:
    name = unique("kill")
    create_study(sleepy_study(tmp_path, name, n_trials=4, sleep=1.0), any_url)
    args = ("worker", name, "--storage", any_url)
    victim = spawn(*args, cwd=tmp_path, env=FAST_HEARTBEAT)
    survivor = spawn(*args, cwd=tmp_path, env=FAST_HEARTBEAT)
    killed = wait_for(lambda: running_trial_of(any_url, name, victim.pid, tmp_path), what="a trial")
    victim.kill()
    (rc, _, err), = finish([survivor])
    finish([victim])
    assert rc == 0, err
    _assert_exact(any_url, name, 4)
    by_number = {t.number: t for t in trials(any_url, name)}
    assert by_number[killed.number].state == TrialState.FAIL
    retries = [t for t in by_number.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    assert f"trial {killed.number}: its worker sent no heartbeat" in err


@pytest.mark.slow
@pytest.mark.parametrize("sig, storage", [(signal.SIGINT, "postgres"), (signal.SIGTERM, "sqlite")],
                         ids=["sigint-postgres", "sigterm-sqlite"])  # SIGINT on SQLite: --jobs
def test_signal_stops_a_worker_cleanly_and_resume_completes(
    sig: signal.Signals, storage: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (f"sqlite:///{tmp_path / 'tuner.db'}" if storage == "sqlite"
           else request.getfixturevalue("pg_url"))
    name = unique("sig")
    create_study(sleepy_study(tmp_path, name, n_trials=1, sleep=2.0), url)
    proc = spawn("worker", name, "--storage", url, cwd=tmp_path)
    trial = wait_for(lambda: running_trial_of(url, name, proc.pid, tmp_path), what="a running trial")
    proc.send_signal(sig)
    (rc, _, err), = finish([proc], timeout=30)
    assert rc == 130, err
    assert "interrupted" in err and "Traceback" not in err
    stopped = {t.number: t for t in trials(url, name)}[trial.number]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["fail_reason"] == "interrupted"
    assert states(url, name).get("RUNNING", 0) == 0
    (rc, _, err), = finish([spawn("resume", name, "--storage", url, "-q", cwd=tmp_path)])
    assert rc == 0, err
    assert states(url, name) == {"FAIL": 1, "COMPLETE": 1}


@pytest.mark.slow
def test_ctrl_c_on_run_jobs_stops_every_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = sleepy_study(tmp_path, "jobs", n_trials=6, sleep=3.0)
    proc = spawn("run", str(study), "--storage", url, "--jobs", "2", cwd=tmp_path)
    wait_for(lambda: len(list(tmp_path.glob("running-*"))) == 2
             and sum(t.state == TrialState.RUNNING for t in trials(url, "jobs")) == 2,
             what="both workers running a trial")
    proc.send_signal(signal.SIGINT)
    (rc, _, err), = finish([proc], timeout=60)
    assert rc == 130, err
    got = trials(url, "jobs")
    assert not [t for t in got if t.state == TrialState.RUNNING]
    assert sum(t.user_attrs.get("fail_reason") == "interrupted" for t in got) == 2
    assert "interrupted: 2 running trials were marked failed; continue with tuner resume jobs" \
        in err, err
    for pid in {t.user_attrs["pid"] for t in got}:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _jobs_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                 **objective: object) -> StudyConfig:
    path = sleepy_study(tmp_path, name, n_trials=2, **objective)  # type: ignore[arg-type]
    monkeypatch.chdir(tmp_path)  # the workers import the objective from their folder
    monkeypatch.syspath_prepend(str(tmp_path))
    return load_config(path)


def _interrupt_when(monkeypatch: pytest.MonkeyPatch, ready: Callable[[], bool]) -> None:
    """Ctrl-C in run_jobs's polling loop as soon as ``ready()``."""
    def sleep(seconds: float) -> None:
        if not ready():
            time.sleep(seconds)
        if ready():
            raise KeyboardInterrupt

    monkeypatch.setattr(_jobs, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))


@pytest.mark.slow
def test_ctrl_c_while_run_jobs_workers_start_exits_130(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    config = _jobs_config(tmp_path, monkeypatch, "early", sleep=0.1)
    _interrupt_when(monkeypatch, lambda: True)  # the workers are still importing: SIGTERM kills
    result = run_jobs(config, url, jobs=2)
    assert result.interrupted
    assert "RUNNING" not in states(url, "early")


@pytest.mark.slow
def test_a_worker_killed_after_the_grace_leaves_no_trial_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    config = _jobs_config(tmp_path, monkeypatch, "stuck", sleep=60.0, ignore_sigterm=True)
    monkeypatch.setattr(_jobs, "STOP_GRACE_S", 0.5)
    _interrupt_when(monkeypatch, lambda: any(tmp_path.glob("running-*")))
    result = run_jobs(config, url, jobs=1)
    assert result.interrupted
    (trial,) = trials(url, "stuck")
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted"


@pytest.mark.slow
def test_workers_on_a_journal_file_stop_at_the_budget(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'study.log'}"
    create_study(sleepy_study(tmp_path, "jr", n_trials=6, sleep=0.2), url)
    results = finish([spawn("worker", "jr", "--storage", url, cwd=tmp_path) for _ in range(2)])
    assert [r[0] for r in results] == [0, 0], results
    _assert_exact(url, "jr", 6)


@pytest.mark.slow
def test_worker_waits_for_its_study_and_caps_its_own_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = sleepy_study(tmp_path, "later", n_trials=5, sleep=0.1)
    open_storage(url)  # the database exists, the study not yet
    proc = spawn("worker", "later", "--storage", url, "--wait", "60", "--n-trials", "2",
                 cwd=tmp_path)
    create_study(study, url)
    (rc, out, err), = finish([proc])
    assert rc == 0, err
    assert "2 trials this run" in out
    assert states(url, "later") == {"COMPLETE": 2}


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_worker_waits_for_a_storage_file_that_does_not_exist_yet(
        kind: str, tmp_path: Path, study_file: Callable[..., Path]) -> None:
    url = f"sqlite:///{tmp_path / 'later.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'j'}"
    config = load_config(study_file(study={"name": "later", "n_trials": 1},
                                    objective={"epochs": 1, "artifacts": False}))
    creator = threading.Timer(0.3, lambda: prepare_study(config, open_storage(url)))
    creator.start()
    try:
        result = work("later", url, wait_s=30)
    finally:
        creator.cancel()
    assert len(result.trial_numbers) == 1


def _open_at(url: str, start: float, results: object) -> None:
    time.sleep(max(0.0, start - time.time()))
    try:
        open_storage(url)
        results.put("ok")  # type: ignore[attr-defined]
    except StorageError as e:
        results.put(str(e))  # type: ignore[attr-defined]


def test_workers_opening_a_new_sqlite_file_together_all_get_in(tmp_path: Path) -> None:
    # Optuna creates an empty database's tables on open (check, then create): workers started
    # together on a new file raced to it, and the losers stopped with "table studies already
    # exists" or a duplicate alembic version row (seen in CI, in 2 of 3 tries by hand).
    import multiprocessing

    fork = multiprocessing.get_context("fork")  # already imported: the opens really collide
    for attempt in range(3):
        url = f"sqlite:///{tmp_path / f'new{attempt}.db'}"
        results = fork.Queue()
        start = time.time() + 0.5
        procs = [fork.Process(target=_open_at, args=(url, start, results)) for _ in range(8)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert outcomes == ["ok"] * 8, outcomes


class _Lines:
    """A progress hook that keeps what it would print."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, float | None]] = []

    def start(self, study: optuna.Study, total: int | None, timeout: float | None) -> None:
        pass

    def retotal(self, total: int | None) -> None:
        pass

    def trial_finished(self, trial: optuna.trial.FrozenTrial, best: float | None) -> None:
        self.lines.append((trial.number, best))

    def stop(self) -> None:
        pass


def _count_reads(monkeypatch: pytest.MonkeyPatch, cls: type, *names: str) -> list[str]:
    calls: list[str] = []
    for name in names:
        real = getattr(cls, name)

        def spy(self: object, *args: object, _real=real, _name=name, **kwargs: object) -> object:
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)
    return calls


def test_a_workers_progress_line_costs_no_storage_read(sqlite_url: str,
                                                        study_file: Callable[..., Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna.storages._cached_storage import _CachedStorage

    config = load_config(study_file(study={"n_trials": 6},
                                    objective={"epochs": 1, "artifacts": False}))
    prepare_study(config, open_storage(sqlite_url))
    reads = _count_reads(monkeypatch, _CachedStorage, "get_all_trials", "get_trial")
    per_run = []
    for progress in (None, _Lines()):
        reads.clear()
        work("tiny", sqlite_url, n_trials=3, progress=progress)
        per_run.append(len(reads))
    assert per_run[1] == per_run[0]


def test_run_jobs_reads_the_trials_once_per_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    study = optuna.create_study()
    study.optimize(lambda trial: 3.0 - trial.number, n_trials=3)
    reads = _count_reads(monkeypatch, optuna.Study, "get_trials")
    progress = _Lines()
    _jobs._report_new(study, set(), RunResult(study), progress)
    assert len(reads) == 1
    # each line's best is of the trials finished by then, not of the whole read (issue 31)
    assert progress.lines == [(0, 3.0), (1, 2.0), (2, 1.0)]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_stale_trial_is_retried_at_most_twice(sqlite_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNER_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("TUNER_HEARTBEAT_GRACE", "2")
    storage = open_storage(sqlite_url)
    assert isinstance(storage, ResilientRDBStorage)
    study = optuna.create_study(storage=storage, study_name="stale")
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    for _ in range(4):
        storage.record_heartbeat(trial._trial_id)
        with storage.engine.begin() as conn:  # the worker died long ago
            conn.exec_driver_sql("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'")
        optuna.storages.fail_stale_trials(study)
        if not study.get_trials(states=(TrialState.WAITING,)):
            break
        trial = study.ask()  # pops the queued copy
        assert trial.suggest_float("x", 0, 1) == x
    got = study.get_trials()
    assert [t.state for t in got] == [TrialState.FAIL] * 3
    assert [t.system_attrs.get("retry_history") for t in got] == [None, [0], [0, 1]]


def test_a_lost_connection_is_reported_not_hidden_by_optunas_clean_up(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import event, exc

    monkeypatch.setenv("TUNER_STORAGE_RETRY_S", "0.3")
    storage = open_storage(sqlite_url)
    study = optuna.create_study(storage=storage, study_name="lost")
    down = False

    def cut(*args: object) -> None:
        if down:
            raise exc.OperationalError("SELECT", {}, Exception("server closed the connection"))

    event.listen(storage.engine, "before_cursor_execute", cut)

    def objective(trial: optuna.Trial) -> float:
        nonlocal down
        down = True  # the server goes away while the trial runs
        return 1.0

    # Optuna fails to tell the trial, then raises UnboundLocalError from its own clean-up.
    lost = pytest.raises(StorageError, match="lost the connection to storage sqlite:///")
    with lost, reraise_lost(study._storage):  # Optuna's trial cache, around tuner's storage
        study.optimize(objective, n_trials=1)


@pytest.mark.parametrize("env, interval, grace", [
    ({}, 10, 60),
    ({"TUNER_HEARTBEAT_INTERVAL": "2"}, 2, 60),
    ({"TUNER_HEARTBEAT_INTERVAL": "40"}, 40, 80),
    ({"TUNER_HEARTBEAT_INTERVAL": "1", "TUNER_HEARTBEAT_GRACE": "3"}, 1, 3),
])
def test_heartbeat_settings(env: dict[str, str], interval: int, grace: int,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("TUNER_HEARTBEAT_INTERVAL", "TUNER_HEARTBEAT_GRACE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert heartbeat_settings() == (interval, grace)
