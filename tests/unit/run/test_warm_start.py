"""Warm starts: another study's complete trials become prior observations of a new one."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import run_tuner, to_toml, unique
from tuner.core.errors import ConfigError
from tuner.core.keys import WARM_START
from tuner.run.config import config_from_dict, load_config
from tuner.run.study import run
from tuner.run.warm_start import fit
from tuner.store.studies import best_trial, n_finished

OBJECTIVE = '''
def objective(trial, ctx):
    hp = ctx.suggest(trial)
    return -(hp["x"] - 0.3) ** 2 - (0.1 if hp["kind"] == "b" else 0.0)
'''


@pytest.fixture
def folder(tmp_path, monkeypatch):
    module = unique("warmobj").replace("-", "_")
    (tmp_path / f"{module}.py").write_text(OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path, module


def _file(folder, name, module, n_trials, space=None, **study):
    tmp, _ = folder
    path = tmp / f"{name}.toml"
    path.write_text(to_toml({
        "study": {"name": name, "metric": "score", "direction": "maximize", "sampler": "tpe",
                  "pruner": "none", "n_trials": n_trials, **study},
        "sampler": {"n_startup_trials": 3},
        "objective": {"name": f"{module}:objective"},
        "space": space or {"x": {"low": 0.0, "high": 1.0}, "kind": ["a", "b"]}}))
    return path


def test_a_warm_start_learns_from_the_other_study_outside_the_budget(folder):
    tmp, module = folder
    url = f"sqlite:///{tmp / 'tuner.db'}"
    old = run(load_config(_file(folder, "old", module, 8)), url).study
    narrow = {"x": {"low": 0.0, "high": 0.6}, "kind": ["a", "b"]}
    config = load_config(_file(folder, "new", module, 5, space=narrow, warm_start="old",
                               warm_start_top=2))
    new = run(config, url).study
    fits = [t for t in old.trials if t.params["x"] <= 0.6]
    warm = [t for t in new.trials if WARM_START in t.user_attrs]
    assert len(warm) == len(fits) > 0
    assert {t.user_attrs[WARM_START] for t in warm} == {f"old #{t.number}" for t in fits}
    assert {round(t.value, 12) for t in warm} == {round(t.value, 12) for t in fits}
    own = [t for t in new.trials if WARM_START not in t.user_attrs]
    assert len(own) == n_finished(new) == 5  # the budget is the study's own trials, exactly
    assert best_trial(new) in own  # never a prior observation
    best_two = sorted(fits, key=lambda t: t.value, reverse=True)[:2]
    assert [t.params for t in own[:2]] == [t.params for t in best_two]  # rerun first
    again = run(config, url).study  # a second run does not copy them again
    assert sum(WARM_START in t.user_attrs for t in again.trials) == len(warm)


@pytest.mark.parametrize(("study", "space", "match"), [
    ({"warm_start": "nope"}, None, r"\[study\] warm_start = 'nope': no study named 'nope'"),
    ({"warm_start": "old", "direction": "minimize", "metric": "loss"}, None,
     r"that study is to maximize score, this one to minimize loss"),
    ({"warm_start": "old"}, {"x": {"low": 2.0, "high": 3.0}, "kind": ["a", "b"]},
     r"none of its \d+ complete trials fits this \[space\]"),
    ({"warm_start": "new"}, None, r"a study cannot warm-start from itself"),
])
def test_a_warm_start_that_cannot_be_made_is_one_error_with_nothing_stored(
        folder, study, space, match):
    tmp, module = folder
    url = f"sqlite:///{tmp / 'tuner.db'}"
    run(load_config(_file(folder, "old", module, 4)), url)
    with pytest.raises(ConfigError, match=match):
        run(load_config(_file(folder, "new", module, 3, space=space, **study)), url)
    assert "new" not in optuna.get_all_study_names(url)


def test_the_cli_takes_the_flags_and_refuses_a_missing_study(folder):
    tmp, module = folder
    path = _file(folder, "new", module, 3)
    got = run_tuner("run", str(path), "--warm-start", "ghost", cwd=tmp)
    assert got.returncode == 2 and got.stderr.count("error:") == 1
    assert "warm_start = 'ghost': no storage at sqlite:///tuner.db" in got.stderr
    assert not (tmp / "tuner.db").exists()
    run_tuner("run", str(_file(folder, "old", module, 4)), cwd=tmp)
    got = run_tuner("run", str(path), "--warm-start", "ghost", cwd=tmp)
    assert got.returncode == 2 and got.stderr.count("error:") == 1
    assert "warm_start = 'ghost': no study named 'ghost'" in got.stderr
    assert "new" not in optuna.get_all_study_names(f"sqlite:///{tmp / 'tuner.db'}")
    other = tmp / "other.db"
    got = run_tuner("run", str(path), "--warm-start", "old", "--warm-start-storage",
                    f"sqlite:///{tmp / 'tuner.db'}", "--storage", f"sqlite:///{other}", cwd=tmp)
    assert got.returncode == 0, got.stderr
    assert "warm start: 4 complete trials of study 'old' are prior observations" in got.stderr
    shown = run_tuner("show", "new", "--storage", f"sqlite:///{other}", cwd=tmp)
    assert "4 of them are prior observations from study 'old'" in shown.stdout


def test_warm_start_top_needs_a_warm_start():
    raw = {"study": {"name": "s", "direction": "maximize", "warm_start_top": 2},
           "objective": {"name": "operator:add"}, "space": {"x": {"low": 0.0, "high": 1.0}}}
    with pytest.raises(ConfigError, match=r"warm_start_top must be 0 without warm_start"):
        config_from_dict(raw)


def test_a_trial_fits_when_every_drawn_and_fixed_parameter_agrees():
    space = config_from_dict({
        "study": {"name": "s", "direction": "maximize"}, "objective": {"name": "operator:add"},
        "space": {"x": {"low": 0.0, "high": 1.0}, "kind": "a",
                  "batch_size": {"low": 16, "high": 64}}}).space
    dist = optuna.distributions

    def trial(**params):
        dists = {"x": dist.FloatDistribution(0, 2), "kind": dist.CategoricalDistribution(["a", "b"]),
                 "batch_size_log2": dist.IntDistribution(3, 7)}
        return optuna.trial.create_trial(value=1.0, params=params,
                                         distributions={k: dists[k] for k in params})

    assert fit(trial(x=0.5, kind="a", batch_size_log2=5), space) == {"x": 0.5,
                                                                     "batch_size_log2": 5}
    assert fit(trial(x=1.5, kind="a", batch_size_log2=5), space) is None  # out of range
    assert fit(trial(x=0.5, kind="b", batch_size_log2=5), space) is None  # fixed differs
    assert fit(trial(x=0.5, kind="a", batch_size_log2=7), space) is None  # 128 > 64
    assert fit(trial(x=0.5, kind="a"), space) is None  # never drew batch_size
    assert all(t.state == TrialState.COMPLETE for t in [trial(x=0.5)])
