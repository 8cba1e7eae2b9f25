"""``tuner show``: failed trials with their reasons, and running trials whose process is gone.

Real processes on a real SQLite file: a lone ``tuner run`` is SIGKILLed mid-trial; its trial
stays RUNNING in storage (nothing can mark it), and ``show`` must say it is stale and how to
retry it, in text and ``--json``.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import optuna
import pytest
from _workerkit import (
    FAST_HEARTBEAT,
    finish,
    running_trial_of,
    sleepy_study,
    spawn,
    trials,
    wait_for,
)
from conftest import run_tuner
from optuna.trial import TrialState


def test_show_lists_failed_trials_with_their_reasons(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = optuna.create_study(study_name="f", storage=storage, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    for reason in ("KeyError: 'x' (at myobj.py:3 in objective)", "RuntimeError: out of memory"):
        t = study.ask()
        t.set_user_attr("fail_reason", reason)
        study.tell(t, state=TrialState.FAIL)
    bare = study.ask()  # failed by plain Optuna: no reason stored
    study.tell(bare, state=TrialState.FAIL)
    r = run_tuner("show", "f", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "failed trials:" in text
    assert "#2 KeyError: 'x' (at myobj.py:3 in objective)" in text
    assert "#3 RuntimeError: out of memory" in text
    assert "#4 (no reason stored)" in text
    shown = json.loads(run_tuner("show", "f", "--json", cwd=tmp_path).stdout)
    assert [(f["number"], f["reason"]) for f in shown["failed"]] == [
        (2, "KeyError: 'x' (at myobj.py:3 in objective)"), (3, "RuntimeError: out of memory"),
        (4, None)]
    assert shown["running"] == []


@pytest.mark.slow
def test_a_killed_runs_trial_is_shown_as_stale_with_how_to_retry_it(tmp_path: Path) -> None:
    sleepy_study(tmp_path, "k", n_trials=1, sleep=6)
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    proc = spawn("run", "k.toml", cwd=tmp_path, env=FAST_HEARTBEAT)
    wait_for(lambda: running_trial_of(url, "k", proc.pid, tmp_path) is not None,
             what="a running trial")
    proc.send_signal(signal.SIGKILL)
    finish([proc])
    fresh = run_tuner("show", "k", "--json", cwd=tmp_path, env=FAST_HEARTBEAT)
    assert json.loads(fresh.stdout)["running"][0]["stale"] in (False, True)  # just killed
    wait_for(lambda: json.loads(run_tuner("show", "k", "--json", cwd=tmp_path,
                                          env=FAST_HEARTBEAT).stdout)["running"][0]["stale"],
             timeout=30, what="the trial to turn stale")
    r = run_tuner("show", "k", cwd=tmp_path, env=FAST_HEARTBEAT)
    text = " ".join(r.stdout.split())
    assert "trial 0: running, no heartbeat for" in text, text
    assert "tuner resume k will retry it" in text, text
    listed = " ".join(run_tuner("list", cwd=tmp_path, env=FAST_HEARTBEAT).stdout.split())
    assert "1 stale" in listed, listed
    # and resume does retry it: the study ends with nothing RUNNING
    r = run_tuner("resume", "k", cwd=tmp_path, env=FAST_HEARTBEAT)
    assert r.returncode == 0, r.stderr
    assert sorted(t.state.name for t in trials(url, "k")) == ["COMPLETE", "FAIL"]
