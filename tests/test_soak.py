"""A soak: every kind of process on one PostgreSQL study, workers killed and restarted, the
server's connections cut, and at the end exactly the budget with nothing left RUNNING or WAITING
(issue 12 item 4: after such a run one trial stayed RUNNING or WAITING).

Real ``tuner`` processes; the objective sleeps (``tests/_workerkit.py``). The server restart of
the original soak is a :class:`FlakyProxy` cutting every open connection (restarting the shared
server would break the other tests running beside this one).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from _workerkit import (
    FAST_HEARTBEAT,
    FlakyProxy,
    finish,
    running_trial_of,
    sleepy_study,
    spawn,
    trials,
    wait_for,
)
from conftest import unique
from optuna.trial import TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
LEFT_OVER = (TrialState.RUNNING, TrialState.WAITING)


def _finished(url: str, name: str) -> int:
    return sum(t.state in FINISHED for t in trials(url, name))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])  # several runs: kills land at different moments
def test_soak_keeps_the_budget_and_leaves_nothing_running(seed: int, pg_url: str,
                                                          tmp_path: Path) -> None:
    rng = random.Random(seed)
    name = unique("soak")
    budget = 60
    study = sleepy_study(tmp_path, name, n_trials=budget, sleep=0.5)
    proxy = FlakyProxy()
    url = pg_url.replace(":5432/", f":{proxy.port}/")
    env = {**FAST_HEARTBEAT, "TUNER_STORAGE_RETRY_S": "30"}
    created = spawn("run", str(study), "--storage", url, "--create-only", cwd=tmp_path, env=env)
    (rc, _, err), = finish([created])
    assert rc == 0, err
    steady = [spawn("run", str(study), "--storage", url, "--jobs", "2", cwd=tmp_path, env=env),
              spawn("worker", name, "--storage", url, cwd=tmp_path, env=env)]
    victims, kills, cut = [], 0, False
    try:
        while _finished(pg_url, name) < budget - 3 and kills < 6:
            victim = spawn("worker", name, "--storage", url, cwd=tmp_path, env=env)
            victims.append(victim)
            try:  # killed mid-trial, at a random moment of it (or of its creation)
                wait_for(lambda v=victim: running_trial_of(pg_url, name, v.pid), timeout=30)
                time.sleep(rng.uniform(0.0, 0.5))
            except AssertionError:
                pass  # the study was done before this victim got a trial
            victim.kill()
            kills += 1
            if not cut and _finished(pg_url, name) >= budget // 3:
                proxy.drop()  # the server "restarts": every open connection is cut
                cut = True
        # One last worker, as in the original soak: it must not leave anything behind either.
        time.sleep(rng.uniform(0.5, 2.0))
        last = spawn("worker", name, "--storage", url, cwd=tmp_path, env=env)
        results = finish([*steady, last], timeout=300)
        finish(victims, timeout=10)
    finally:
        proxy.close()
    for rc, _, err in results:
        assert rc == 0, err
    got = trials(pg_url, name)
    assert sum(t.state in FINISHED for t in got) == budget, [t.state.name for t in got]
    assert [t.number for t in got if t.state in LEFT_OVER] == []
    assert kills >= 2

