"""``tuner worker NAME``: join a stored study and work on it until the study has its budget.

A worker takes everything (sampler, pruner, objective, space, budget) from the study file
stored with the study, so any machine that can reach the storage and import the objective can
join. Trials are claimed under the study's claim lock (see :mod:`tuner.run.workers._claim`), so
the workers together finish exactly the budget of finished (complete + pruned) trials.
"""

from __future__ import annotations

import logging
import os
import random
import time
import warnings
from collections.abc import Callable

import optuna
import torch
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import ConfigError, ObjectiveError, StorageError, StudyNotFoundError
from tuner.nn.training import CPU_THREADS_ENV
from tuner.run.config import StudyConfig
from tuner.run.outcome import (
    MAX_CONSECUTIVE_FAILURES,
    ProgressHook,
    RunResult,
    best_value,
    call_objective,
    fail_running,
    failing_streak,
    raise_if_hopeless,
    start_run,
)
from tuner.run.packed import optimize_claimed
from tuner.run.study import stored_config
from tuner.run.workers._claim import ClaimLock, Decision, claim_lock, decide
from tuner.store.rdb import ResilientRDBStorage, reraise_lost
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
    return run_worker(study, config, storage, claim_lock(url, storage, name),
                      budget=config.n_trials, n_trials=n_trials,
                      timeout=timeout or config.timeout, seed_salt=seed_salt, progress=progress,
                      announce=announce)


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


def run_worker(
    study: optuna.Study,
    config: StudyConfig,
    storage: BaseStorage,
    lock: ClaimLock,
    *,
    budget: int,
    n_trials: int | None = None,
    timeout: float | None = None,
    seed_salt: int = 1,
    progress: ProgressHook | None = None,
    announce: Callable[[int], None] | None = None,
) -> RunResult:
    """The worker loop: claim, run, repeat, until the study has ``budget`` finished trials,
    this worker ran ``n_trials``, ``timeout`` seconds passed or the objective keeps failing.
    Ctrl-C / SIGTERM end it with ``interrupted=True`` and this worker's trial marked FAIL."""
    started = time.monotonic()
    result = RunResult(study)
    ctx = start_run(study, config, seed_salt)
    mine: dict[int, int] = {}  # trial number -> trial id, for this worker
    failures: list[FrozenTrial] = []

    def began(trial: optuna.Trial) -> None:
        mine[trial.number] = trial._trial_id
        result.trial_numbers.append(trial.number)
        if announce is not None:
            announce(trial._trial_id)

    def objective(trial: optuna.Trial) -> float:
        lock.release()  # the trial exists: the next worker may claim its own
        began(trial)
        return call_objective(config, ctx, trial)

    def out_of_time() -> bool:
        return timeout is not None and time.monotonic() - started >= timeout

    if progress is not None:
        progress.start(study, n_trials, timeout)
    waiting_noted = False
    try:
        while not out_of_time() and len(failures) < MAX_CONSECUTIVE_FAILURES:
            if n_trials is not None and len(result.trial_numbers) >= n_trials:
                break
            before = len(result.trial_numbers)
            lock.acquire()
            try:
                with reraise_lost(storage):  # not Optuna's error hiding it
                    _fail_stale_trials(study)
                    decision, finished, running = decide(study, storage, budget)
                    if decision is Decision.GO and config.pack > 1:  # K per claim: tuner.run.packed
                        left = budget if n_trials is None else n_trials - len(result.trial_numbers)
                        claimable = min(budget - finished - running, left)
                        optimize_claimed(study, config.spec.pack,
                                         lambda trial, ctx: call_objective(config, ctx, trial),
                                         ctx, config.pack, claimable=claimable,
                                         begin=began, release=lock.release)
                    elif decision is Decision.GO:
                        study.optimize(objective, n_trials=1, catch=(Exception,),
                                       gc_after_trial=False)
            except UpdateFinishedTrialError:
                number = result.trial_numbers[-1] if result.trial_numbers else "?"
                log.warning("trial %s was declared dead by another worker (no heartbeat "
                            "reached the storage in time); its retry runs elsewhere", number)
                continue
            finally:
                lock.release()
            if decision is Decision.DONE:
                break
            if decision is Decision.WAIT:
                if not waiting_noted:
                    log.info("waiting: %d finished + %d running trials cover the budget of %d; "
                             "a trial whose worker dies is run again", finished, running, budget)
                    waiting_noted = True
                time.sleep(_poll_s(storage))
                continue
            waiting_noted = False
            ended = result.trial_numbers[before:]  # one, or a pack
            # With a progress line, one read of every trial gives both these trials and the
            # best value; without, only these trials are read.
            trials = study.get_trials(deepcopy=False) if progress is not None and ended else None
            by_number = {t.number: t for t in trials or ()}
            failed = False
            for number in ended:
                trial = by_number[number] if trials else study._storage.get_trial(mine[number])
                failed |= trial.state == TrialState.FAIL
                if progress is not None:
                    progress.trial_finished(trial, best_value(study, trials))
            # "Failing in a row" is the study's: one worker that drew the failing trials
            # while the others succeeded does not stop (they take turns).
            failures[:] = failing_streak(trials or study.get_trials(deepcopy=False)) \
                if failed else []
    except KeyboardInterrupt:
        result.interrupted = True
        last = result.trial_numbers[-config.pack:]  # earlier trials of this worker are finished
        fail_running(study, {n: mine[n] for n in last if n in mine}, "interrupted")
    finally:
        lock.release()
        if progress is not None:
            progress.stop()
    result.elapsed_s = time.monotonic() - started
    # "Every trial diverged" is judged over the whole study: one worker's one or two trials
    # say little about the learning-rate range.
    everyone = RunResult(study, [t.number for t in study.get_trials(deepcopy=False)],
                         interrupted=result.interrupted)
    raise_if_hopeless(study, everyone, failures)
    return result


def _fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and re-queue) dead workers' trials before :func:`decide` counts the RUNNING ones.
    Optuna does it again when it starts a trial, but only after a GO: without this, a dead
    trial would count as running and every worker would wait for it forever."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _poll_s(storage: BaseStorage) -> float:
    interval = storage.heartbeat_interval if isinstance(storage, ResilientRDBStorage) else None
    return max(0.2, min(2.0, (interval or 2) / 2))
