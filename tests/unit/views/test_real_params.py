"""views.real_params: what a person reads is the real batch size, while the study keeps the
exponent the samplers search."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.trial import FrozenTrial, TrialState, create_trial

from tuner.views.real_params import real_params
from tuner.views.real_storage import RealParamsStorage, real_trial, stored_trial

DISTS = {"lr": FloatDistribution(1e-4, 0.1, log=True), "batch_size_log2": IntDistribution(4, 8),
         "init": CategoricalDistribution(["xavier_uniform", "zeros"])}


def _trial(k: int = 5, **user_attrs: object) -> FrozenTrial:
    return create_trial(state=TrialState.COMPLETE, value=0.9, distributions=DISTS,
                        params={"lr": 0.01, "batch_size_log2": k, "init": "xavier_uniform"},
                        user_attrs={"batch_size": 2 ** k, **user_attrs})


def test_params_show_the_real_batch_size_in_order() -> None:
    assert list(real_params(_trial()).items()) == [
        ("lr", 0.01), ("batch_size", 32), ("init", "xavier_uniform")]


@pytest.mark.parametrize("user_attrs", [{}, {"batch_size": 33}, {"batch_size": "32"}])
def test_an_exponent_without_its_real_value_is_shown_as_searched(user_attrs) -> None:
    t = _trial()
    t.user_attrs = user_attrs
    assert real_params(t)["batch_size_log2"] == 5 and real_trial(t) is t


def test_a_shown_trial_has_a_log_int_distribution_and_goes_back_unchanged() -> None:
    t = _trial(6)
    shown = real_trial(t)
    assert shown.params["batch_size"] == 64
    assert shown.distributions["batch_size"] == IntDistribution(16, 256, log=True)
    assert shown.distributions["batch_size"]._contains(64)
    assert "batch_size" not in t.params and t.params["batch_size_log2"] == 6  # untouched
    back = stored_trial(shown)
    assert (back.params, back.distributions, back.system_attrs) == (
        t.params, t.distributions, t.system_attrs)


def _study(tmp_path, n: int = 12) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'real.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    for i in range(n):
        k = 4 + i % 5
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=k / 10 + i / 1000, distributions=DISTS,
            params={"lr": 10 ** (-1 - i % 3), "batch_size_log2": k, "init": "zeros"},
            user_attrs={"batch_size": 2 ** k}))
    return url, study


def test_a_study_read_through_the_storage_shows_batch_size_everywhere(tmp_path) -> None:
    url, _ = _study(tmp_path)
    shown = optuna.load_study(study_name="s", storage=RealParamsStorage(
        optuna.storages.RDBStorage(url)))
    assert {t.params["batch_size"] for t in shown.trials} == {16, 32, 64, 128, 256}
    assert shown.best_trial.params["batch_size"] == 256
    assert all("batch_size_log2" not in t.params for t in shown.trials)
    scores = get_param_importances(shown, evaluator=PedAnovaImportanceEvaluator())
    assert set(scores) == {"lr", "batch_size", "init"}
    assert max(scores, key=scores.get) == "batch_size"


def test_a_study_copied_through_it_keeps_its_exponents(tmp_path) -> None:
    """The dashboard renames a study by copying its trials: the copy must still be searchable
    as the samplers stored it."""
    url, study = _study(tmp_path, n=3)
    proxy = RealParamsStorage(optuna.storages.RDBStorage(url))
    src = optuna.load_study(study_name="s", storage=proxy)
    dst = optuna.create_study(study_name="renamed", storage=proxy, direction="maximize")
    dst.add_trials(src.get_trials(deepcopy=False))
    raw = optuna.load_study(study_name="renamed", storage=url).trials
    assert [t.params for t in raw] == [t.params for t in study.trials]
    assert [t.distributions for t in raw] == [t.distributions for t in study.trials]
    assert all(t.system_attrs == {} for t in raw)
