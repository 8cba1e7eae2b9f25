"""``tuner worker NAME``: join a stored study and work on it until the study has its budget.

A worker takes everything (sampler, pruner, objective, space, budget) from the study file
stored with the study, so any machine that can reach the storage and import the objective can
join. Its loop is every process's (:mod:`tuner.run.loop`): trials are claimed under the study's
claim lock, so all processes together finish exactly the budget of finished trials.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable

import optuna
import torch
from optuna.storages import BaseStorage

from tuner.core.errors import ConfigError, ObjectiveError, StorageError, StudyNotFoundError
from tuner.nn.training import CPU_THREADS_ENV
from tuner.run.claim import claim_lock
from tuner.run.config import StudyConfig
from tuner.run.loop import run_trials
from tuner.run.outcome import Deadline, ProgressHook, RunResult
from tuner.run.study import stored_config
from tuner.store.storage import JOURNAL_PREFIX, open_storage, resolve_url
from tuner.store.studies import load_existing

log = logging.getLogger("tuner")


def cpu_cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads for this process's training, so N workers on one machine
    share its cores (``$TUNER_CPU_THREADS`` is what :mod:`tuner.nn.training` applies)."""
    os.environ[CPU_THREADS_ENV] = os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def work(
    name: str,
    storage_url: str | None = None,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    threads: int | None = None,
    wait_s: float = 0.0,
    seed_salt: int | None = None,
    progress: ProgressHook | None = None,
    pack: int | None = None,
    device: str | None = None,
    announce: Callable[[int], None] | None = None,
) -> RunResult:
    """Join stored study ``name`` and run trials until it has its budget of finished trials.

    ``n_trials``: at most this many trials from this worker. ``threads``: torch threads for
    its training (default: the training's own setting, ``$TUNER_CPU_THREADS``). ``wait_s``:
    wait this long for the study to be created (workers started together with the process
    that creates it). ``seed_salt`` makes
    this worker's sampler seed differ from the others' (default: random). ``pack`` and
    ``device`` override the stored ``[study] pack`` and ``[objective] device`` for this worker.
    ``announce(trial_id)`` runs as each of this worker's trials begins.
    """
    if threads is not None:
        set_torch_threads(threads)
    url = resolve_url(storage_url)
    storage, study = _wait_for_study(name, url, wait_s)
    config = worker_config(study, device)
    if pack is not None:
        config = config.with_overrides(pack=pack)
    if seed_salt is None:
        seed_salt = random.SystemRandom().randrange(1, 2**31)
    return run_trials(study, config, budget=config.n_trials, follow_stored_budget=True,
                      lock=claim_lock(url, storage, name), n_trials=n_trials, timeout=timeout,
                      deadline=None if timeout else Deadline.of(study, config.timeout),
                      seed_salt=seed_salt, progress=progress, announce=announce)


def _wait_for_study(name: str, url: str, wait_s: float) -> tuple[BaseStorage, optuna.Study]:
    """Open the storage at ``url`` and load study ``name``, for up to ``wait_s`` seconds while
    the study, or the SQLite/journal file that will hold it, does not exist yet."""
    deadline = time.monotonic() + wait_s
    storage: BaseStorage | None = None
    while True:
        try:
            if storage is None:
                storage = open_storage(url, must_exist=True)
            return storage, load_existing(name, storage)
        except StorageError:
            if not url.startswith((JOURNAL_PREFIX, "sqlite:")) or time.monotonic() >= deadline:
                raise  # a server storage that cannot be opened is not waited for
        except StudyNotFoundError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(1.0)


def worker_config(study: optuna.Study, device: str | None = None) -> StudyConfig:
    """The stored study file of ``study``, its objective imported on this machine (to run on
    ``device`` when given)."""
    name = study.study_name
    try:
        config = stored_config(study, device)
    except ObjectiveError as e:
        raise ObjectiveError(  # e names the stored study and its [objective] name
            f"{e}; every worker must be able to import the study's objective "
            "(install its package here, or start the worker in the folder that holds it)"
        ) from None
    if config is None:
        raise ConfigError(
            f"study {name!r} was not created by tuner (it stores no study file); adopt it once "
            f"with: tuner resume {name} --config STUDY_FILE --n-trials 1"
        )
    return config
