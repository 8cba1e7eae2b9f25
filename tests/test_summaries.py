"""views.summaries on real trials: the values a person reads."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tuner.views.summaries import trial_params, trial_record


def _trial() -> optuna.trial.FrozenTrial:
    return create_trial(
        state=TrialState.COMPLETE, value=0.9,
        params={"lr": 0.01, "batch_size_log2": 5, "init": "xavier_uniform"},
        distributions={"lr": FloatDistribution(1e-4, 0.1, log=True),
                       "batch_size_log2": IntDistribution(4, 8),
                       "init": CategoricalDistribution(["xavier_uniform", "zeros"])},
        user_attrs={"batch_size": 32})


def test_trial_params_show_values_and_the_real_batch_size() -> None:
    assert trial_params(_trial()) == {"lr": 0.01, "batch_size": 32, "init": "xavier_uniform"}


def test_an_exponent_without_its_stored_value_is_shown_as_searched() -> None:
    t = _trial()
    t.user_attrs = {}
    assert trial_params(t)["batch_size_log2"] == 5


def test_a_record_carries_the_same_params() -> None:
    record = trial_record(_trial())
    assert record["params"] == {"lr": 0.01, "batch_size": 32, "init": "xavier_uniform"}
    assert record["value"] == 0.9 and record["state"] == "COMPLETE"
