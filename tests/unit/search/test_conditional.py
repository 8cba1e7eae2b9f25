"""Conditional spaces: ``when = {optimizer = "sgd"}`` draws a parameter only where it applies."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import to_toml
from tuner.core.errors import ConfigError
from tuner.run.config import config_from_dict, load_config
from tuner.run.study import run
from tuner.search.samplers import BranchGridSampler, build_sampler
from tuner.search.space_table import parse_space

SGD_ONLY = {"optimizer": ["sgd", "adam"],
            "momentum": {"low": 0.5, "high": 0.99, "when": {"optimizer": "sgd"}},
            "lr": {"low": 1e-3, "high": 0.1, "log": True}}


def _draws(space, sampler, n=40):
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        hp = space.suggest(trial)
        out.append((hp, dict(trial.params)))
        study.tell(trial, hp["lr"] + hp.get("momentum", 0))
    return out


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_parameter_whose_condition_is_false_is_never_drawn(sampler):
    space = parse_space(SGD_ONLY, None, "s.toml")
    draws = _draws(space, build_sampler(sampler, {}, 0, space))
    assert {hp["optimizer"] for hp, _ in draws} == {"sgd", "adam"}
    for hp, params in draws:
        assert ("momentum" in hp) == ("momentum" in params) == (hp["optimizer"] == "sgd")


def test_conditions_come_first_and_nest():
    space = parse_space({
        "nesterov": {"choices": [True, False], "when": {"momentum_kind": "classic"}},
        "momentum_kind": {"choices": ["classic", "none"], "when": {"optimizer": ["sgd"]}},
        "optimizer": ["sgd", "adam"], "lr": 0.1}, None, "s.toml")
    assert space.names().index("optimizer") < space.names().index("momentum_kind") \
        < space.names().index("nesterov")
    draws = _draws(space, optuna.samplers.RandomSampler(seed=1), 60)
    for hp, _ in draws:
        assert ("nesterov" in hp) == (hp.get("momentum_kind") == "classic")
        assert ("momentum_kind" in hp) == (hp["optimizer"] == "sgd")


def test_tpe_models_the_branches():
    space = parse_space(SGD_ONLY, None, "s.toml")
    tpe = build_sampler("tpe", {}, 0, space)
    assert tpe._multivariate and tpe._group  # grouped multivariate TPE
    plain = build_sampler("tpe", {}, 0, parse_space({"lr": SGD_ONLY["lr"]}, None, "s.toml"))
    assert not plain._group


def test_the_grid_expands_the_branches_once_each():
    space = parse_space({"optimizer": ["sgd", "adam"],
                         "momentum": {"choices": [0.5, 0.9], "when": {"optimizer": "sgd"}},
                         "width": [8, 16]}, None, "s.toml")
    sampler = build_sampler("grid", {}, 0, space)
    assert isinstance(sampler, BranchGridSampler)
    study = optuna.create_study(sampler=sampler)
    seen = []

    def objective(trial):
        seen.append(tuple(sorted(space.suggest(trial).items())))
        return 0.0

    study.optimize(objective, n_trials=20)  # the grid stops the study once it is exhausted
    # sgd x 2 momenta x 2 widths + adam x 2 widths, each once (a plain grid: 8, adam twice)
    assert len(seen) == len(set(seen)) == 6 and sampler.is_exhausted(study)


@pytest.mark.parametrize(("space", "match"), [
    ({**SGD_ONLY, "momentum": {"low": 0.5, "high": 0.9, "when": {"optimiser": "sgd"}}},
     r"\[space\] momentum: when optimiser: unknown parameter 'optimiser'; did you mean "
     r"'optimizer'\?"),
    ({**SGD_ONLY, "momentum": {"low": 0.5, "high": 0.9, "when": {"optimizer": "sdg"}}},
     r"when optimizer: 'sdg' is not one of optimizer's values \['sgd', 'adam'\]"),
    ({**SGD_ONLY, "momentum": {"low": 0.5, "high": 0.9, "when": {"lr": 0.1}}},
     r"when lr: a condition reads a categorical \(a list\) or fixed parameter; lr is a float"),
    ({"a": {"choices": [1, 2], "when": {"b": 1}}, "b": {"choices": [1, 2], "when": {"a": 1}}},
     r"the conditions form a cycle: a -> b -> a"),
    ({"a": {"choices": [1, 2], "when": {"a": 1}}}, r"a parameter cannot depend on itself"),
    ({"a": {"low": 0, "high": 1, "when": "sgd"}}, r"'when' must be a table of conditions"),
])
def test_a_bad_condition_is_one_error_at_load(space, match):
    raw = {"study": {"name": "c", "direction": "maximize"},
           "objective": {"name": "operator:add"}, "space": space}
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw, "c.toml")


def test_the_classifier_runs_a_conditional_study_packed_and_alone(tmp_path):
    for pack in (1, 4):
        path = tmp_path / f"c{pack}.toml"
        path.write_text(to_toml({
            "study": {"name": f"c{pack}", "sampler": "tpe", "pruner": "none", "n_trials": 8,
                      "pack": pack},
            "sampler": {"n_startup_trials": 3},
            "objective": {"name": "classifier", "dataset": "iris", "epochs": 2,
                          "artifacts": False},
            "space": {**SGD_ONLY, "batch_size": 16, "width": 8}}))
        study = run(load_config(path), f"sqlite:///{tmp_path / 'tuner.db'}").study
        trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
        assert len(trials) == 8
        for t in trials:
            assert ("momentum" in t.params) == (t.params["optimizer"] == "sgd")


@pytest.mark.slow
def test_the_shipped_conditional_example_runs(tmp_path):
    import shutil
    from pathlib import Path

    from tests.conftest import run_tuner

    root = Path(__file__).resolve().parents[3]
    shutil.copytree(root / "examples", tmp_path / "examples")
    got = run_tuner("run", "examples/conditional.toml", "--n-trials", "10", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    study = optuna.load_study(study_name="conditional", storage=f"sqlite:///{tmp_path}/tuner.db")
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 10
    assert all(("momentum" in t.params) == (t.params["optimizer"] != "adam") for t in trials)
    shown = run_tuner("export", "conditional", "--format", "csv", cwd=tmp_path)
    assert shown.returncode == 0 and "param_momentum" in shown.stdout
