"""``tuner run --jobs N`` forks its workers from the started parent where that is safe.

Real ``tuner`` processes on a real SQLite file; the objective sleeps and records the command
line of the process that ran it (``tests/_workerkit.py``): a forked worker carries its parent's
``tuner run`` command line, a new interpreter its own ``tuner worker`` one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _workerkit import finish, sleepy_study, spawn, trials
from optuna.trial import TrialState

from tuner.run.workers import threads_per_worker


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_run_jobs_starts_its_workers_as_asked_and_keeps_the_budget(tmp_path: Path,
                                                                   start: str) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = sleepy_study(tmp_path, "forked", n_trials=6, sleep=0.3, record_threads=True)
    proc = spawn("run", str(study), "--jobs", "2", cwd=tmp_path,
                 env={"TUNER_STORAGE": url, "TUNER_WORKER_START": start})
    (rc, out, err), = finish([proc])
    assert rc == 0, err
    got = trials(url, "forked")
    assert [t.state for t in got] == [TrialState.COMPLETE] * 6
    pids = {t.user_attrs["pid"] for t in got}
    assert len(pids) == 2 and proc.pid not in pids  # two worker processes, not the parent
    commands = {word for t in got for word in t.user_attrs["cmdline"].split()
                if word in ("run", "worker")}
    assert commands == ({"run"} if start == "fork" else {"worker"}), commands
    assert {t.user_attrs["torch_threads"] for t in got} == {threads_per_worker(2)}
    assert "6 trials this run (6 complete)" in out


_PROBE = """
import threading, time
from tuner.run.workers import _fork
print(_fork.fork_is_safe(False))        # torch's threads were never pinned
_fork.single_threaded_parent()
print(_fork.fork_is_safe(False))        # pinned, one thread, no CUDA
print(_fork.fork_is_safe(True))         # CUDA in use
t = threading.Thread(target=time.sleep, args=(0.5,)); t.start()
print(_fork.fork_is_safe(False))        # another thread might hold a lock
t.join()
print(_fork.fork_is_safe(False))
"""


@pytest.mark.parametrize("setting, expected", [
    ("", "False True False False True"),
    ("spawn", "False False False False False"),
])
def test_workers_are_forked_only_from_a_pinned_single_threaded_parent_without_cuda(
        setting: str, expected: str) -> None:
    got = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         env={"TUNER_WORKER_START": setting, "PATH": "/usr/bin:/bin"},
                         timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == expected.split()


def test_a_bad_worker_start_setting_is_one_error_line_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "tuner.db"
    study = sleepy_study(tmp_path, "bad", n_trials=2, sleep=0.1)
    proc = spawn("run", str(study), "--jobs", "2", cwd=tmp_path,
                 env={"TUNER_STORAGE": f"sqlite:///{db}", "TUNER_WORKER_START": "threads"})
    (rc, _, err), = finish([proc])
    assert rc == 2
    assert err.strip().splitlines() == [
        "error: $TUNER_WORKER_START must be 'fork' or 'spawn', got 'threads'"]
    assert not db.exists()
