"""``tuner worker --pool --ray ADDRESS --slots N``: the pool's workers as Ray actors.

Ray places the actors (one CPU each, or one GPU each with ``--devices cuda``) on its cluster;
each actor runs :func:`tuner.service.pool.serve_queue` against the shared storage, exactly as a
``tuner worker --pool`` process does, so the queue's rules, the exact budgets and the
heartbeats are the same. Ray is the placement engine only: no trial goes through Ray's own
object store, and Ray Tune is not involved.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from tuner.core.errors import ConfigError
from tuner.service.pool import serve_queue

log = logging.getLogger("tuner")


class PoolActor:
    """One pool worker inside a Ray actor process."""

    def serve(self, url: str, device: str | None, n_trials: int | None, timeout: float | None,
              until_empty: bool) -> dict[str, Any]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # tuner's lines, not Optuna's too
        logging.getLogger("tuner").setLevel(logging.INFO)
        me = f"ray:{socket.gethostname()}:{os.getpid()}"
        result = serve_queue(url, device=device, threads=1, name=me, n_trials=n_trials,
                             timeout=timeout, until_empty=until_empty)
        return {"id": me, "trials": result.trials, "stopped_by": result.stopped_by}


def run_on_ray(address: str, url: str, n: int, *, devices: list[str] | None = None,
               n_trials: int | None = None, timeout: float | None = None,
               until_empty: bool = False) -> int:
    """Start ``n`` pool actors on the Ray cluster at ``address`` and wait for them (Ctrl-C
    cancels them: their running trials are marked failed, to be retried). Returns the number
    of trials they ran."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'tuner[ray]'") from None
    gpu = bool(devices) and any(d.startswith("cuda") for d in devices or ())
    _check_reachable(address)
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=True,
                 logging_level=logging.WARNING, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot join the Ray cluster at {address}: {e}") from None
    remote = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_restarts=0)(PoolActor)
    actors = [remote.remote() for _ in range(n)]
    refs = [a.serve.remote(url, "cuda" if gpu else None, n_trials, timeout, until_empty)
            for a in actors]
    try:
        results = ray.get(refs)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref)  # a KeyboardInterrupt in each actor: its running trial is failed
        for ref in refs:
            try:
                ray.get(ref, timeout=30)
            except Exception:  # cancelled, as asked
                log.debug("ray actor ended", exc_info=True)
        raise
    finally:
        for a in actors:
            ray.kill(a)
    for r in results:
        log.info("ray pool worker %s: %s (%s)", r["id"], r["trials"], r["stopped_by"])
    return sum(sum(r["trials"].values()) for r in results)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A ``host:port`` that nothing answers on is one error at once: Ray itself keeps trying
    for minutes. (``auto`` and ``ray://`` addresses are left to Ray.)"""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(f"cannot join the Ray cluster at {address}: nothing answers there "
                          f"({e.strerror or e}); start one with: ray start --head") from None
