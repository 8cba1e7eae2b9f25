"""The one trial loop: ``tuner run``, ``resume``, ``worker`` and each ``--jobs`` worker.

Claim, run, repeat. Under the study's claim lock (:mod:`tuner.run.claim`) a process decides
whether the study needs another trial, asks for it (one, or a pack: :mod:`tuner.run.packed`),
releases the lock as soon as the trial exists, and trains. Because every process decides
under the same lock against the same budget, the budget is exact for any mix of processes.

A process stops at the first of (``RunResult.stopped_by``):

* ``budget``: the study has its budget of finished (complete + pruned) trials (``run``,
  ``worker`` and a plain ``resume`` read the stored budget again at each claim, so one grown
  by a ``resume --n-trials`` elsewhere holds for them too);
* ``n_trials``: this process ran its own ``n_trials`` trials;
* ``timeout``: this process's own ``timeout`` seconds passed (a flag: it is never stored);
* ``deadline``: the study's stored ``[study] timeout`` passed, counted from the study's first
  trial (:class:`tuner.run.outcome.Deadline`);
* ``grid``: the grid sampler has run every point of its grid;
* ``covered``: the budget is covered by other processes' running trials, and this process
  does not wait for them (``wait_for_others=False``: a pool worker serves another study);
* ``switch``: ``may_claim()``, asked under the lock before each claim, said no (a pool worker:
  another study should get its next trial);
* ``failures``: the objective failed in :data:`MAX_CONSECUTIVE_FAILURES` trials in a row;
* ``interrupted``: Ctrl-C or SIGTERM (this process's running trials are marked failed).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core.keys import FAIL_REASON, stored_budget
from tuner.run.claim import ClaimLock, Decision, NoLock, decide
from tuner.run.config import StudyConfig
from tuner.run.outcome import (
    MAX_CONSECUTIVE_FAILURES,
    Deadline,
    ProgressHook,
    RunResult,
    best_value,
    call_objective,
    fail_running,
    failing_streak,
    finished_by,
    raise_if_hopeless,
    start_run,
)
from tuner.run.packed import optimize_claimed
from tuner.store.rdb import ResilientRDBStorage, reraise_lost, uncached
from tuner.store.studies import in_budget

log = logging.getLogger("tuner")


def run_trials(
    study: optuna.Study,
    config: StudyConfig,
    *,
    budget: int | None,
    follow_stored_budget: bool = False,
    lock: ClaimLock | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    deadline: Deadline | None = None,
    seed_salt: int = 0,
    progress: ProgressHook | None = None,
    announce: Callable[[int], None] | None = None,
    wait_for_others: bool = True,
    may_claim: Callable[[], bool] | None = None,
) -> RunResult:
    """Claim and run trials of ``study`` until one of the stops above. ``budget``: the study's
    finished trials at which to stop (``None``: no study-wide budget, only ``n_trials``
    attempts); with ``follow_stored_budget``, the study's stored budget as it is at each claim
    (a ``resume --n-trials`` beside this process may raise it), else ``budget`` throughout.
    ``lock``: the study's claim lock (default: none, for an in-memory study).
    ``announce(trial_id)`` runs as each of this process's trials begins.
    ``wait_for_others=False``: stop (``covered``) rather than wait while the budget is covered
    by other processes' running trials. ``may_claim()``: asked under the lock before each
    claim; ``False`` stops the run (``switch``)."""
    started = time.monotonic()
    config = config.bind()  # a no-op for a config bound already (run, resume)
    lock = lock or NoLock()
    storage = uncached(study._storage)
    result = RunResult(study)
    if n_trials == 0:
        result.stopped_by = "n_trials"
        return result
    ctx = start_run(study, config, seed_salt)
    existing = study.get_trials(deepcopy=False)
    first_number = len(existing)  # later trials are those of this run's time
    mine: dict[int, int] = {}  # trial number -> trial id, for this process
    failures: list[FrozenTrial] = []

    def began(trial: optuna.Trial) -> None:
        mine[trial.number] = trial._trial_id
        result.trial_numbers.append(trial.number)
        if announce is not None:
            announce(trial._trial_id)

    def objective(trial: optuna.Trial) -> float:
        lock.release()  # the trial exists: the next process may claim its own
        began(trial)
        return call_objective(config, ctx, trial)

    def stop_reason() -> str | None:
        if timeout is not None and time.monotonic() - started >= timeout:
            return "timeout"
        if deadline is not None and deadline.passed():
            return "deadline"
        if len(failures) >= MAX_CONSECUTIVE_FAILURES:
            return "failures"
        if n_trials is not None and len(result.trial_numbers) >= n_trials:
            return "n_trials"
        if grid_exhausted(study):
            return "grid"
        return None

    done_before = sum(in_budget(t) for t in existing)

    def total_for(budget: int | None) -> int | None:
        """This process's trials to run, for the progress line."""
        left = None if budget is None else max(budget - done_before, 0)
        return n_trials if left is None else left if n_trials is None else min(n_trials, left)

    total = total_for(budget)
    if progress is not None:
        progress.start(study, total, timeout if deadline is None else deadline.left_s())
    waits = 0  # polls in a row that found the budget covered by others' running trials
    try:
        while (reason := stop_reason()) is None:
            before = len(result.trial_numbers)
            lock.acquire()
            try:
                if may_claim is not None and not may_claim():
                    reason = "switch"
                    break
                with reraise_lost(storage):  # not Optuna's error hiding it
                    if config.pack > 1:  # Optuna's ask() checks nothing itself
                        _fail_stale_trials(study, storage)
                    if follow_stored_budget:
                        budget = stored_budget(
                            study._storage.get_study_user_attrs(study._study_id)) or budget
                        retotal = getattr(progress, "retotal", None)  # a user's hook may lack it
                        if retotal is not None and total_for(budget) != total:
                            total = total_for(budget)
                            retotal(total)
                    if budget is None:
                        decision, finished, running = Decision.GO, 0, 0
                    else:
                        decision, finished, running = decide(study, storage, budget)
                    if decision is not Decision.GO and config.pack == 1:
                        # A dead process's trial counts as running until it is failed. A
                        # single claim that goes ahead needs no check first: Optuna's trial
                        # start checks heartbeats itself (and its retry is asked first).
                        _fail_stale_trials(study, storage)
                        decision, finished, running = decide(study, storage, budget)
                    if decision is Decision.GO and config.pack > 1:  # K per claim
                        left = n_trials - len(result.trial_numbers) if n_trials else config.pack
                        claimable = left if budget is None else \
                            min(budget - finished - running, left)
                        optimize_claimed(study, config.spec.pack,
                                         lambda trial, ctx: call_objective(config, ctx, trial),
                                         ctx, config.pack, claimable=claimable,
                                         begin=began, release=lock.release)
                    elif decision is Decision.GO:
                        study.optimize(objective, n_trials=1, catch=(Exception,),
                                       gc_after_trial=False)
            except (UpdateFinishedTrialError, AssertionError) as e:
                # Optuna's own check after a failed tell of a trial whose objective returned
                # ("Should not reach") hides the UpdateFinishedTrialError it follows
                if not isinstance(e, UpdateFinishedTrialError) and \
                        not isinstance(e.__context__, UpdateFinishedTrialError):
                    raise
                number = result.trial_numbers[-1] if result.trial_numbers else None
                _say_ended_elsewhere(study, mine.get(number) if number is not None else None,
                                     number)
                continue
            finally:
                lock.release()
            if decision is Decision.DONE:
                reason = "budget"
                break
            if decision is Decision.WAIT and not wait_for_others:
                reason = "covered"
                break
            if decision is Decision.WAIT:
                if not waits:
                    log.info("waiting for %d running trial(s) of other processes (%d finished, "
                             "budget %d); one whose process is gone is marked failed once it "
                             "has sent no heartbeat for %.0fs", running, finished, budget,
                             storage.grace_s)
                time.sleep(_poll_s(storage, waits))
                waits += 1
                continue
            waits = 0
            failures[:] = _note_ended(study, result.trial_numbers[before:], mine, progress)
    except KeyboardInterrupt:
        reason = "interrupted"
        result.interrupted = True
        last = result.trial_numbers[-config.pack:]  # earlier trials of this process are finished
        fail_running(study, {n: mine[n] for n in last if n in mine}, "interrupted")
    finally:
        lock.release()
        if progress is not None:
            progress.stop()
    result.stopped_by = reason
    result.deadline = deadline
    result.elapsed_s = time.monotonic() - started
    # "Every trial diverged" is judged over every process's trials since this one started:
    # one worker's one or two trials say little about the learning-rate range.
    era = [t.number for t in study.get_trials(deepcopy=False) if t.number >= first_number]
    raise_if_hopeless(study, RunResult(study, era, interrupted=result.interrupted), failures)
    return result


def grid_exhausted(study: optuna.Study) -> bool:
    """Whether the study's sampler enumerates a grid and every point of it has run (Optuna's
    own loop stops there; one claim at a time has to ask)."""
    exhausted = getattr(study.sampler, "is_exhausted", None)
    return bool(exhausted is not None and exhausted(study))


def _note_ended(study: optuna.Study, ended: list[int], mine: dict[int, int],
                progress: ProgressHook | None) -> list[FrozenTrial]:
    """Report this process's trials that just ended (one, or a pack); return the study's
    failing streak when one of them failed ("failing in a row" is the study's: a worker that
    drew the failing trials while the others succeeded does not stop), else ``[]``.

    With a progress line, one read of every trial gives both these trials and the best value;
    without, or with a hook whose ``wants_best`` is false, only these trials are read (a read
    of every trial per trial grows with the study: a pool worker's studies run long)."""
    wants_best = progress is not None and getattr(progress, "wants_best", True)
    trials = study.get_trials(deepcopy=False) if wants_best and ended else None
    by_number = {t.number: t for t in trials or ()}
    failed = False
    for number in ended:
        trial = by_number[number] if trials else study._storage.get_trial(mine[number])
        failed |= trial.state == TrialState.FAIL
        if progress is not None:
            best = best_value(study, finished_by(trials, trial)) if trials else None
            progress.trial_finished(trial, best)
    return failing_streak(trials or study.get_trials(deepcopy=False)) if failed else []


def _say_ended_elsewhere(study: optuna.Study, trial_id: int | None, number: int | None) -> None:
    """This process's trial was ended by another one: a ``tuner cancel`` (its fail reason
    says so) or a declaration of death (no heartbeat reached the storage in time)."""
    reason = None
    if trial_id is not None:
        try:
            reason = study._storage.get_trial(trial_id).user_attrs.get(FAIL_REASON)
        except Exception:  # the message is all that depends on it
            reason = None
    if reason and "heartbeat" not in reason:
        log.warning("trial %s was ended by another process: %s", number, reason)
    else:
        log.warning("trial %s was declared dead by another process (no heartbeat reached the "
                    "storage in time); its retry runs elsewhere", number)


def fail_stale_trials(study: optuna.Study) -> None:
    """:func:`_fail_stale_trials` for a process that runs none of ``study``'s trials now (a pool
    worker finding a study whose budget only dead trials cover); call under its claim lock."""
    _fail_stale_trials(study, uncached(study._storage))


def _fail_stale_trials(study: optuna.Study, storage: BaseStorage) -> None:
    """Fail (and re-queue) dead processes' trials, so that :func:`decide` does not count them
    as running: without this, once the running trials cover the budget every process would
    wait for a dead one forever. Called when a claim would wait or stop, and before every
    packed claim; a single claim that goes ahead leaves it to Optuna's trial start, which
    checks heartbeats itself (each check reads the study's running trials: ~5 ms per trial on
    SQLite). A trial's first heartbeat is written with it (:mod:`tuner.store.rdb`), so one
    whose process died at once goes stale like any other; a trial an older tuner created and
    that never sent a heartbeat is failed too (Optuna never would), once the study nears its
    budget."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    if isinstance(storage, ResilientRDBStorage) and storage.heartbeat_interval:
        storage.fail_unstarted_heartbeats(study)


def _poll_s(storage: BaseStorage, waits: int = 0) -> float:
    """How long to sleep before the ``waits``-th poll for others' running trials: 0.05 s,
    doubling up to half the heartbeat interval (at most 2 s). The last trials of a study
    usually end within a second, and a process that slept 2 s past them kept the whole
    command waiting; a long wait still costs one small read every 2 s."""
    interval = storage.heartbeat_interval if isinstance(storage, ResilientRDBStorage) else None
    return min(0.05 * 2**min(waits, 10), max(0.2, min(2.0, (interval or 2) / 2)))
