"""Samplers by name, each seeded from the study seed.

``build_sampler(name, options, seed, space)``; ``options`` is the study file's ``[sampler]``
table (keyword arguments of the Optuna class, e.g. ``n_startup_trials``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from tuner.core.errors import ConfigError, warn_once
from tuner.core.option_rules import OptionRule, accepted_options, build, check_rules
from tuner.core.registry import Registry
from tuner.search.gp_pruned import PrunedAwareGPSampler
from tuner.search.space import SearchSpace

SamplerFactory = Callable[[Mapping[str, Any], int, SearchSpace, str], optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")
# Options a sampler takes that are not its Optuna class's keyword arguments as a file holds them.
EXTRA: dict[str, set[str]] = {"tpe": {"gamma"}}


@SAMPLERS.register("random")
def _random(options, seed, space, where):
    return build(optuna.samplers.RandomSampler, options, where, fixed={"seed": seed})


class GoodShare:
    """TPE's ``gamma`` from a number: of ``n`` finished trials, the best ``ceil(share * n)``
    (at most 25) are modelled as good. Optuna's default is 0.1; Hyperopt's TPE uses 0.25, and on
    a short noisy study (the quickstart's 25 trials) 0.25 finds the good region sooner
    (BENCHMARKS.md, stop 24). A class, not a lambda, so a sampler can be pickled.

    Optuna 4.9 deprecated ``TPESampler(gamma=...)`` for removal in 6.0; tuner pins optuna < 6,
    and passes it as its own argument (no deprecation warning for it): before that pin moves,
    it needs its own way to set the split."""

    def __init__(self, share: float) -> None:
        self.share = share

    def __call__(self, n: int) -> int:
        return min(math.ceil(self.share * n), 25)


@SAMPLERS.register("tpe")
def _tpe(options, seed, space, where, constraints_func=None):
    fixed: dict[str, Any] = {"seed": seed, **_constrained(constraints_func)}
    if "gamma" in options:
        fixed["gamma"] = GoodShare(options["gamma"])
    if space is not None and space.conditional:  # grouped multivariate TPE: branch by branch
        options = {"multivariate": True, "group": True, **options}
    with warnings.catch_warnings():  # multivariate and group are "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return build(optuna.samplers.TPESampler, options, where, fixed=fixed,
                     extra=EXTRA["tpe"])


class BranchGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid over a conditional space, with each branch expanded: points that differ
    only in a parameter whose condition does not hold (momentum in an adam trial) are one
    point, not copies of one trial. Relies on GridSampler's ``_all_grids``/``_param_names``
    (tests/unit/search/test_conditional.py fails if they change)."""

    def __init__(self, search_space: Mapping[str, Any], seed: int | None = None, *,
                 space: SearchSpace) -> None:
        super().__init__(search_space, seed)
        self._all_grids = space.active_grid_points(self._param_names, self._all_grids)
        self._n_min_trials = len(self._all_grids)


@SAMPLERS.register("gp")
def _gp(options, seed, space, where, constraints_func=None):  # pruned trials teach it too
    return build(PrunedAwareGPSampler, options, where,
                 fixed={"seed": seed, **_constrained(constraints_func)})


def _constrained(constraints_func) -> dict[str, Any]:
    return {} if constraints_func is None else {"constraints_func": constraints_func}


@SAMPLERS.register("grid")
def _grid(options, seed, space, where):
    try:
        grid = space.grid()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if space.conditional:
        return build(BranchGridSampler, options, where,
                     fixed={"search_space": grid, "seed": seed, "space": space})
    return build(optuna.samplers.GridSampler, options, where,
                 fixed={"search_space": grid, "seed": seed})


@SAMPLERS.register("nsga2")
def _nsga2(options, seed, space, where, constraints_func=None):  # several objectives
    return build(optuna.samplers.NSGAIISampler, options, where,
                 fixed={"seed": seed, **_constrained(constraints_func)})


@SAMPLERS.register("qmc")
def _qmc(options, seed, space, where):
    # Scrambling makes the seed matter; the sequence stays consistent across workers.
    options = {"scramble": True, "warn_independent_sampling": False, **options}
    return build(optuna.samplers.QMCSampler, options, where, fixed={"seed": seed})


@SAMPLERS.register("cmaes")
def _cmaes(options, seed, space, where):
    categorical = [p.name for p in space.searched() if p.kind == "categorical"]
    if categorical:  # a config is validated (its sampler built) several times per command
        warn_once(f"{where}: the cmaes sampler cannot model categorical parameters; "
                  f"{', '.join(categorical)} will be sampled at random",
                  key=f"cmaes: {categorical}")
    options = {"warn_independent_sampling": False, **options}
    return build(optuna.samplers.CmaEsSampler, options, where, fixed={"seed": seed})


# Optuna checks few of its samplers' options when built; a bad one failed every trial instead.
OPTION_RULES: dict[str, OptionRule] = {
    "n_startup_trials": OptionRule(int, 0),
    "n_ei_candidates": OptionRule(int, 1),
    "prior_weight": OptionRule(float, 0, low_open=True),
    "sigma0": OptionRule(float, 0, low_open=True),
    "gamma": OptionRule(float, 0, low_open=True),
}
BOOLEAN_OPTIONS = {
    "consider_endpoints", "consider_magic_clip", "consider_prior", "constant_liar", "group",
    "multivariate", "warn_independent_sampling", "deterministic_objective", "scramble",
    "warn_asynchronous_seeding", "consider_pruned_trials", "lr_adapt", "use_separable_cma",
    "with_margin",
}
QMC_TYPES = ("sobol", "halton")


def check_options(options: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ConfigError` for the first ``[sampler]`` value of a wrong type or range."""
    check_rules(options, OPTION_RULES, where)
    for key, value in options.items():
        if key in BOOLEAN_OPTIONS and not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    if "gamma" in options and options["gamma"] > 1:
        raise ConfigError(f"{where}: gamma is the share of trials modelled as good, in (0, 1]; "
                          f"got {options['gamma']!r}")
    if "qmc_type" in options and options["qmc_type"] not in QMC_TYPES:
        raise ConfigError(f"{where}: qmc_type must be one of {', '.join(QMC_TYPES)}, "
                          f"got {options['qmc_type']!r}")


MULTI_OBJECTIVE = ("tpe", "nsga2", "random", "gp", "grid", "qmc")  # which take several metrics
CONSTRAINED = ("tpe", "nsga2", "gp")  # which take Optuna's constraints_func


def build_sampler(
    name: str, options: Mapping[str, Any], seed: int, space: SearchSpace,
    where: str = "[sampler]", *, n_objectives: int = 1,
    constraints_func: Callable[[Any], Any] | None = None,
) -> optuna.samplers.BaseSampler:
    """A fresh sampler of the named kind (raises ConfigError for bad names or options).
    ``n_objectives`` > 1: a sampler that takes several metrics (gp: Optuna's own GPSampler,
    its pruned-trials variant models one value); ``constraints_func``: Optuna's, for the
    samplers that take one (:data:`CONSTRAINED`; the others sample as if unconstrained)."""
    factory = SAMPLERS.get(name)
    check_options(options, where)
    if n_objectives > 1 and name not in MULTI_OBJECTIVE:
        raise ConfigError(f"{where}: the {name} sampler optimises one metric; with several use "
                          f"{', '.join(MULTI_OBJECTIVE)}")
    if n_objectives > 1 and name == "gp":
        return build(optuna.samplers.GPSampler, options, where,
                     fixed={"seed": seed, **_constrained(constraints_func)})
    if constraints_func is not None and name in CONSTRAINED:
        return factory(options, seed, space, where, constraints_func)
    return factory(options, seed, space, where)


def options_for(name: str, options: Mapping[str, Any], space: SearchSpace,
                where: str = "[sampler]") -> dict[str, Any]:
    """The ``[sampler]`` options that sampler ``name`` accepts: a study file written for one
    sampler (e.g. ``n_ei_candidates`` for tpe) also runs under another (``--sampler gp``,
    ``tuner compare``)."""
    accepted = {*accepted_options(type(build_sampler(name, {}, 0, space, where))),
                *EXTRA.get(name, ())}
    return {k: v for k, v in options.items() if k in accepted}
