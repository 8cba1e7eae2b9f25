"""Pruner settings as tables: what reaches the Optuna pruner, what is refused at load time, and
``patient`` wrapping each other pruner — checked on real studies."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pytest
from optuna.pruners import MedianPruner
from optuna.trial import TrialState

from tuner.core.errors import ConfigError
from tuner.run.config import load_config
from tuner.search.pruners import OPTION_RULES, PRUNERS, SnapshotMedianPruner, build_pruner

P = optuna.pruners

GOOD = [  # (name, options, epochs, class, {attribute: value})
    ("none", {}, 5, P.NopPruner, {}),
    ("median", {}, 5, P.MedianPruner, {"_n_startup_trials": 5, "_n_warmup_steps": 1}),
    ("median", {"n_startup_trials": 0, "n_warmup_steps": 3, "interval_steps": 2,
                "n_min_trials": 4}, 5, P.MedianPruner,
     {"_n_startup_trials": 0, "_n_warmup_steps": 3, "_interval_steps": 2, "_n_min_trials": 4}),
    ("halving", {}, 5, P.SuccessiveHalvingPruner, {"_min_resource": 1, "_reduction_factor": 4}),
    ("halving", {"min_resource": "auto", "reduction_factor": 2, "min_early_stopping_rate": 1},
     5, P.SuccessiveHalvingPruner,
     {"_min_resource": None, "_reduction_factor": 2, "_min_early_stopping_rate": 1}),
    ("hyperband", {}, 9, P.HyperbandPruner,
     {"_min_resource": 1, "_max_resource": 9, "_reduction_factor": 3}),
    ("hyperband", {"min_resource": 2, "max_resource": "auto", "reduction_factor": 2}, 9,
     P.HyperbandPruner, {"_min_resource": 2, "_max_resource": "auto", "_reduction_factor": 2}),
    ("patient", {}, 5, P.PatientPruner, {"_patience": 1, "_min_delta": 0.0}),
    ("patient", {"patience": 3, "min_delta": 0.01}, 5, P.PatientPruner,
     {"_patience": 3, "_min_delta": 0.01}),
]


@pytest.mark.parametrize(("name", "options", "epochs", "cls", "attrs"), GOOD)
def test_settings_reach_the_optuna_pruner(name, options, epochs, cls, attrs):
    pruner = build_pruner(name, options, epochs)
    assert isinstance(pruner, cls)
    assert {k: getattr(pruner, k) for k in attrs} == attrs


@pytest.mark.parametrize(("options", "inner", "inner_attrs"), [
    ({}, P.MedianPruner, {"_n_startup_trials": 5, "_n_warmup_steps": 1}),
    ({"wrapped": "median", "n_warmup_steps": 4, "patience": 2}, P.MedianPruner,
     {"_n_warmup_steps": 4}),
    ({"wrapped": "halving", "reduction_factor": 3}, P.SuccessiveHalvingPruner,
     {"_reduction_factor": 3}),
    ({"wrapped": "hyperband", "min_resource": 2}, P.HyperbandPruner,
     {"_min_resource": 2, "_max_resource": 8}),
    ({"wrapped": "none"}, type(None), {}),
])
def test_patient_wraps_another_pruner_and_passes_it_its_options(options, inner, inner_attrs):
    pruner = build_pruner("patient", options, 8)
    wrapped = pruner._wrapped_pruner
    assert isinstance(wrapped, inner)
    assert {k: getattr(wrapped, k) for k in inner_attrs} == inner_attrs
    assert pruner._patience == options.get("patience", 1)


BAD = [  # (name, options, match)
    ("median", {"n_warmup_steps": "2"}, r"n_warmup_steps must be a whole number >= 0, got '2'"),
    ("median", {"n_warmup_steps": -1}, r"n_warmup_steps must be a whole number >= 0, got -1"),
    ("median", {"n_startup_trials": 2.5}, r"n_startup_trials must be a whole number >= 0"),
    ("median", {"n_startup_trials": True}, r"n_startup_trials must be .*, got True"),
    ("median", {"interval_steps": 0}, r"interval_steps must be a whole number >= 1"),
    ("median", {"n_min_trials": 0}, r"n_min_trials must be a whole number >= 1"),
    ("median", {"reduction_factor": 3}, r"unknown option\(s\) reduction_factor; valid: "
                                        r"interval_steps, n_min_trials, n_startup_trials"),
    ("halving", {"reduction_factor": 1}, r"reduction_factor must be a whole number >= 2"),
    ("halving", {"min_resource": "soon"}, r"min_resource must be .* or \"auto\", got 'soon'"),
    ("halving", {"min_resource": 0}, r"min_resource must be a whole number >= 1"),
    ("halving", {"min_early_stopping_rate": -1}, r"min_early_stopping_rate must be"),
    ("halving", {"bootstrap_count": 2, "min_resource": "auto"}, r"mutually incompatible"),
    ("hyperband", {"reduction_factor": 1.5}, r"reduction_factor must be a whole number >= 2"),
    ("hyperband", {"min_resource": 20}, r"min_resource \(20\) must not exceed max_resource \(5"),
    ("hyperband", {"min_resource": "auto"}, r"min_resource must be a whole number >= 1 for "
                                            "hyperband"),
    ("hyperband", {"max_resource": 0}, r"max_resource must be a whole number >= 1"),
    ("patient", {"patience": -1}, r"patience must be a whole number >= 0, got -1"),
    ("patient", {"min_delta": "0.1"}, r"min_delta must be a number >= 0"),
    ("patient", {"wrapped": "patient"}, r"wrapped must name the pruner patient wraps "
                                        r"\(halving, hyperband, median, none\), got 'patient'"),
    ("patient", {"wrapped": 3}, r"wrapped must name .* got 3"),
    ("patient", {"reduction_factor": 2}, r"unknown option\(s\) reduction_factor for patient "
                                         r"wrapping median; valid: wrapped, min_delta, patience"),
    ("patient", {"wrapped": "halving", "reduction_factor": 1}, r"reduction_factor must be"),
    ("none", {"n_warmup_steps": 1}, r"unknown option\(s\) n_warmup_steps; valid: none"),
]


@pytest.mark.parametrize(("name", "options", "match"), BAD)
def test_bad_settings_are_refused(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_pruner(name, options, 5)


@pytest.mark.parametrize(("name", "options", "match"), BAD[:3] + BAD[13:15] + BAD[-3:-1])
def test_bad_settings_in_a_study_file_name_the_file(name, options, match, study_file):
    path = study_file(study={"pruner": name}, pruner=options, objective={"epochs": 5})
    with pytest.raises(ConfigError, match=rf"{path}: \[pruner\]: .*{match}"):
        load_config(path)


def test_every_rule_names_an_option_of_some_pruner():
    from tuner.core.option_rules import accepted_options
    from tuner.search.pruners import CLASSES

    options = {o for cls in CLASSES.values() for o in accepted_options(cls)}
    assert set(OPTION_RULES) == options
    assert set(CLASSES) == set(PRUNERS)


def _curve_study(pruner: optuna.pruners.BasePruner, curves: list[list[float]]) -> list[bool]:
    """Report each curve as a trial (one value per step); whether each trial was pruned."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    pruned = []
    for curve in curves:
        trial = study.ask()
        stopped = False
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
            if trial.should_prune():
                stopped = True
                break
        study.tell(trial, state=optuna.trial.TrialState.PRUNED if stopped else None,
                   values=None if stopped else [curve[-1]])
        pruned.append(stopped)
    return pruned


def test_patient_without_a_wrapped_pruner_is_early_stopping():
    # Optuna's rule: prune once the best of the last patience+1 steps is below the best before
    # them (by more than min_delta). A flat curve is not pruned; a falling one is.
    pruner = build_pruner("patient", {"wrapped": "none", "patience": 2}, 10)
    rising = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    flat = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    falling = [0.5, 0.6, 0.55, 0.5, 0.45, 0.4]
    assert _curve_study(pruner, [rising, flat, falling]) == [False, False, True]
    strict = build_pruner("patient", {"wrapped": "none", "patience": 2, "min_delta": 0.2}, 10)
    assert _curve_study(strict, [falling]) == [False], "a drop within min_delta is tolerated"


def test_patient_holds_back_the_median_pruner_while_a_trial_improves():
    good = [0.8, 0.85, 0.9, 0.92, 0.93]
    slow = [0.1, 0.2, 0.3, 0.4, 0.5]  # far below the median but still climbing
    falling = [0.3, 0.2, 0.1, 0.1, 0.1]
    median = {"n_startup_trials": 1, "n_warmup_steps": 0}
    assert _curve_study(build_pruner("median", median, 5), [good, slow]) == [False, True]
    patient = build_pruner("patient", {**median, "patience": 1}, 5)
    assert _curve_study(patient, [good, slow, falling]) == [False, False, True]


def test_median_reads_the_completed_trials_once_per_trial_and_decides_as_optuna():
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, 9):
            trial.report(x * step, step)
            if trial.should_prune():
                raise optuna.TrialPruned
        return x * 8

    outcomes, reads = {}, {}
    for cls in (MedianPruner, SnapshotMedianPruner):
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=1),
                                    pruner=cls(n_startup_trials=3, n_warmup_steps=1))
        calls = []
        real = study.get_trials

        def spy(deepcopy=True, states=None, _real=real, _calls=calls):
            _calls.append(states)
            return _real(deepcopy=deepcopy, states=states)

        study.get_trials = spy  # type: ignore[method-assign]
        study.optimize(objective, n_trials=25)
        outcomes[cls] = [(t.state, t.last_step, t.value) for t in study.trials]
        reads[cls] = sum(s == (TrialState.COMPLETE,) for s in calls)
    assert outcomes[SnapshotMedianPruner] == outcomes[MedianPruner]
    assert any(state == TrialState.PRUNED for state, _, _ in outcomes[MedianPruner])
    assert reads[SnapshotMedianPruner] == 25  # one per trial (every trial reaches a check)
    assert reads[MedianPruner] > 3 * reads[SnapshotMedianPruner]  # one per check


@pytest.mark.parametrize(("name", "options"), [("patient", {"min_delta": float("nan")}),
                                               ("median", {"n_warmup_steps": float("inf")})])
def test_non_finite_settings_are_refused(name, options):
    key = next(iter(options))
    with pytest.raises(ConfigError, match=rf"{key} must be a (whole )?number >= 0, got (nan|inf)"):
        build_pruner(name, options, 5)


SHIPPED = Path(__file__).parents[3] / "studies"
# Curves (val_accuracy per epoch) from the quickstart: the completed trials of a 40-trial run,
# a slow starter still learning (the old setting cut it at epoch 1, next to the best trial's
# values) and a trial at chance.
BEST_CURVE = [0.93, 0.95, 0.96, 0.965, 0.97, 0.972, 0.974, 0.975, 0.977, 0.978]
SLOW_STARTER = [0.896, 0.93, 0.945, 0.951, 0.957, 0.96, 0.963, 0.965, 0.966, 0.967]
AT_CHANCE = [0.1, 0.102, 0.1, 0.1, 0.1, 0.102, 0.1, 0.1, 0.1, 0.1]


def _first_pruned_step(name: str, options: dict, epochs: int, curve: list[float]) -> int | None:
    """The epoch at which the pruner built from these settings cuts ``curve``, in a study
    whose 12 completed trials followed :data:`BEST_CURVE` (``None``: never)."""
    study = optuna.create_study(direction="maximize",
                                pruner=build_pruner(name, options, epochs))
    for i in range(12):
        jitter = (i % 5) * 0.002
        study.add_trial(optuna.trial.create_trial(
            value=BEST_CURVE[epochs - 1] + jitter,
            intermediate_values={s + 1: v + jitter for s, v in enumerate(BEST_CURVE[:epochs])}))
    trial = study.ask()
    for step, value in enumerate(curve[:epochs], start=1):
        trial.report(value, step)
        if trial.should_prune():
            return step
    return None


@pytest.mark.parametrize("file", ["quickstart.toml", "init-schemes.toml", "finetune.toml"])
def test_shipped_studies_never_cut_a_trial_that_is_still_learning(file: str) -> None:
    """Seen: `tuner resume quickstart --n-trials 10` pruned all 10, one of them 0.896 after
    epoch 1 with nearly the best trial's values (median pruner, no warm-up)."""
    raw = tomllib.loads((SHIPPED / file).read_text())
    name, options = raw["study"]["pruner"], raw.get("pruner", {})
    epochs = raw["objective"]["epochs"]
    assert _first_pruned_step(name, options, epochs, SLOW_STARTER) is None
    if epochs >= 8:  # finetune's 3 epochs leave a pruner nothing to save
        stuck = _first_pruned_step(name, options, epochs, AT_CHANCE)
        assert stuck is not None and stuck <= epochs // 2 + 1, "a trial at chance is still cut"


def test_the_old_quickstart_pruner_cut_the_slow_starter_at_epoch_one() -> None:
    assert _first_pruned_step("median", {}, 10, SLOW_STARTER) == 1
