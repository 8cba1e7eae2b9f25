"""Reporting cadence: report intermediate values only at the steps the pruner can act on.

Every ``trial.report`` is a storage write and every ``trial.should_prune`` a storage read (the
pruner looks at other trials), so on SQLite or PostgreSQL a report per epoch costs more than a
small model's epoch. :func:`report_steps` returns the steps (epochs, counted from 1) at which a
report can change the pruner's decision; the objective reports and asks only there.

=====================  ===========================================================================
pruner                 steps reported (``E`` = epochs of a trial)
=====================  ===========================================================================
none (Nop)             none
median / percentile    ``n_warmup_steps + k·interval_steps`` (and 1 without warm-up), below ``E``
halving                rung steps ``min_resource · rf^(rate + r)``, below ``E``
hyperband              the union of its brackets' rung steps ``min_resource · rf^k``, below ``E``
anything else          every epoch (``patient`` counts steps; unknown pruners may read anything)
=====================  ===========================================================================

The last epoch is left out for the known pruners: pruning after the last epoch saves nothing,
and the finished trial's value is told anyway. A pruner whose resource is ``"auto"`` estimates it
from other trials' last step, so it gets every epoch.
"""

from __future__ import annotations

import functools

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    NopPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
)


def report_steps(pruner: BasePruner, max_step: int) -> frozenset[int]:
    """The steps in ``1..max_step`` worth reporting to ``pruner`` (see the module table)."""
    return frozenset(s for s in _useful(pruner, max_step) if 1 <= s <= max_step)


def trial_report_steps(trial: optuna.Trial, max_step: int) -> frozenset[int]:
    """:func:`report_steps` for the pruner of ``trial``'s study."""
    return report_steps(trial.study.pruner, max_step)


@functools.singledispatch
def _useful(pruner: BasePruner, max_step: int) -> range | list[int]:
    return range(1, max_step + 1)


@_useful.register
def _nop(pruner: NopPruner, max_step: int) -> list[int]:
    return []


@_useful.register
def _percentile(pruner: PercentilePruner, max_step: int) -> range | list[int]:
    warmup = getattr(pruner, "_n_warmup_steps", None)
    interval = getattr(pruner, "_interval_steps", None)
    if not isinstance(warmup, int) or not isinstance(interval, int) or interval < 1:
        return range(1, max_step + 1)  # an Optuna we do not know: report everything
    # Optuna prunes at warmup + k·interval; with no warm-up, step 0 does not exist and the
    # first report (step 1) opens the first interval.
    steps = set(range(warmup, max_step, interval)) - {0}
    if warmup == 0 and max_step > 1:
        steps.add(1)
    return sorted(steps)


def _rungs(min_resource: int, factor: int, first_rate: int, max_step: int) -> list[int]:
    out, rate = [], first_rate
    while (step := min_resource * factor**rate) < max_step:
        out.append(step)
        rate += 1
    return out


@_useful.register
def _halving(pruner: SuccessiveHalvingPruner, max_step: int) -> range | list[int]:
    min_resource = getattr(pruner, "_min_resource", None)
    factor = getattr(pruner, "_reduction_factor", None)
    rate = getattr(pruner, "_min_early_stopping_rate", None)
    if not all(isinstance(v, int) and v >= 1 for v in (min_resource, factor)) or not isinstance(
        rate, int
    ):
        return range(1, max_step + 1)  # min_resource="auto" reads other trials' last step
    return _rungs(min_resource, factor, rate, max_step)


@_useful.register
def _hyperband(pruner: HyperbandPruner, max_step: int) -> range | list[int]:
    min_resource = getattr(pruner, "_min_resource", None)
    factor = getattr(pruner, "_reduction_factor", None)
    max_resource = getattr(pruner, "_max_resource", None)
    if not all(isinstance(v, int) and v >= 1 for v in (min_resource, factor, max_resource)):
        return range(1, max_step + 1)  # max_resource="auto" reads other trials' last step
    return _rungs(min_resource, factor, 0, max_step)
