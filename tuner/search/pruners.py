"""Pruners by name: ``none``, ``median``, ``halving``, ``hyperband``, ``patient``.

``[pruner]`` options are the keyword arguments of the Optuna class, each checked against
:data:`OPTION_RULES` (type and lower bound) before the pruner is built, so a study file fails at
load time, never mid-study:

* median: ``n_startup_trials`` (int >= 0), ``n_warmup_steps`` (int >= 0),
  ``interval_steps`` (int >= 1), ``n_min_trials`` (int >= 1)
* halving: ``min_resource`` (int >= 1 or "auto"), ``reduction_factor`` (int >= 2),
  ``min_early_stopping_rate`` (int >= 0), ``bootstrap_count`` (int >= 0)
* hyperband: ``min_resource`` (int >= 1), ``max_resource`` (int >= 1 or "auto"; default: the
  objective's epochs; not below ``min_resource``), ``reduction_factor``, ``bootstrap_count``
* patient: ``patience`` (int >= 0, default 1), ``min_delta`` (number >= 0), ``wrapped`` (the
  pruner it wraps, default ``median``; ``none``: plain early stopping on the trial's own curve)
  and the wrapped pruner's own options
* none: no options

``median`` is Optuna's rule, reading the completed trials once per trial rather than at every
report (:class:`SnapshotMedianPruner`). ``patient`` passes the options it does not own to the
pruner it wraps; a step is an epoch. It lets the wrapped pruner judge a trial (or, wrapping
``none``, prunes it) only once the trial's best value over its last ``patience + 1`` steps is
worse than its best before them by more than ``min_delta`` (Optuna's rule: a flat curve is
not pruned, a falling one is).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PatientPruner,
    SuccessiveHalvingPruner,
)
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import ConfigError
from tuner.core.option_rules import OptionRule, accepted_options, build, check_rules
from tuner.core.registry import Registry

PrunerFactory = Callable[[Mapping[str, Any], int, str], BasePruner]
PRUNERS: Registry[PrunerFactory] = Registry("pruner")
SNAPSHOTS_KEPT = 64  # trials judged at once by one process (a pack) need their own snapshot


class _CompletedAsOf:
    """``study`` whose COMPLETE trials are a list read earlier; everything else is live."""

    def __init__(self, study: optuna.Study, complete: list[FrozenTrial]) -> None:
        self._study = study
        self._complete = complete

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        if states is not None and tuple(states) == (TrialState.COMPLETE,):
            return list(self._complete)
        return self._study.get_trials(deepcopy=deepcopy, states=states)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class SnapshotMedianPruner(MedianPruner):
    """Optuna's median pruner, reading the completed trials once per trial.

    ``MedianPruner.prune`` reads every COMPLETE trial at each report; through an RDB storage
    that is one query per epoch (~2–5 ms on SQLite, more on PostgreSQL), the largest share
    of a short trial's storage time (measured for issue 7; the figures are in
    BENCHMARKS.md's git history). Here a trial is judged against the trials that had
    completed at its first pruning check. In one process nothing completes while a trial
    runs, so the decisions are Optuna's exactly; with several workers a trial that completes
    meanwhile counts from the next trial on.
    """

    # No __init__ of its own: the study file's options are MedianPruner's signature.
    _snapshots: dict[int, list[FrozenTrial]] | None = None

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if self._snapshots is None:
            self._snapshots = {}
        complete = self._snapshots.get(trial.number)
        if complete is None:
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            self._snapshots[trial.number] = complete
            while len(self._snapshots) > SNAPSHOTS_KEPT:
                del self._snapshots[next(iter(self._snapshots))]
        return super().prune(_CompletedAsOf(study, complete), trial)  # type: ignore[arg-type]


CLASSES: dict[str, type[BasePruner]] = {
    "none": NopPruner, "median": SnapshotMedianPruner, "halving": SuccessiveHalvingPruner,
    "hyperband": HyperbandPruner, "patient": PatientPruner,
}

# Steps are epochs. With few epochs per trial, the pruner must start early to matter.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "median": {"n_startup_trials": 5, "n_warmup_steps": 1},
    "halving": {"min_resource": 1},
    "hyperband": {"min_resource": 1},
}


OPTION_RULES: dict[str, OptionRule] = {
    "n_startup_trials": OptionRule(int, 0),
    "n_warmup_steps": OptionRule(int, 0),
    "interval_steps": OptionRule(int, 1),
    "n_min_trials": OptionRule(int, 1),
    "min_resource": OptionRule(int, 1, auto=True),
    "max_resource": OptionRule(int, 1, auto=True),
    "reduction_factor": OptionRule(int, 2),
    "min_early_stopping_rate": OptionRule(int, 0),
    "bootstrap_count": OptionRule(int, 0),
    "patience": OptionRule(int, 0),
    "min_delta": OptionRule(float, 0),
}


def check_options(options: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ConfigError` for the first option whose value breaks its rule."""
    check_rules(options, OPTION_RULES, where)


def _simple(name: str) -> PrunerFactory:
    def factory(options: Mapping[str, Any], max_epochs: int, where: str) -> BasePruner:
        check_options(options, where)
        return build(CLASSES[name], {**_DEFAULTS.get(name, {}), **options}, where)

    return factory


PRUNERS.add("none", _simple("none"))
PRUNERS.add("median", _simple("median"))
PRUNERS.add("halving", _simple("halving"))


@PRUNERS.register("hyperband")
def _hyperband(options: Mapping[str, Any], max_epochs: int, where: str) -> BasePruner:
    check_options(options, where)
    merged = {**_DEFAULTS["hyperband"], "max_resource": max(max_epochs, 1), **options}
    low, high = merged["min_resource"], merged["max_resource"]
    if not isinstance(low, int):  # Optuna would fail at the first report, mid-study
        raise ConfigError(f"{where}: min_resource must be a whole number >= 1 for hyperband, "
                          f"got {low!r}")
    if isinstance(high, int) and low > high:
        raise ConfigError(f"{where}: min_resource ({low}) must not exceed max_resource ({high}; "
                          "default: the objective's epochs)")
    return build(HyperbandPruner, merged, where)


@PRUNERS.register("patient")
def _patient(options: Mapping[str, Any], max_epochs: int, where: str) -> BasePruner:
    options = dict(options)
    wrapped = options.pop("wrapped", "median")
    inner_names = [n for n in PRUNERS.names() if n != "patient"]
    if not isinstance(wrapped, str) or wrapped not in inner_names:
        raise ConfigError(f"{where}: wrapped must name the pruner patient wraps "
                          f"({', '.join(inner_names)}), got {wrapped!r}")
    own = set(accepted_options(PatientPruner))
    inner_valid = set(accepted_options(CLASSES[wrapped]))
    unknown = sorted(set(options) - own - inner_valid)
    if unknown:
        valid = ", ".join(["wrapped", *sorted(own), *sorted(inner_valid)])
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)} for patient wrapping "
                          f"{wrapped}; valid: {valid}")
    check_options(options, where)
    inner_options = {k: v for k, v in options.items() if k not in own}
    inner = None if wrapped == "none" else PRUNERS.get(wrapped)(inner_options, max_epochs, where)
    outer_options = {k: v for k, v in options.items() if k in own}
    outer_options.setdefault("patience", 1)
    return build(PatientPruner, outer_options, where, fixed={"wrapped_pruner": inner})


def build_pruner(
    name: str, options: Mapping[str, Any], max_epochs: int = 1, where: str = "[pruner]"
) -> optuna.pruners.BasePruner:
    """A pruner of the named kind; ``max_epochs`` bounds resource-based pruners."""
    return PRUNERS.get(name)(options, max_epochs, where)
