"""Several objectives: [study] metrics, constraints, the Pareto set."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import run_tuner, to_toml, unique
from tuner.core.errors import ConfigError
from tuner.core.keys import FEASIBLE
from tuner.run.config import config_from_dict, load_config
from tuner.run.outcome import ObjectiveFailed
from tuner.run.study import run
from tuner.store.studies import pareto_set

ROOT = Path(__file__).resolve().parents[3]

OWN = '''
def objective(trial, ctx):
    hp = ctx.suggest(trial)
    x, y = hp["x"], hp["y"]
    if {bad!r} == "tuple":
        return (x, y)
    if {bad!r} == "short":
        return (x,)
    if {bad!r} == "unknown":
        return {{"loss": x, "size": y, "speed": 1.0}}
    if {bad!r} == "nan":
        return {{"loss": float("nan"), "size": y}}
    return {{"loss": x * x + y, "size": (1 - x) ** 2 + y}}
'''


def _study(tmp_path, monkeypatch, bad="", **study):
    module = unique("moobj").replace("-", "_")
    (tmp_path / f"{module}.py").write_text(OWN.format(bad=bad))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mo.toml"
    path.write_text(to_toml({
        "study": {"name": "mo", "metrics": ["loss", "size"], "directions": ["minimize"] * 2,
                  "sampler": "nsga2",
                  "pruner": "none", "n_trials": 12, "seed": 0, **study},
        "objective": {"name": f"{module}:objective"},
        "space": {"x": {"low": 0.0, "high": 1.0}, "y": {"low": 0.0, "high": 0.5}}}))
    return path


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_a_users_two_objectives_give_a_pareto_set(tmp_path, monkeypatch, sampler):
    config = load_config(_study(tmp_path, monkeypatch, sampler=sampler,
                                constraints=["size <= 0.8"]))
    assert config.metrics == ("loss", "size") and config.directions == ("minimize",) * 2
    study = run(config, f"sqlite:///{tmp_path / 'tuner.db'}").study
    assert study.metric_names == ["loss", "size"] and len(study.directions) == 2
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 12
    for t in complete:
        assert t.user_attrs[FEASIBLE] == (t.values[1] <= 0.8)
    front = pareto_set(study)
    feasible = [t for t in complete if t.user_attrs[FEASIBLE]]
    for t in front:  # nothing feasible dominates a member of the front
        assert t.user_attrs[FEASIBLE]
        assert not any(o.values[0] <= t.values[0] and o.values[1] <= t.values[1]
                       and o.values != t.values for o in feasible)
    assert {t.number for t in front} <= {t.number for t in feasible} and front


@pytest.mark.parametrize(("bad", "match"), [
    ("short", r"the objective returned 1 values; the study has 2 metrics \['loss', 'size'\]"),
    ("unknown", r"the objective returned \['loss', 'size', 'speed'\]; .* \(not one of them: "
                r"\['speed'\]\)"),
    ("nan", r"the objective returned loss = nan, not a finite number"),
])
def test_a_wrong_return_fails_the_trial_with_the_reason(tmp_path, monkeypatch, bad, match):
    with pytest.raises(ObjectiveFailed, match=match):
        run(load_config(_study(tmp_path, monkeypatch, bad=bad)),
            f"sqlite:///{tmp_path / 'tuner.db'}")


def test_a_tuple_in_metric_order_is_accepted(tmp_path, monkeypatch):
    study = run(load_config(_study(tmp_path, monkeypatch, bad="tuple", n_trials=3)),
                f"sqlite:///{tmp_path / 'tuner.db'}").study
    assert all(t.values == [t.params["x"], t.params["y"]] for t in study.trials)


def _raw(**study):
    return {"study": {"name": "s", **study}, "objective": {"name": "operator:add"},
            "space": {"x": {"low": 0.0, "high": 1.0}}}


@pytest.mark.parametrize(("study", "match"), [
    ({"metrics": ["val_mse"]}, r"metrics must be a list of two or more different"),
    ({"metrics": ["val_mse", "n_params"], "metric": "val_mse"}, r"given instead of metric"),
    ({"metrics": ["val_mse", "n_params"], "pruner": "median"},
     r"pruner must be 'none' with several metrics: Optuna's pruners compare one value"),
    ({"metrics": ["val_mse", "score"], "pruner": "none"},
     r"metric 'score' is not a name tuner knows the direction of"),
    ({"metrics": ["val_mse", "n_params"], "pruner": "none", "directions": ["minimize"]},
     r"directions must be a list of 2 'maximize' or 'minimize'"),
    ({"metrics": ["val_mse", "n_params"], "pruner": "none", "constraints": ["size <= 3"]},
     r"constraints must be on the study's metrics \(val_mse, n_params\); 'size' is not one"),
    ({"metrics": ["val_mse", "n_params"], "pruner": "none", "constraints": ["n_params < 3"]},
     r'constraints must be a list of "METRIC <= NUMBER"'),
    ({"metrics": ["val_mse", "n_params"], "pruner": "none", "sampler": "cmaes"},
     r"the cmaes sampler optimises one metric; with several use tpe, nsga2"),
])
def test_bad_objectives_are_one_error_at_load(study, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(_raw(**study), "s.toml")


@pytest.mark.slow
def test_the_shipped_two_objective_example_runs(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    got = run_tuner("run", "examples/two_objectives.toml", "--n-trials", "10", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert "maximize val_accuracy and minimize n_params · subject to n_params <= 20000" in \
        got.stderr
    assert "Pareto set:" in got.stdout
    study = optuna.load_study(study_name="two-objectives", storage=f"sqlite:///{tmp_path}/tuner.db")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and all(t.values[1] == int(t.values[1]) for t in complete)  # n_params
    assert all(t.user_attrs[FEASIBLE] == (t.values[1] <= 20000) for t in complete)
    zeros = [t for t in study.trials if t.params.get("init") == "zeros"]
    assert all(t.state == TrialState.PRUNED for t in zeros)  # dead inits pruned still


def test_compare_measures_several_metrics_by_hypervolume(tmp_path, monkeypatch):
    from tuner.run.compare import check_samplers, compare

    config = load_config(_study(tmp_path, monkeypatch, n_trials=3))
    check_samplers(["random", "tpe", "nsga2"], config)  # no longer refused
    with pytest.raises(ConfigError, match=r"the cmaes sampler optimises one metric"):
        check_samplers(["random", "cmaes"], config)
    c = compare(config, ["random", "nsga2"], repeats=1, jobs=1)
    assert (c.metric, c.direction, c.metrics) == ("hypervolume", "maximize", ["loss", "size"])
    assert c.reference is not None and math.isfinite(c.target) and c.target > 0
    for r in c.runs:
        assert len(r.values) == len(r.best) == 3 and all(len(v) == 2 for v in r.values)
        assert r.best == sorted(r.best)  # no constraints: every complete trial counts


def test_a_two_objective_study_warm_starts_from_another(tmp_path, monkeypatch):
    from tuner.core.keys import WARM_START

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    run(load_config(_study(tmp_path, monkeypatch, n_trials=6)), url)
    new = run(load_config(_study(tmp_path, monkeypatch, n_trials=4, name="mo2",
                                 warm_start="mo", warm_start_top=1)), url).study
    warm = [t for t in new.trials if WARM_START in t.user_attrs]
    assert len(warm) == 6 and all(len(t.values) == 2 for t in warm)
    assert sum(WARM_START not in t.user_attrs for t in new.trials) == 4
