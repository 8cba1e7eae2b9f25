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

import optuna
import pytest
from _workerkit import FAST_HEARTBEAT, FlakyProxy, finish, sleepy_study, spawn, wait_for
from conftest import unique
from optuna.trial import FrozenTrial, TrialState

from tuner.store.storage import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
LEFT_OVER = (TrialState.RUNNING, TrialState.WAITING)


class _Watch:
    """The test's own view of the study, through one storage opened once (not one per poll)."""

    def __init__(self, url: str, name: str) -> None:
        self.storage, self.name = open_storage(url), name

    def trials(self) -> list[FrozenTrial]:
        try:
            return optuna.load_study(study_name=self.name, storage=self.storage).get_trials()
        except KeyError:
            return []

    def finished(self) -> int:
        return sum(t.state in FINISHED for t in self.trials())

    def running_of(self, pid: int, folder: Path) -> bool:
        """Whether worker ``pid`` is in a trial (the sleepy objective names it in ``folder``)."""
        try:
            number = int((folder / f"running-{pid}").read_text())
        except (OSError, ValueError):
            return False
        return any(t.state == TrialState.RUNNING and t.number == number for t in self.trials())


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
    watch = _Watch(pg_url, name)
    steady = [spawn("run", str(study), "--storage", url, "--jobs", "2", cwd=tmp_path, env=env),
              spawn("worker", name, "--storage", url, cwd=tmp_path, env=env)]
    victims, kills, cut = [], 0, False
    try:
        while watch.finished() < budget - 3 and kills < 6:
            victim = spawn("worker", name, "--storage", url, cwd=tmp_path, env=env)
            victims.append(victim)
            try:  # killed mid-trial, at a random moment of it (or of its creation)
                wait_for(lambda v=victim: watch.running_of(v.pid, tmp_path), timeout=30)
                time.sleep(rng.uniform(0.0, 0.5))
            except AssertionError:
                pass  # the study was done before this victim got a trial
            victim.kill()
            kills += 1
            if not cut and watch.finished() >= budget // 3:
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
    got = watch.trials()
    assert sum(t.state in FINISHED for t in got) == budget, [t.state.name for t in got]
    assert [t.number for t in got if t.state in LEFT_OVER] == []
    assert kills >= 2

