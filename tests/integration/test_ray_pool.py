"""Pool workers as Ray actors, against a real local Ray cluster on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _workerkit import sleepy_study, trials
from conftest import run_tuner
from optuna.trial import TrialState

from tuner.core.keys import WORKER

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.xdist_group("ray")]

RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[str]:
    """A one-node Ray cluster started in ``tmp_path`` (its actors import the objective from
    there), stopped after the test."""
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=2",
                        "--include-dashboard=false", "--disable-usage-stats",
                        "--node-ip-address=127.0.0.1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_ray_actors_serve_the_queue_with_exact_budgets(tmp_path: Path, ray_cluster: str) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    env = {"TUNER_STORAGE": url}
    for name, n in (("first", 4), ("second", 3)):
        sleepy_study(tmp_path, name, n, 0.3)
        assert run_tuner("submit", f"{name}.toml", cwd=tmp_path, env=env).returncode == 0
    r = run_tuner("worker", "--pool", "--ray", ray_cluster, "--slots", "2", "--until-empty",
                  cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "pool on Ray: 7 trial(s) run" in r.stderr
    ran = trials(url, "first") + trials(url, "second")
    assert [t.state for t in ran] == [TrialState.COMPLETE] * 7
    assert all(t.user_attrs[WORKER].startswith("ray:") for t in ran)
    assert len({t.user_attrs[WORKER] for t in ran}) == 2  # two actors, two processes
    rows = json.loads(run_tuner("queue", "--json", cwd=tmp_path, env=env).stdout)["studies"]
    assert {s["name"]: s["state"] for s in rows} == {"first": "finished", "second": "finished"}


def test_an_unreachable_ray_cluster_is_one_error(tmp_path: Path) -> None:
    r = run_tuner("worker", "--pool", "--ray", f"127.0.0.1:{free_port()}", "--slots", "1",
                  cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: cannot join the Ray cluster")
