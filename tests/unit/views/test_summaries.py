"""views.summaries on real trials: the values a person reads."""

from __future__ import annotations

import optuna
from conftest import to_toml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tuner.views.summaries import nothing_learned, trial_record


def _trial() -> optuna.trial.FrozenTrial:
    return create_trial(
        state=TrialState.COMPLETE, value=0.9,
        params={"lr": 0.01, "batch_size_log2": 5, "init": "xavier_uniform"},
        distributions={"lr": FloatDistribution(1e-4, 0.1, log=True),
                       "batch_size_log2": IntDistribution(4, 8),
                       "init": CategoricalDistribution(["xavier_uniform", "zeros"])},
        user_attrs={"batch_size": 32})


def test_a_record_carries_the_same_params() -> None:
    record = trial_record(_trial())
    assert record["params"] == {"lr": 0.01, "batch_size": 32, "init": "xavier_uniform"}
    assert record["value"] == 0.9 and record["state"] == "COMPLETE"


def _ended(value: float, untrained: float | None, lr: float = 300.0) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=TrialState.COMPLETE, value=value, params={"lr": lr},
        distributions={"lr": FloatDistribution(1.0, 1e4, log=True)},
        user_attrs={} if untrained is None else {"untrained_value": untrained})


def test_nothing_learned_needs_every_complete_trial_at_its_untrained_value() -> None:
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("tuner:config", {"study": {"metric": "val_accuracy"}, "space": {}})
    chance = [_ended(0.102, 0.124), _ended(0.109, 0.08), _ended(0.104, 0.144, lr=5.0)]
    warning = nothing_learned(study, chance)
    assert warning is not None
    assert "all 3 complete trials of this run ended within noise of the untrained network's " \
           "val_accuracy (0.124): nothing was learned" in warning
    assert "these trials drew 5 to 300" in warning and "the chosen optimizer" in warning
    assert nothing_learned(study, [*chance, _ended(0.93, 0.11)]) is None  # one learned
    assert nothing_learned(study, chance[:2]) is None  # two trials say too little
    assert nothing_learned(study, [*chance, _ended(0.1, None)]) is None  # one is unknown


def test_a_chance_level_study_says_so_at_the_end_of_the_run(cli, tmp_path) -> None:
    """Seen: Adam with lr 1e4 to 1e8, every trial 'complete' at 0.10, exit 0, no word (that
    lr now blows the loss up, a divergence: the same silence comes from an lr far too low)."""
    (tmp_path / "chance.toml").write_text(to_toml({
        "study": {"name": "chance", "sampler": "random", "pruner": "none", "n_trials": 4},
        "objective": {"name": "classifier", "dataset": "digits", "epochs": 2},
        "space": {"lr": {"low": 1e-10, "high": 1e-9, "log": True}, "optimizer": "adam"}}))
    got = cli("run", "chance.toml")
    assert got.returncode == 0, got.stderr
    assert "warning: all 4 complete trials of this run ended within noise of the untrained " \
           "network's val_accuracy" in got.stderr
    assert "for the adam optimizer: change [space] lr" in got.stderr
    high = tmp_path / "high.toml"
    high.write_text((tmp_path / "chance.toml").read_text().replace("1e-10", "1e4")
                    .replace("1e-09", "1e8").replace('"chance"', '"high"'))
    got = cli("run", "high.toml")
    assert got.returncode == 2 and "all 4 trials of this run diverged" in got.stderr


def test_show_counts_why_trials_were_pruned() -> None:
    """Seen: tuner show listed why trials failed, never why 12 of 25 were pruned."""
    import optuna

    from tuner.store.studies import snapshot_of
    from tuner.views.summaries import prune_kind, study_summary

    study = optuna.create_study()
    reasons = ["training diverged in epoch 1 (training loss=nan)",
               "training diverged in epoch 3 (validation loss=2.5e+09, 5.5e+04 times the "
               "untrained network's)",
               "dead init (symmetric): all 64 units of hidden layer 1 output the same values",
               "pruned after epoch 3 by the median pruner", None]
    for reason in reasons:
        attrs = {} if reason is None else {"prune_reason": reason}
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED,
                                                  user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(value=1.0))
    assert study_summary(snapshot_of(study))["pruned"] == {
        "training diverged": 2, "dead init (symmetric)": 1, "by the median pruner": 1,
        "no reason stored": 1}
    assert prune_kind("pruned by the objective (it gave no reason)") == \
        "pruned by the objective (it gave no reason)"
