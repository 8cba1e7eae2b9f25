"""Many processes, one study: ``tuner worker`` and ``tuner run --jobs N``.

Optuna's shared-storage model does the distribution (every worker asks the storage for its next
trial); tuner adds an exact study-wide budget (:mod:`tuner.run.claim`), crash recovery
(heartbeats, :mod:`tuner.store.rdb`) and the local process pool (:mod:`tuner.run.workers._jobs`).
"""

from __future__ import annotations

from tuner.run.workers._fork import single_threaded_parent
from tuner.run.workers._jobs import WorkerError, announce_trial, run_jobs, threads_per_worker
from tuner.run.workers._worker import cpu_cores, set_torch_threads, work, worker_config

__all__ = [
    "WorkerError",
    "announce_trial",
    "cpu_cores",
    "run_jobs",
    "set_torch_threads",
    "single_threaded_parent",
    "threads_per_worker",
    "work",
    "worker_config",
]
