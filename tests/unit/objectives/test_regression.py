"""Regression as a first-class task: the data's task, metric directions, the loop's statistics,
divergence as a prune, the built-in regressor and a user's own regression objective."""

from __future__ import annotations

import math
import shutil
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from tests.conftest import run_tuner, to_toml, unique
from tuner.core.errors import ConfigError, Diverged
from tuner.core.keys import TASK_ATTR, UNTRAINED_VALUE
from tuner.core.metrics import natural_direction
from tuner.nn.data import Dataset, load_dataset
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.population import train_population
from tuner.nn.training import TrainConfig, evaluate_metrics, train
from tuner.run.config import config_from_dict, load_config
from tuner.run.study import run
from tuner.store.artifacts import INIT_ACTIVATIONS, LEARNING_CURVE, trial_artifacts

ROOT = Path(__file__).resolve().parents[3]


def _csv(path: Path, y, n_features: int = 3, seed: int = 0) -> Path:
    x = np.random.default_rng(seed).normal(size=(len(y), n_features))
    lines = [",".join([*(f"f{i}" for i in range(n_features)), "target"])]
    lines += [",".join([*(f"{v:.5f}" for v in row), str(t)]) for row, t in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- metric directions
@pytest.mark.parametrize(("metric", "direction"), [
    ("val_accuracy", "maximize"), ("val_r2", "maximize"), ("test_auc", "maximize"),
    ("val_loss", "minimize"), ("val_mse", "minimize"), ("train_rmse", "minimize"),
    ("val_mae", "minimize"), ("mse", "minimize"), ("score", None), ("value", None),
])
def test_known_metric_names_carry_their_direction(metric, direction):
    assert natural_direction(metric) == direction


def _own(metric=None, direction=None, **objective):
    study = {"name": "own", "sampler": "random", "pruner": "none", "n_trials": 2}
    study.update({k: v for k, v in (("metric", metric), ("direction", direction)) if v})
    return {"study": study, "objective": {"name": "operator:add", **objective},
            "space": {"x": {"low": 0.0, "high": 1.0}}}


def test_a_users_val_mse_is_minimised_without_a_direction():
    assert config_from_dict(_own("val_mse")).direction == "minimize"
    assert config_from_dict(_own("val_r2")).direction == "maximize"


@pytest.mark.parametrize(("raw", "match"), [
    (_own("score"), r"metric 'score' is not a name tuner knows the direction of; set \[study\] "
                    r"direction"),
    (_own(), r"metric 'value' is not a name tuner knows the direction of"),
    (_own("val_mse", "maximize"), r"direction 'maximize' contradicts metric 'val_mse', which is "
                                  r"to minimize"),
    (_own("val_mse", task="regresion"), r"\[objective\] task must be 'classification' or "
                                        r"'regression', got 'regresion'"),
])
def test_a_metric_without_a_direction_is_one_error(raw, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw, "s.toml")


def test_builtins_default_to_their_tasks_metric():
    base = {"study": {"name": "r"}, "space": {"lr": {"low": 1e-3, "high": 0.1}}}
    reg = config_from_dict({**base, "objective": {"name": "regressor"}})
    assert (reg.metric, reg.direction, reg.task()) == ("val_mse", "minimize", "regression")
    cls = config_from_dict({**base, "objective": {"name": "classifier", "dataset": "diabetes"}})
    assert (cls.metric, cls.direction) == ("val_mse", "minimize")  # the dataset knows its task
    digits = config_from_dict({**base, "objective": {"name": "classifier"}})
    assert (digits.metric, digits.direction) == ("val_accuracy", "maximize")
    with pytest.raises(ConfigError, match=r"metric 'val_accuracy' is not one objective "
                                          r"'regressor' returns for a regression task"):
        config_from_dict({**base, "study": {"name": "r", "metric": "val_accuracy"},
                          "objective": {"name": "regressor"}})


# --------------------------------------------------------------------------- the data's task
def test_a_float_csv_target_is_a_regression_split_unstratified(tmp_path):
    y = np.random.default_rng(1).normal(100, 30, size=200).round(3)
    data = load_dataset("csv", seed=3, path=str(_csv(tmp_path / "f.csv", y)))
    assert (data.task, data.n_outputs, data.n_classes) == ("regression", 1, 0)
    assert data.y_train.dtype == torch.float32 and data.y_val.shape == (50,)
    # the target is left as it is: every value of the file, none re-coded
    got = sorted(torch.cat([data.y_train, data.y_val]).tolist())
    assert got == pytest.approx(sorted(y), abs=1e-3)
    again = load_dataset("csv", seed=3, path=str(tmp_path / "f.csv"))
    assert torch.equal(again.y_val, data.y_val)  # seeded


def test_an_integer_target_with_many_values_asks_for_the_task(tmp_path):
    y = (np.arange(240) % 24) * 10 - 20  # -20 ... 210 in steps of 10: 24 distinct
    path = str(_csv(tmp_path / "i.csv", y))
    with pytest.raises(ConfigError, match=r'24 distinct whole-number values \(-20 … 210\): '
                                          r'classes or a quantity\? set \[objective\] task'):
        load_dataset("csv", path=path)
    as_values = load_dataset("csv", path=path, task="regression")
    assert as_values.task == "regression" and set(as_values.y_train.tolist()) <= set(y.tolist())
    as_classes = load_dataset("csv", path=path, task="classification")
    assert as_classes.n_classes == 24
    few = load_dataset("csv", path=str(_csv(tmp_path / "c.csv", np.arange(90) % 3)))
    assert (few.task, few.n_classes) == ("classification", 3)


def test_text_in_a_regression_target_is_one_error_at_bind(tmp_path):
    _csv(tmp_path / "t.csv", ["1.5", "2.5", "oops", *["3.25"] * 20])
    path = tmp_path / "t.toml"
    path.write_text(to_toml({"study": {"name": "t", "metric": "val_mse"},
                             "objective": {"name": "regressor", "dataset": "csv",
                                           "path": "t.csv", "task": "regression"},
                             "space": {"lr": {"low": 1e-3, "high": 0.1}}}))
    with pytest.raises(ConfigError, match=r"a regression target must be numbers; row 3 .* is "
                                          r"'oops'"):
        load_config(path).bind()


def test_dataset_from_arrays_is_the_documented_constructor():
    x = np.random.default_rng(0).normal(size=(40, 3))
    reg = Dataset.from_arrays(x[:30], x[:30, 0] * 2.0, x[30:], x[30:, 0] * 2.0)
    assert (reg.task, reg.n_outputs) == ("regression", 1)
    two = Dataset.from_arrays(x[:30], x[:30, :2], x[30:], x[30:, :2])
    assert two.n_outputs == 2
    cls = Dataset.from_arrays(x[:30], np.arange(30) % 3, x[30:], np.arange(10) % 3)
    assert (cls.task, cls.n_classes, cls.y_train.dtype) == ("classification", 3, torch.int64)
    with pytest.raises(ValueError, match="one target per row"):
        Dataset.from_arrays(x[:30], x[:20, 0], x[30:], x[30:, 0])


# --------------------------------------------------------------------------- the loop
def _mlp(data: Dataset, width: int = 16, depth: int = 1) -> torch.nn.Module:
    return MODELS.get("mlp")(ModelSpec(data.n_features, data.n_outputs, None, depth, width,
                                       "relu"))


def test_train_reports_regression_metrics_that_agree_with_their_definitions():
    data = load_dataset("diabetes")
    torch.manual_seed(0)
    model = _mlp(data)
    history = train(model, data, TrainConfig(lr=0.05, batch_size=32, epochs=3))
    last = history[-1]
    assert last.val_accuracy is None and last.val_loss == pytest.approx(last.val_mse, rel=1e-5)
    with torch.no_grad():
        pred = model(data.x_val).squeeze(-1).double()
    y = data.y_val.double()
    mse = float(((pred - y) ** 2).mean())
    assert last.val_mse == pytest.approx(mse, rel=1e-4)
    assert last.val_rmse == pytest.approx(math.sqrt(mse), rel=1e-4)
    assert last.val_mae == pytest.approx(float((pred - y).abs().mean()), rel=1e-4)
    assert last.val_r2 == pytest.approx(1 - mse / float(y.var(unbiased=False)), rel=1e-4)
    assert history[0].val_mse > last.val_mse  # it learns
    assert evaluate_metrics(model, data)["val_mse"] == pytest.approx(last.val_mse, rel=1e-5)


def test_a_validation_loss_that_overflows_is_a_divergence():
    x = torch.randn(64, 2)
    data = Dataset.from_arrays(x[:48], x[:48, 0], x[48:] * 1e30, x[48:, 0])
    model = torch.nn.Linear(2, 1)
    with pytest.raises(Diverged, match=r"training diverged in epoch 1 \(validation loss=inf\)"):
        train(model, data, TrainConfig(lr=1e-3, batch_size=16, epochs=2))


def test_a_packed_regression_matches_each_member_alone():
    data = load_dataset("regression")
    cfgs = [TrainConfig(lr=lr, batch_size=32, epochs=2, optimizer="adam") for lr in (1e-3, 3e-2)]

    def models():
        out = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            out.append(_mlp(data))
        return out

    alone = [train(m, data, c, generator=torch.Generator().manual_seed(k))
             for k, (m, c) in enumerate(zip(models(), cfgs, strict=True))]
    runs = train_population(models(), data, cfgs,
                            [torch.Generator().manual_seed(k) for k in range(2)])
    for run_, solo in zip(runs, alone, strict=True):
        assert run_.diverged is None
        for a, b in zip(run_.history, solo, strict=True):
            assert a.val_mse == pytest.approx(b.val_mse, rel=1e-4)
            assert a.val_r2 == pytest.approx(b.val_r2, rel=1e-4, abs=1e-5)
            assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)


# --------------------------------------------------------------------------- whole studies
REGRESSION_STUDY = {
    "study": {"name": "reg", "metric": "val_mse", "sampler": "random", "pruner": "none",
              "n_trials": 8, "seed": 0},
    "objective": {"name": "regressor", "dataset": "regression", "epochs": 3, "device": "cpu"},
    "space": {"lr": {"low": 1e-3, "high": 0.3}, "batch_size": {"low": 16, "high": 64},
              "init": ["zeros", "kaiming_normal", "xavier_uniform"],
              "optimizer": ["adam", "sgd"], "width": 16},
}


@pytest.mark.parametrize("pack", [1, 4])
def test_the_builtin_regressor_runs_a_study(tmp_path, pack):
    raw = {**REGRESSION_STUDY, "study": {**REGRESSION_STUDY["study"], "pack": pack}}
    path = tmp_path / "reg.toml"
    path.write_text(to_toml(raw))
    study = run(load_config(path), f"sqlite:///{tmp_path / 'tuner.db'}").study
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.user_attrs[TASK_ATTR] == "regression"
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 8
    for t in finished:
        assert t.user_attrs["batch_size"] in (16, 32, 64)
        assert math.isfinite(t.user_attrs[UNTRAINED_VALUE])  # the untrained val_mse
        if t.params["init"] == "zeros":
            assert t.state == TrialState.PRUNED and t.user_attrs["init_verdict"] == "symmetric"
            # a dead init carries the untrained network's value: it shows in the per-init plot
            assert t.intermediate_values[0] == pytest.approx(t.user_attrs[UNTRAINED_VALUE])
        elif t.state == TrialState.COMPLETE:
            curve = t.user_attrs["curve"]
            assert {"val_mse", "val_rmse", "val_mae", "train_loss", "val_loss"} <= set(curve)
            assert curve["val_mse"][-1] == pytest.approx(t.value)
            assert set(trial_artifacts(study, t)) == {INIT_ACTIVATIONS, LEARNING_CURVE}
        else:
            assert "diverged" in t.user_attrs["prune_reason"]
    best = study.best_trial
    assert best.value < min(t.user_attrs[UNTRAINED_VALUE] for t in finished) / 2


OWN_REGRESSION = '''
import torch
from torch import nn
from tuner.nn.training import TrainConfig, train


class Net(nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 16), nn.Linear(16, k)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))  # functional activation


def objective(trial, ctx):
    hp = ctx.suggest(trial)
    data = ctx.load_data()
    torch.manual_seed(ctx.trial_seed(trial))
    model = Net(data.n_features, data.n_outputs)
    ctx.init(model, hp["init"], activation="relu")
    ctx.check_init(trial, model, data.x_val, y=data.y_val)
    cfg = TrainConfig(lr=hp["lr"], batch_size=32, epochs=ctx.settings["epochs"], optimizer="sgd")

    def on_epoch(stats):
        ctx.report(trial, stats.epoch, stats.val_mse, **stats.metrics())

    # Diverged is not caught: the trial is pruned with the reason, not failed
    return train(model, data, cfg, on_epoch=on_epoch)[-1].val_mse
'''


def test_a_users_regression_objective_gets_every_feature(tmp_path, monkeypatch):
    module = unique("ownreg").replace("-", "_")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(OWN_REGRESSION))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    y = np.random.default_rng(2).normal(50, 20, size=300).round(2)
    _csv(tmp_path / "own.csv", y, n_features=4)
    path = tmp_path / "own.toml"
    path.write_text(to_toml({
        "study": {"name": "own", "metric": "val_mse", "sampler": "random", "pruner": "none",
                  "n_trials": 6, "seed": 1},
        "objective": {"name": f"{module}:objective", "dataset": "csv", "path": "own.csv",
                      "epochs": 2},
        "space": {"lr": {"low": 1e-3, "high": 10.0}, "init": ["zeros", "kaiming_normal"]},
    }))
    study = run(load_config(path), f"sqlite:///{tmp_path / 'tuner.db'}").study
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 6 and not study.get_trials(states=(TrialState.FAIL,))
    for t in trials:
        assert math.isfinite(t.user_attrs[UNTRAINED_VALUE])
        if t.params["init"] == "zeros":  # seen through forward hooks, not activation modules
            assert t.user_attrs["init_verdict"] == "symmetric" and t.state == TrialState.PRUNED
    reasons = [t.user_attrs.get("prune_reason", "") for t in trials]
    assert any("diverged" in r for r in reasons), reasons  # lr up to 10 with plain SGD


def test_a_bad_csv_for_a_users_objective_is_found_before_anything_is_stored(tmp_path):
    _csv(tmp_path / "d.csv", [1.5, 2.5, 3.5, 4.5] * 5)
    path = tmp_path / "s.toml"
    path.write_text(to_toml({
        "study": {"name": "s", "metric": "val_mse"},
        "objective": {"name": "operator:add", "dataset": "csv", "path": "d.csv", "target": "price"},
        "space": {"x": {"low": 0.0, "high": 1.0}}}))
    got = run_tuner("run", "s.toml", cwd=tmp_path)
    assert got.returncode == 2, got.stderr
    assert got.stderr.count("error:") == 1 and "has no column 'price'" in got.stderr
    assert not (tmp_path / "tuner.db").exists()


@pytest.mark.slow
def test_the_shipped_regression_study_and_example_run(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "studies", tmp_path / "studies")
    for file, name in (("studies/regression.toml", "regression"),
                       ("examples/regression_mlp.toml", "regression-mlp")):
        proc = run_tuner("run", file, "--n-trials", "8", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        header = next(line for line in proc.stderr.splitlines()
                      if line.startswith("study "))
        assert "· regression · minimize val_mse ·" in header
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/tuner.db")
        finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
        assert len(finished) == 8
        assert all(t.user_attrs["batch_size"] & (t.user_attrs["batch_size"] - 1) == 0
                   for t in finished)
        assert all("init_verdict" in t.user_attrs for t in finished)
        shown = run_tuner("show", name, cwd=tmp_path)
        assert shown.returncode == 0 and "minimize val_mse" in shown.stdout


def test_a_regression_that_learns_nothing_says_so(tmp_path):
    from tuner.views.summaries import nothing_learned

    raw = {**REGRESSION_STUDY,
           "study": {**REGRESSION_STUDY["study"], "n_trials": 4},
           "space": {"lr": {"low": 1e-9, "high": 1e-8}, "init": "kaiming_normal",
                     "optimizer": "adam", "width": 16, "batch_size": 64}}
    path = tmp_path / "flat.toml"
    path.write_text(to_toml(raw))
    study = run(load_config(path), f"sqlite:///{tmp_path / 'tuner.db'}").study
    said = nothing_learned(study, study.get_trials())
    assert said is not None and "untrained network's val_mse" in said and "nothing was learned" in said
    assert nothing_learned(study, []) is None


def test_a_loss_that_blows_up_is_a_divergence_before_any_nan():
    """Seen: plain SGD on raw-scale targets ended 'complete' at val_mse 1.15e16 (untrained
    4.5e4): a value that flattened every plot and misled the samplers."""
    data = load_dataset("regression")
    cfg = TrainConfig(lr=3e-3, batch_size=128, epochs=6, optimizer="sgd")
    torch.manual_seed(0)
    model = _mlp(data, width=64, depth=2)
    untrained = evaluate_metrics(model, data)["val_loss"]
    with pytest.raises(Diverged, match=r"in epoch 1 \(validation loss=2\.\d+e\+09, 5\.5e\+04 "
                                       r"times the untrained network's\)") as e:
        train(model, data, cfg, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(e.value.loss) and e.value.loss > 1e4 * untrained
    torch.manual_seed(0)
    packed = train_population([_mlp(data, width=64, depth=2)], data, [cfg],
                              [torch.Generator().manual_seed(0)])
    assert packed[0].diverged is not None and "times the untrained" in str(packed[0].diverged)


def test_a_users_metric_must_fit_the_datas_task(tmp_path):
    """Seen: val_accuracy on a float target with one's own objective maximised the MSE."""
    y = np.random.default_rng(3).normal(100, 30, size=60).round(3)
    _csv(tmp_path / "f.csv", y)
    _csv(tmp_path / "c.csv", np.arange(60) % 3)
    for file, metric, match in (
            ("f.csv", "val_accuracy", r"metric 'val_accuracy' is a classification metric, but "
                                      r"dataset 'csv' is a regression task"),
            ("c.csv", "val_mse", r"metric 'val_mse' is a regression metric, but dataset 'csv' is "
                                 r"a classification task .* set \[objective\] task")):
        path = tmp_path / "s.toml"
        path.write_text(to_toml({"study": {"name": "s", "metric": metric},
                                 "objective": {"name": "operator:add", "dataset": "csv",
                                               "path": file},
                                 "space": {"x": {"low": 0.0, "high": 1.0}}}))
        with pytest.raises(ConfigError, match=match):
            load_config(path).bind()


@pytest.mark.parametrize(("key", "meant"), [("targt", "target"), ("epoch", "epochs"),
                                            ("tsak", "task"), ("datset", "dataset")])
def test_a_typo_of_a_toolkit_key_is_an_error_for_a_users_objective(key, meant):
    raw = {"study": {"name": "s", "metric": "val_mse"},
           "objective": {"name": "operator:add", "dataset": "csv", "path": __file__, key: 1},
           "space": {"x": {"low": 0.0, "high": 1.0}}}
    with pytest.raises(ConfigError, match=rf"\[objective\] {key} = 1: did you mean '{meant}'\?"):
        config_from_dict(raw, "s.toml")
    raw["objective"] = {"name": "operator:add", "hidden": 64, "my_epochs": 3}  # its own keys
    assert config_from_dict(raw, "s.toml").objective_settings == {"hidden": 64, "my_epochs": 3}


def test_a_stray_text_cell_in_a_numeric_target_names_its_row(tmp_path):
    y = [f"{v:.2f}" for v in np.random.default_rng(4).normal(100, 30, size=40)]
    y[12] = "n/a"
    with pytest.raises(ConfigError, match=r"the target is numbers but for 1 value\(s\), the first "
                                          r"'n/a' in data row 13"):
        load_dataset("csv", path=str(_csv(tmp_path / "n.csv", y)))


def test_nothing_learned_is_judged_against_each_trials_own_start():
    """Seen: val_loss 1.5-1.7 from untrained 2.4-4.0 was called 'nothing was learned'."""
    from tuner.views.summaries import nothing_learned

    study = optuna.create_study(direction="minimize")
    for value, untrained in ((1.68, 4.03), (1.62, 2.43), (1.54, 2.66)):
        study.add_trial(optuna.trial.create_trial(value=value,
                                                  user_attrs={UNTRAINED_VALUE: untrained}))
    assert nothing_learned(study, study.trials) is None
    flat = optuna.create_study(direction="maximize")
    for value, untrained in ((0.10, 0.14), (0.11, 0.08), (0.09, 0.10)):  # chance, all of them
        flat.add_trial(optuna.trial.create_trial(value=value,
                                                 user_attrs={UNTRAINED_VALUE: untrained}))
    assert "nothing was learned" in nothing_learned(flat, flat.trials)
