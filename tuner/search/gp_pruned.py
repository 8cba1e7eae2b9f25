"""The ``gp`` sampler: Optuna's GPSampler, taught by pruned trials too.

Optuna's GPSampler fits its Gaussian process to COMPLETE trials only and samples at random until
``n_startup_trials`` of them exist. Under a pruner most trials of a study end PRUNED, so it
stayed random search for most of the study (tuner compare, quickstart: gp needed as many trials
as random to reach the target, BENCHMARKS.md). Here a pruned trial counts as an observation at
the last value it reported, the value its pruner judged too poor to go on with: a pessimistic
estimate of where it would have ended, and exactly the information that its region is worse
than the others'. A pruned trial that reported nothing stays unseen, as do failed ones.

Only what the sampler reads changes (the study it is handed in ``infer_relative_search_space``
and ``sample_relative``): stored trials keep their state, and the report, ``show`` and the
study's best trial see them as they are.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Container
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState


def as_observed(trial: FrozenTrial) -> FrozenTrial | None:
    """A pruned trial as a complete one valued at its last reported (finite) value; ``None``
    when it reported none."""
    if not trial.intermediate_values:
        return None
    value = trial.intermediate_values[max(trial.intermediate_values)]
    if not math.isfinite(value):
        return None
    seen = copy.copy(trial)
    seen.state = TrialState.COMPLETE
    seen._values = [value]
    return seen


class _PrunedAsComplete:
    """``study`` whose trial lists show each pruned trial as :func:`as_observed` sees it."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        wanted = None if states is None else (*states, TrialState.PRUNED)
        out = []
        for t in self._study._get_trials(deepcopy=deepcopy, states=wanted, use_cache=use_cache):
            if t.state != TrialState.PRUNED:
                out.append(t)
            elif states is None or TrialState.COMPLETE in states:
                seen = as_observed(t)
                if seen is not None:
                    out.append(seen)
        return out

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)


class PrunedAwareGPSampler(optuna.samplers.GPSampler):
    """:class:`optuna.samplers.GPSampler` that learns from pruned trials (see the module doc);
    the same options."""

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return super().infer_relative_search_space(_PrunedAsComplete(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return super().sample_relative(_PrunedAsComplete(study), trial, search_space)
