"""Where a trial's storage time goes: every storage method counted and timed in one run.

    .venv/bin/python benchmarks/bench_storage_calls.py [--trials 30] [--storage URL]

Runs the quickstart study (``tuner.run.study.run``, the ``tuner run`` path without a progress
line) on a fresh SQLite file, or on ``--storage`` (e.g. the local PostgreSQL), with every
method of Optuna's ``RDBStorage`` and tuner's storage classes wrapped: per trial, how many
calls each made and how long they took, outermost calls only (a call inside another is part of
it). The heartbeat runs in its own thread, beside the training. Compare two versions with
``PYTHONPATH=TREE`` from a folder outside the repository.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from optuna.storages import RDBStorage

from tuner.cli._app import quiet_optuna
from tuner.run.config import load_config
from tuner.run.study import run
from tuner.store import buffered, drawn, heartbeats, rdb

STATS: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
_DEPTH = threading.local()
SKIP = {"_call_with_retry", "_retry_loop", "_init_buffer"}  # the retry machinery itself


def _counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def method(*args: Any, **kwargs: Any) -> Any:
        if getattr(_DEPTH, "n", 0):
            return fn(*args, **kwargs)
        _DEPTH.n = 1
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _DEPTH.n = 0
            STATS[name][0] += 1
            STATS[name][1] += time.perf_counter() - started
    return method


def instrument() -> None:
    for cls in (RDBStorage, rdb.ResilientRDBStorage, buffered.BufferedRDBStorage,
                heartbeats.HeartbeatChecks):
        for name, fn in list(vars(cls).items()):
            if (callable(fn) and not name.startswith("__") and name not in SKIP
                    and not isinstance(fn, staticmethod | classmethod | type)):
                setattr(cls, name, _counted(f"{cls.__name__}.{name}", fn))
    # a trial's parameters drawn together are written when ctx.suggest's block ends, outside
    # any storage method
    drawn._write_params = _counted("drawn._write_params", drawn._write_params)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--storage", help="a storage URL (default: a fresh SQLite file)")
    args = p.parse_args()
    quiet_optuna()
    instrument()
    config = load_config(os.path.join(os.path.dirname(__file__), "..", "studies",
                                      "quickstart.toml"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TUNER_ARTIFACT_DIR", os.path.join(tmp, "artifacts"))
        url = args.storage or f"sqlite:///{tmp}/calls.db"
        started = time.perf_counter()
        run(config.with_overrides(n_trials=args.trials, name=f"calls-{uuid.uuid4().hex[:8]}"),
            url)
        wall = time.perf_counter() - started
    n = args.trials
    total = sum(s for _, s in STATS.values())
    print(f"{n} trials in {wall:.2f} s; storage calls {total:.2f} s = {total / n * 1000:.1f} ms "
          "per trial (the heartbeat thread's included)")
    print(f"{'method':<52} {'calls/trial':>11} {'ms/trial':>9}")
    for name, (calls, seconds) in sorted(STATS.items(), key=lambda kv: -kv[1][1])[:20]:
        print(f"{name:<52} {calls / n:11.2f} {seconds / n * 1000:9.2f}")


if __name__ == "__main__":
    main()
