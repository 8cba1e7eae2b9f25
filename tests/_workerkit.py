"""Helpers for tests that run real worker processes (``tuner worker``, ``tuner run --jobs``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from conftest import TUNER, to_toml
from optuna.trial import FrozenTrial, TrialState

# Short heartbeats so a dead worker's trial is noticed in seconds, not a minute.
FAST_HEARTBEAT = {"TUNER_HEARTBEAT_INTERVAL": "1", "TUNER_HEARTBEAT_GRACE": "3"}

# A trial that sleeps instead of training: tests control how long a trial runs, and each trial
# records which process ran it, that process's command line and its torch threads.
SLEEPY = '''
import os, signal, time

def objective(trial, ctx):
    hp = ctx.suggest(trial)
    if ctx.settings.get("ignore_sigterm"):  # a worker stuck where no signal gets through
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    trial.set_user_attr("pid", os.getpid())
    # what other processes see at once (user attributes reach them when the trial ends)
    with open(os.path.join(os.path.dirname(__file__), f"running-{os.getpid()}"), "w") as f:
        f.write(str(trial.number))
    with open("/proc/self/cmdline", "rb") as f:
        trial.set_user_attr("cmdline", f.read().replace(b"\\0", b" ").decode())
    if ctx.settings.get("record_threads"):
        import torch
        trial.set_user_attr("torch_threads", torch.get_num_threads())
    time.sleep(float(ctx.settings.get("sleep", 0.5)))
    return hp["x"]
'''


def sleepy_study(folder: Path, name: str, n_trials: int, sleep: float, **objective: Any) -> Path:
    """Write ``sleepy.py`` and a study file using it into ``folder``; return the study file."""
    (folder / "sleepy.py").write_text(SLEEPY)
    path = folder / f"{name}.toml"
    path.write_text(to_toml({
        "study": {"name": name, "sampler": "random", "pruner": "none", "n_trials": n_trials,
                  "direction": "maximize"},
        "objective": {"name": "sleepy:objective", "sleep": sleep, **objective},
        "space": {"x": {"low": 0.0, "high": 1.0}},
    }))
    return path


def create_study(study_file: Path, url: str) -> None:
    """Create the study of ``study_file`` in ``url`` without running a trial."""
    import sys

    from tuner.run.config import load_config
    from tuner.run.study import prepare_study
    from tuner.store.storage import open_storage

    sys.path.insert(0, str(study_file.parent))  # the objective module lives beside the file
    try:
        prepare_study(load_config(study_file), open_storage(url))
    finally:
        sys.path.remove(str(study_file.parent))


def spawn(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the real ``tuner`` console script (no ``$TUNER_STORAGE`` unless ``env`` sets it)."""
    full = {k: v for k, v in os.environ.items() if k != "TUNER_STORAGE"}
    return subprocess.Popen([TUNER, *args], cwd=cwd, env={**full, **(env or {})}, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish(procs: list[subprocess.Popen[str]], timeout: float = 180) -> list[tuple[int, str, str]]:
    """Wait for every process; ``(returncode, stdout, stderr)`` each (killed on timeout)."""
    deadline = time.monotonic() + timeout
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            err += "\n<killed by the test: timeout>"
        results.append((p.returncode, out, err))
    return results


def trials(url: str, name: str) -> list[FrozenTrial]:
    """The study's trials (none while the study does not exist yet)."""
    from tuner.store.storage import open_storage

    try:
        return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    except KeyError:
        return []


def states(url: str, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials(url, name):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def running_trial_of(url: str, name: str, pid: int, folder: Path) -> FrozenTrial | None:
    """The RUNNING trial that process ``pid`` is working on (once its objective started: the
    sleepy objective in ``folder`` names it in a file there)."""
    try:
        number = int((folder / f"running-{pid}").read_text())
    except (OSError, ValueError):
        return None
    for t in trials(url, name):
        if t.state == TrialState.RUNNING and t.number == number:
            return t
    return None


class FlakyProxy:
    """A TCP proxy to the PostgreSQL server that a test can cut: ``drop()`` closes every
    open connection; ``close()`` also stops accepting new ones (the database is gone)."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, server]
                if self.closed:  # accepted just as close() ran: cut it too
                    client.close()
                    server.close()
                    return
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self.listener.close()
        self.drop()
