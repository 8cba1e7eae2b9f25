"""The queue and its pool with real processes: `tuner submit`, `tuner worker --pool`, `tuner
queue`, `pause`, `cancel`, on a SQLite file and on the local PostgreSQL."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from _workerkit import FAST_HEARTBEAT, finish, sleepy_study, spawn, trials, wait_for
from conftest import run_tuner
from optuna.trial import TrialState

from tuner.core.keys import FAIL_REASON, WORKER
from tuner.service.queue import CANCEL_REASON

pytestmark = pytest.mark.slow


def _overlap(ts) -> int:
    """The most of ``ts`` that ran at the same moment."""
    events = sorted([(t.datetime_start, 1) for t in ts] + [(t.datetime_complete, -1) for t in ts])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_pool_serves_priorities_limits_and_exact_budgets(
        storage: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'q.db'}" if storage == "sqlite"
           else request.getfixturevalue("own_pg_url"))
    env = {"TUNER_STORAGE": url, **FAST_HEARTBEAT}
    sleepy_study(tmp_path, "high", 4, 0.4)
    sleepy_study(tmp_path, "capped", 4, 0.4)
    sleepy_study(tmp_path, "low", 5, 0.4)
    for name, flags in (("high", ["--priority", "2"]),
                        ("capped", ["--priority", "1", "--max-parallel", "1"]),
                        ("low", [])):
        r = run_tuner("submit", f"{name}.toml", *flags, cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert f"queued study {name!r}" in r.stdout
    # three pool workers and one plain worker on `low`: every budget stays exact
    pool = spawn("worker", "--pool", "--slots", "3", "--until-empty", cwd=tmp_path, env=env)
    plain = spawn("worker", "low", cwd=tmp_path, env=env)
    (code, _, err), (plain_code, _, plain_err) = finish([pool, plain], timeout=240)
    assert code == 0, err
    assert plain_code == 0, plain_err
    by = {name: trials(url, name) for name in ("high", "capped", "low")}
    for name, budget in (("high", 4), ("capped", 4), ("low", 5)):
        assert [t.state for t in by[name]] == [TrialState.COMPLETE] * budget, name
    # every trial of the highest priority started before any trial of the others, except
    # those of the plain worker, which is no pool worker
    pooled = [t for ts in by.values() for t in ts if WORKER in t.user_attrs]
    last_high = max(t.datetime_start for t in by["high"])
    assert all(t.datetime_start >= last_high for t in pooled if t not in by["high"]), err
    assert all(WORKER in t.user_attrs for t in by["high"] + by["capped"])
    assert _overlap(by["capped"]) == 1  # --max-parallel 1
    assert _overlap(by["high"]) >= 2  # the pool ran it in parallel
    assert len({t.user_attrs[WORKER] for t in pooled}) >= 2
    r = run_tuner("queue", "--json", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    rows = {s["name"]: s for s in json.loads(r.stdout)["studies"]}
    assert {n: (s["state"], s["finished"], s["budget"]) for n, s in rows.items()} == {
        "high": ("finished", 4, 4), "capped": ("finished", 4, 4), "low": ("finished", 5, 5)}
    assert "pool worker" in err and "stopped: empty" in err


def test_cancel_fails_the_running_trial_and_the_worker_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    env = {"TUNER_STORAGE": url, **FAST_HEARTBEAT}
    sleepy_study(tmp_path, "slow", 3, 30.0)
    sleepy_study(tmp_path, "next", 2, 0.1)
    # a study whose objective this worker cannot import is left to others, with a warning
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    study = sleepy_study(elsewhere, "foreign", 2, 0.1)
    study.write_text(study.read_text().replace("sleepy:objective", "faraway:objective"))
    (elsewhere / "faraway.py").write_text((elsewhere / "sleepy.py").read_text())
    assert run_tuner("submit", "slow.toml", "--priority", "5", cwd=tmp_path,
                     env=env).returncode == 0
    assert run_tuner("submit", "foreign.toml", "--priority", "9", cwd=elsewhere,
                     env=env).returncode == 0
    worker = spawn("worker", "--pool", "--until-empty", cwd=tmp_path, env=env)
    running = wait_for(lambda: [t for t in trials(url, "slow") if t.state == TrialState.RUNNING],
                       timeout=90, what="the slow study's trial to run")
    assert run_tuner("submit", "next.toml", cwd=tmp_path, env=env).returncode == 0
    r = run_tuner("cancel", "slow", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "1 running trial(s) marked failed" in r.stdout
    [(code, _, err)] = finish([worker], timeout=120)
    assert code == 0, err
    slow = trials(url, "slow")
    assert [t.state for t in slow] == [TrialState.FAIL]
    assert slow[0].number == running[0].number
    assert slow[0].user_attrs[FAIL_REASON] == CANCEL_REASON
    assert "ended by another process: cancelled" in err
    assert [t.state for t in trials(url, "next")] == [TrialState.COMPLETE] * 2
    assert trials(url, "foreign") == []  # never started here
    assert "cannot serve study 'foreign'" in err and "faraway" in err
    r = run_tuner("queue", cwd=tmp_path, env=env)
    assert "cancelled" in r.stdout and "foreign" in r.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_pool_worker_that_stops_or_dies_loses_nothing(sig: int, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    env = {"TUNER_STORAGE": url, **FAST_HEARTBEAT}
    sleepy_study(tmp_path, "s", 3, 2.0)
    assert run_tuner("submit", "s.toml", cwd=tmp_path, env=env).returncode == 0
    first = spawn("worker", "--pool", cwd=tmp_path, env=env)
    wait_for(lambda: any(t.state == TrialState.RUNNING for t in trials(url, "s")), timeout=90,
             what="a running trial")
    first.send_signal(sig)
    [(code, _, err)] = finish([first], timeout=60)
    if sig == signal.SIGTERM:  # a clean stop: its trial failed at once, its record gone
        assert code == 130, err
        assert [t.state for t in trials(url, "s")] == [TrialState.FAIL]
        assert trials(url, "s")[0].user_attrs[FAIL_REASON] == "interrupted"
        r = run_tuner("queue", "--json", cwd=tmp_path, env=env)
        assert json.loads(r.stdout)["workers"] == []
    else:  # killed: its trial stays RUNNING until the next worker finds its heartbeat stopped
        assert code == -signal.SIGKILL
        assert [t.state for t in trials(url, "s")] == [TrialState.RUNNING]
    second = spawn("worker", "--pool", "--until-empty", cwd=tmp_path, env=env)
    [(code, _, err)] = finish([second], timeout=120)
    assert code == 0, err
    states = [t.state for t in trials(url, "s")]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1


@pytest.mark.parametrize("args, message", [
    (["worker"], "give the NAME of a stored study, or --pool"),
    (["worker", "x", "--pool"], "give a study NAME or --pool, not both"),
    (["worker", "x", "--slots", "2"], "--slots is for a pool worker"),
    (["worker", "--pool", "--device", "cpu", "--devices", "cpu"], "not both"),
    (["worker", "--pool", "--devices", "tpu:0"], "--devices"),
    (["pause", "nope"], "no storage at"),
    (["submit", "missing.toml"], "does not exist"),
    (["submit", "bad.toml"], "invalid TOML"),
    (["queue", "--server", "ftp://host"], "must be an http:// or https:// URL"),
    (["queue", "--server", "http://127.0.0.1:9", "--storage", "sqlite:///x.db"], "not both"),
    (["queue", "--server", "http://127.0.0.1:9"], "cannot reach the server"),
])
def test_bad_input_is_one_error_and_stores_nothing(
        args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[study\nname = 1\n")
    r = run_tuner(*args, cwd=tmp_path, env={"TUNER_API_TOKEN": "t" * 32})
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert not (tmp_path / "tuner.db").exists()


def test_submit_checks_the_study_like_run_and_queues_nothing_bad(tmp_path: Path) -> None:
    study = sleepy_study(tmp_path, "s", 2, 0.1)
    study.write_text(study.read_text().replace('"random"', '"anneal"'))
    r = run_tuner("submit", "s.toml", cwd=tmp_path)
    assert r.returncode == 2 and "anneal" in r.stderr
    r = run_tuner("queue", "--json", cwd=tmp_path)
    assert r.returncode == 2 or json.loads(r.stdout)["studies"] == []
