"""Packed optimisation: ask K trials at once, train each packable group as one population.

The loop mirrors ``optuna.Study.optimize`` (timeout, ``n_trials``, callbacks, ``study.stop()``
from a callback, heartbeats of every running trial), but asks ``pack`` trials per round. Each
round's trials are grouped by the objective's packer (``ObjectiveSpec.pack``); a group of two
or more trains as one population through it, every other trial runs alone through the
objective itself, exactly as without packing. Every member reports, is pruned and
finishes as its own trial; callbacks see each trial as it finishes.

Falls back to one-at-a-time for what it cannot stack: objectives without a packer (anything
but the built-in ``classifier``), checkpoint inits (``pretrained``: frozen layers and a head
learning rate of their own), optimisers without a stacked twin, models with buffers, and a
group of one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.storages._heartbeat import fail_stale_trials, get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from tuner.core.failures import fail_reason, log_failure
from tuner.core.keys import FAIL_REASON
from tuner.objectives import ObjectiveFn, Outcome, PackSpec
from tuner.objectives.context import ObjectiveContext

log = logging.getLogger("tuner")

Callback = Callable[[optuna.Study, FrozenTrial], None]


def optimize_packed(
    study: optuna.Study,
    pack_spec: PackSpec | None,
    fn: ObjectiveFn,
    ctx: ObjectiveContext,
    pack: int,
    *,
    n_trials: int | None,
    timeout: float | None,
    begin: Callable[[optuna.Trial], None],
    callbacks: Sequence[Callback] = (),
) -> None:
    """Run up to ``n_trials`` trials of ``fn`` ``pack`` at a time (grouped and trained by the
    objective's ``pack_spec``; ``None``: one at a time), until ``timeout`` seconds or a
    callback calls ``study.stop()``. ``begin(trial)`` runs for each trial as soon as it is
    asked (bookkeeping for Ctrl-C)."""
    spec = pack_spec
    started = time.monotonic()
    asked = 0
    # Optuna's own loop sets these two; callbacks (budget checks) call study.stop().
    study._stop_flag = False
    study._thread_local.in_optimize_loop = True
    try:
        while not study._stop_flag:
            if timeout is not None and time.monotonic() - started >= timeout:
                break
            k = pack if n_trials is None else min(pack, n_trials - asked)
            if k <= 0:
                break
            if is_heartbeat_enabled(study._storage):
                fail_stale_trials(study)
            trials = []
            for _ in range(k):  # each trial known to begin() at once: Ctrl-C may come any time
                trials.append(study.ask())
                begin(trials[-1])
            asked += k
            with contextlib.ExitStack() as beats:
                for trial in trials:
                    beats.enter_context(get_heartbeat_thread(trial._trial_id, study._storage))
                _run_round(study, trials, fn, ctx, spec, callbacks)
    finally:
        study._thread_local.in_optimize_loop = False


def optimize_claimed(
    study: optuna.Study,
    pack_spec: PackSpec | None,
    fn: ObjectiveFn,
    ctx: ObjectiveContext,
    pack: int,
    *,
    claimable: int,
    begin: Callable[[optuna.Trial], None],
    release: Callable[[], None],
) -> int:
    """A worker's packed claim: ask ``min(pack, claimable)`` trials (at least one), call
    ``release()`` as soon as the last of them exists (the next worker may claim), then train
    them as :func:`optimize_packed` does. Returns how many trials were asked."""
    k = max(1, min(pack, claimable))
    asked: list[int] = []

    def begin_then_release(trial: optuna.Trial) -> None:
        begin(trial)
        asked.append(trial.number)
        if len(asked) == k:
            release()

    optimize_packed(study, pack_spec, fn, ctx, k, n_trials=k, timeout=None,
                    begin=begin_then_release)
    return len(asked)


def _run_round(study: optuna.Study, trials: list[optuna.Trial], fn: ObjectiveFn,
               ctx: ObjectiveContext, spec: PackSpec | None,
               callbacks: Sequence[Callback]) -> None:
    groups: dict[tuple, list[tuple[optuna.Trial, dict[str, Any]]]] = {}
    alone: list[optuna.Trial] = []
    for trial in trials:
        key = None
        if spec is not None:
            try:
                hp = ctx.suggest(trial)
                key = spec.key(hp, ctx)
            except Exception:  # the objective itself will fail it, with its own message
                key = None
        if key is None:
            alone.append(trial)
        else:
            groups.setdefault(key, []).append((trial, hp))
    for members in groups.values():
        if len(members) == 1:
            alone.append(members[0][0])
            continue
        outcomes: dict[int, Outcome] = {}
        try:
            spec.train(members, ctx, outcomes)
        except Exception as e:  # fails the members still training, like a failing objective
            for trial, _ in members:
                outcomes.setdefault(trial.number, Outcome(error=e))
        for trial, _ in members:
            if trial.number in outcomes:
                _finish(study, trial, outcomes[trial.number], callbacks)
            else:
                alone.append(trial)
    for trial in sorted(alone, key=lambda t: t.number):
        _finish(study, trial, _run_alone(trial, fn, ctx), callbacks)


def _run_alone(trial: optuna.Trial, fn: ObjectiveFn, ctx: ObjectiveContext) -> Outcome:
    try:
        return Outcome(value=fn(trial, ctx))
    except optuna.TrialPruned:
        return Outcome(pruned=True)
    except Exception as e:
        return Outcome(error=e)


def _finish(study: optuna.Study, trial: optuna.Trial, outcome: Outcome,
            callbacks: Sequence[Callback]) -> None:
    """Tell the storage how ``trial`` ended, then run the callbacks (as Optuna's loop does)."""
    if outcome.error is not None:
        trial.set_user_attr(FAIL_REASON, fail_reason(outcome.error))
        log_failure(trial.number, outcome.error)
        frozen = study.tell(trial, state=TrialState.FAIL)
    elif outcome.pruned:
        frozen = study.tell(trial, state=TrialState.PRUNED)
    elif outcome.value is None or not math.isfinite(outcome.value):
        trial.set_user_attr(FAIL_REASON, f"the objective returned {outcome.value!r}")
        frozen = study.tell(trial, state=TrialState.FAIL)
    else:
        frozen = study.tell(trial, outcome.value)
    for callback in callbacks:
        callback(study, frozen)
