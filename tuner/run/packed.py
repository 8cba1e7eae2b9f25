"""Packed optimisation: ask K trials at once, train each packable group as one population.

The trial loop (:mod:`tuner.run.loop`) claims up to ``pack`` trials at once here, with a
heartbeat for every running trial, as ``optuna.Study.optimize`` keeps one for its trial. Each
claim's trials are grouped by the objective's packer (``ObjectiveSpec.pack``); a group of two
or more trains as one population through it, every other trial runs alone through the
objective itself, exactly as without packing. Every member reports, is pruned and finishes
as its own trial.

The parameters that members of one group must share (``PackSpec.shared``: the batch size and
the architecture) are drawn once per claim, with its first trial; its other trials are asked
with those values fixed (``study.enqueue_trial``) and draw the rest (``lr``, ``init`` …) each on
their own. Without this a searched batch size split a pack of 8 into groups of 1-3.

Falls back to one-at-a-time for what it cannot stack: objectives without a packer (anything
but the built-in ``classifier``), checkpoint inits (``pretrained``: frozen layers and a head
learning rate of their own), optimisers without a stacked twin, models with buffers, and a
group of one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner.core.failures import fail_reason, log_failure
from tuner.core.keys import FAIL_REASON, PACK_OF
from tuner.objectives import ObjectiveFn, Outcome, PackSpec
from tuner.objectives.context import ObjectiveContext

log = logging.getLogger("tuner")


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
    """One packed claim: ask ``min(pack, claimable)`` trials (at least one), call ``release()``
    as soon as the last of them exists (the next process may claim), then train them, grouped
    by the objective's ``pack_spec`` (``None``: one at a time), with a heartbeat for each while
    they run. ``begin(trial)`` runs for each trial as soon as it is asked (bookkeeping for
    Ctrl-C). Returns how many trials were asked."""
    k = max(1, min(pack, claimable))
    trials: list[optuna.Trial] = []
    with warnings.catch_warnings():  # "heartbeat is supposed to be used with Study.optimize"
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # enqueue_trial
        fixed: dict[str, Any] = {}
        for i in range(k):  # each trial known to begin() at once: Ctrl-C may come any time
            if fixed:  # marked, so that one a Ctrl-C left queued is known (claim.py)
                study.enqueue_trial(fixed, user_attrs={PACK_OF: trials[0].number},
                                    skip_if_exists=False)
            trials.append(study.ask())
            begin(trials[-1])
            if i == 0 and k > 1:
                fixed = _shared_draw(study, trials[0], ctx, pack_spec)
    release()
    with _heartbeats(study, [t._trial_id for t in trials]):
        _run_round(study, trials, fn, ctx, pack_spec)
    return len(trials)


def _shared_draw(study: optuna.Study, first: optuna.Trial, ctx: ObjectiveContext,
                 spec: PackSpec | None) -> dict[str, Any]:
    """The searched parameters that ``spec.shared`` names, as the sampler drew them for
    ``first`` (Optuna's stored names: ``batch_size_log2``), for the claim's other trials to
    share (``study.enqueue_trial``): one draw per pack, the rest per member. ``{}`` (every
    trial drawn on its own) without a packer, when ``first`` cannot be suggested, or while the
    study has queued trials of its own (retries of dead trials: ``ask`` would pop those first
    and leave the copy queued)."""
    if spec is None or not spec.shared or isinstance(study.sampler, optuna.samplers.GridSampler):
        return {}  # a grid assigns whole points: a fixed part would take a trial off its grid
    try:
        ctx.suggest(first)
    except Exception:  # the objective fails it with its own message; the others draw freely
        return {}
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return {}
    names = [ctx.space[n].optuna_name for n in spec.shared if n in ctx.space]
    return {n: first.params[n] for n in names if n in first.params}


@contextlib.contextmanager
def _heartbeats(study: optuna.Study, trial_ids: list[int]) -> Iterator[None]:
    """One thread recording a heartbeat for each of ``trial_ids`` every heartbeat interval
    (what ``Study.optimize`` does for its one trial), while the block runs."""
    storage = study._storage
    heartbeat = getattr(storage, "get_heartbeat_interval", None)  # RDB storages have it
    interval = heartbeat() if heartbeat is not None else None
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in trial_ids:
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="tuner-heartbeats", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _run_round(study: optuna.Study, trials: list[optuna.Trial], fn: ObjectiveFn,
               ctx: ObjectiveContext, spec: PackSpec | None) -> None:
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
        log.debug("trials %s train together as one population",
                  ", ".join(str(t.number) for t, _ in members))
        try:
            spec.train(members, ctx, outcomes)
        except Exception as e:  # fails the members still training, like a failing objective
            for trial, _ in members:
                outcomes.setdefault(trial.number, Outcome(error=e))
        for trial, _ in members:
            if trial.number in outcomes:
                _finish(study, trial, outcomes[trial.number])
            else:
                alone.append(trial)
    for trial in sorted(alone, key=lambda t: t.number):
        _finish(study, trial, _run_alone(trial, fn, ctx))


def _run_alone(trial: optuna.Trial, fn: ObjectiveFn, ctx: ObjectiveContext) -> Outcome:
    try:
        return Outcome(value=fn(trial, ctx))
    except optuna.TrialPruned:
        return Outcome(pruned=True)
    except Exception as e:
        return Outcome(error=e)


def _finish(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    """Tell the storage how ``trial`` ended."""
    if outcome.error is not None:
        trial.set_user_attr(FAIL_REASON, fail_reason(outcome.error))
        log_failure(trial.number, outcome.error)
        study.tell(trial, state=TrialState.FAIL)
    elif outcome.pruned:
        study.tell(trial, state=TrialState.PRUNED)
    elif outcome.value is None or not math.isfinite(outcome.value):
        trial.set_user_attr(FAIL_REASON, f"the objective returned {outcome.value!r}")
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, outcome.value)
