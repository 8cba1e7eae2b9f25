"""search.report_steps: the epochs at which each pruner can act, so that an objective reports
(and pays for a validation pass) only there; checked against Optuna's own pruning rule."""

from __future__ import annotations

import optuna
import pytest

from tuner.search.pruners import build_pruner
from tuner.search.report_steps import report_steps, trial_report_steps


@pytest.mark.parametrize(
    ("pruner", "options", "epochs", "steps"),
    [
        ("none", {}, 10, set()),
        ("median", {}, 5, {1, 2, 3, 4}),  # tuner's defaults: warm-up 1; never the last epoch
        ("median", {"n_warmup_steps": 3}, 10, {3, 4, 5, 6, 7, 8, 9}),
        ("median", {"n_warmup_steps": 2, "interval_steps": 3}, 10, {2, 5, 8}),
        ("median", {"n_warmup_steps": 0}, 3, {1, 2}),
        ("median", {"n_warmup_steps": 0, "interval_steps": 2}, 7, {1, 2, 4, 6}),
        ("median", {"n_warmup_steps": 0, "interval_steps": 3}, 7, {1, 3, 6}),
        ("halving", {}, 20, {1, 4, 16}),  # min_resource 1, reduction factor 4
        ("halving", {"min_resource": 2, "reduction_factor": 3}, 20, {2, 6, 18}),
        ("halving", {"min_resource": "auto"}, 4, {1, 2, 3, 4}),  # reads others' last step
        ("hyperband", {}, 10, {1, 3, 9}),
        ("hyperband", {"max_resource": "auto"}, 3, {1, 2, 3}),
        ("patient", {}, 4, {1, 2, 3, 4}),  # counts steps: every epoch
    ],
)
def test_report_steps_follow_the_pruner(pruner, options, epochs, steps):
    assert report_steps(build_pruner(pruner, options, epochs), epochs) == steps


@pytest.mark.parametrize("warmup", [0, 1, 2, 3])
@pytest.mark.parametrize("interval", [1, 2, 3])
def test_median_steps_are_where_optuna_itself_would_prune(warmup, interval):
    """Reported every epoch, Optuna's percentile pruner acts at these steps; the cadence must
    report exactly there (never the last epoch)."""
    from optuna.pruners._percentile import _is_first_in_interval_step

    epochs = 10
    acts = {s for s in range(1, epochs) if s >= warmup and _is_first_in_interval_step(
        s, dict.fromkeys(range(1, s + 1)).keys(), warmup, interval)}
    pruner = build_pruner("median", {"n_warmup_steps": warmup, "interval_steps": interval}, 10)
    assert report_steps(pruner, epochs) == acts


def test_a_trial_reads_its_own_studys_pruner() -> None:
    pruner = build_pruner("median", {"n_warmup_steps": 2, "interval_steps": 3}, 10)
    study = optuna.create_study(pruner=pruner)
    trial = study.ask()
    assert trial_report_steps(trial, 10) == {2, 5, 8}
    assert trial_report_steps(optuna.create_study(pruner=optuna.pruners.NopPruner()).ask(),
                              10) == set()
