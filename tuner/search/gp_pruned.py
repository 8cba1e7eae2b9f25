"""The ``gp`` sampler: Optuna's GPSampler, taught by pruned trials too.

Optuna's GPSampler fits its Gaussian process to COMPLETE trials only and samples at random until
``n_startup_trials`` of them exist. Under a pruner most trials of a study end PRUNED, so it
stayed random search for most of the study (tuner compare, quickstart: gp needed as many trials
as random to reach the target, BENCHMARKS.md). Here a pruned trial counts as an observation at
the last value it reported, the value its pruner judged too poor to go on with: a pessimistic
estimate of where it would have ended, and exactly the information that its region is worse
than the others'. A pruned trial that reported nothing stays unseen, as do failed ones.

The Gaussian process also sees the worse half of the observed values as their median: what it
models is where the good region is and its shape, not how bad the bad trials were. On the
quickstart most observations are chance-level (dead inits, diverged or pruned trials, 0.1)
against 0.95-0.98 in the good region; fitted to both, the process spent its trials learning
the step between them. Flattened, it needed 0.84x the trials to reach the target [0.75, 0.93]
(tuner compare, 200 seeds; 0.85x on init-schemes over 20 seeds; BENCHMARKS.md, stop 24). It
then explores more on a smooth objective, where the worse half's slope was informative.

Its expected improvement is counted from the best value the process predicts at a point it
has observed (the "plug-in" threshold of noisy Bayesian optimisation), not from the best
observation itself, and its search for the next point starts from that point: on 450
validation images the best observation is partly a lucky draw, and improvement over a lucky
draw favours places the process knows little about (stop 24: gp's late draws gathered in the
good region more slowly than TPE's). Quickstart, tuner compare over 400 seeds: 0.92x the trials
to reach the target [0.85, 0.99] of counting from 0.3 standard deviations below the best
observation (stop 25, two sets of 200 seeds), 0.58x random search's [0.53, 0.64]
(BENCHMARKS.md, stop 26). On a smooth, noiseless objective the two thresholds nearly agree.

Only what the sampler reads changes (the study it is handed in ``infer_relative_search_space``
and ``sample_relative``): stored trials keep their state, and the report, ``show`` and the
study's best trial see them as they are.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Container
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

FLATTEN_FROM = 4  # observations before the worse half is flattened


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
        return self._flattened(out)

    def _flattened(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """The worse half of the observed values set to their median (see the module doc)."""
        done = [t.value for t in trials if t.state == TrialState.COMPLETE]
        if len(done) < FLATTEN_FROM:
            return trials
        maximize = self._study.direction == StudyDirection.MAXIMIZE
        median = statistics.median_low(done) if maximize else statistics.median_high(done)
        sign = 1 if maximize else -1
        out = []
        for t in trials:
            if t.state == TrialState.COMPLETE and sign * (t.value - median) < 0:
                t = copy.copy(t)
                t._values = [median]
            out.append(t)
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

    def _get_acqf_and_best_params(self, completed_trials: list[FrozenTrial], gprs_list: list[Any],
                                  internal_search_space: Any, normalized_params: Any,
                                  normalized_params_of_running_trials: Any,
                                  standardized_score_vals: Any) -> tuple[Any, Any]:
        """Optuna's acquisition, its improvement counted from the best predicted value at an
        observed point, and that point as where the search starts (see the module doc)."""
        acqf, best = super()._get_acqf_and_best_params(
            completed_trials, gprs_list, internal_search_space, normalized_params,
            normalized_params_of_running_trials, standardized_score_vals)
        if hasattr(acqf, "_threshold") and len(normalized_params):  # LogEI, qLogEI
            gpr = gprs_list[0]  # fitted to normalized_params (its _X_train), in their order
            mean, _ = gpr.posterior(gpr._X_train)
            i = int(mean.argmax())
            acqf._threshold = float(mean[i])
            best = normalized_params[i, None]
        return acqf, best
