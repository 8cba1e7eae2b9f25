"""Pruners by name: ``none``, ``median``, ``halving``, ``hyperband``, ``patient``.

``[pruner]`` options are the keyword arguments of the Optuna class (``n_startup_trials``,
``n_warmup_steps``, ``reduction_factor`` …). ``patient`` wraps another pruner named by its
``wrapped`` option (default ``median``) and passes it the remaining options it understands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna

from tuner.errors import ConfigError
from tuner.options import accepted_options, build
from tuner.registry import Registry

PrunerFactory = Callable[[Mapping[str, Any], int, str], optuna.pruners.BasePruner]
PRUNERS: Registry[PrunerFactory] = Registry("pruner")

# Steps are epochs. With few epochs per trial, the pruner must start early to matter.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "median": {"n_startup_trials": 5, "n_warmup_steps": 1},
    "halving": {"min_resource": 1},
    "hyperband": {"min_resource": 1},
}


def _simple(cls: type, name: str) -> PrunerFactory:
    def factory(options: Mapping[str, Any], max_epochs: int, where: str):
        return build(cls, {**_DEFAULTS.get(name, {}), **options}, where)

    return factory


PRUNERS.add("none", _simple(optuna.pruners.NopPruner, "none"))
PRUNERS.add("median", _simple(optuna.pruners.MedianPruner, "median"))
PRUNERS.add("halving", _simple(optuna.pruners.SuccessiveHalvingPruner, "halving"))


@PRUNERS.register("hyperband")
def _hyperband(options: Mapping[str, Any], max_epochs: int, where: str):
    defaults = {**_DEFAULTS["hyperband"], "max_resource": max(max_epochs, 1)}
    return build(optuna.pruners.HyperbandPruner, {**defaults, **options}, where)


@PRUNERS.register("patient")
def _patient(options: Mapping[str, Any], max_epochs: int, where: str):
    options = dict(options)
    wrapped = options.pop("wrapped", "median")
    if wrapped == "patient":
        raise ConfigError(f"{where}: 'wrapped' cannot be 'patient' itself")
    own = set(accepted_options(optuna.pruners.PatientPruner))
    inner_options = {k: v for k, v in options.items() if k not in own}
    inner = None if wrapped == "none" else PRUNERS.get(wrapped)(inner_options, max_epochs, where)
    outer_options = {k: v for k, v in options.items() if k in own}
    outer_options.setdefault("patience", 1)
    return build(
        optuna.pruners.PatientPruner, outer_options, where, fixed={"wrapped_pruner": inner}
    )


def build_pruner(
    name: str, options: Mapping[str, Any], max_epochs: int = 1, where: str = "[pruner]"
) -> optuna.pruners.BasePruner:
    """A pruner of the named kind; ``max_epochs`` bounds resource-based pruners."""
    return PRUNERS.get(name)(options, max_epochs, where)
