"""The objective toolkit (``ctx``): a user's own model gets everything the built-in gets."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from tests.conftest import run_tuner, to_toml, unique
from tuner.core.errors import ConfigError
from tuner.run.config import load_config
from tuner.run.outcome import ObjectiveFailed
from tuner.run.study import run
from tuner.store.artifacts import INIT_ACTIVATIONS, LEARNING_CURVE, open_store, trial_artifacts

ROOT = Path(__file__).resolve().parents[3]

# A user's objective module: an MLP of their own, their own loop, every toolkit call.
OWN_MLP = '''
import torch
from torch import nn


def objective(trial, ctx):
    hp = ctx.suggest(trial)
    data = ctx.load_data()
    torch.manual_seed(ctx.trial_seed(trial))
    model = nn.Sequential(nn.Linear(data.n_features, 32), nn.Tanh(),
                          nn.Linear(32, data.n_classes)).to(ctx.device)
    ctx.init(model, hp["init"])
    ctx.check_init(trial, model, data.x_train[:128], y=data.y_train[:128])
    opt = torch.optim.SGD(model.parameters(), lr=hp["lr"])
    acc = 0.0
    for epoch in range(1, ctx.settings["epochs"] + 1):
        for i in range(0, len(data.x_train), hp["batch_size"]):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(data.x_train[i:i + hp["batch_size"]]),
                                               data.y_train[i:i + hp["batch_size"]])
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = model(data.x_val)
            acc = (logits.argmax(1) == data.y_val).float().mean().item()
            val_loss = nn.functional.cross_entropy(logits, data.y_val).item()
        ctx.report(trial, epoch, acc, train_loss=loss.item(), val_loss=val_loss)
    return acc
'''


def _study(tmp_path: Path, source: str, **sections: dict) -> Path:
    """A study file over a fresh objective module ``<unique>.py`` in ``tmp_path``."""
    module = unique("userobj").replace("-", "_")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    raw = {
        "study": {"name": "own", "sampler": "random", "pruner": "none", "n_trials": 4, "seed": 0,
                  "direction": "maximize"},
        "objective": {"name": f"{module}:objective", "dataset": "iris", "epochs": 2,
                      "device": "cpu"},
        "space": {"lr": {"low": 0.01, "high": 0.5}, "batch_size": {"low": 16, "high": 64},
                  "init": ["xavier_uniform", "zeros"]},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path = tmp_path / "own.toml"
    path.write_text(to_toml(raw))
    return path


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(path: Path, folder: Path) -> optuna.Study:
    result = run(load_config(path), f"sqlite:///{folder / 'tuner.db'}")
    return result.study


def test_a_users_objective_gets_powers_of_two_verdicts_curves_reasons_and_pictures(user_dir):
    study = _run(_study(user_dir, OWN_MLP, study={"n_trials": 6}), user_dir)
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 6
    store = open_store(user_dir / "tuner-artifacts", create=False)
    for t in trials:
        assert t.user_attrs["batch_size"] in (16, 32, 64)
        assert "batch_size_log2" in t.params and "batch_size" not in t.params
        assert t.distributions["lr"].log, "lr is searched on a log scale for every objective"
        assert t.user_attrs["init_verdict"] in ("healthy", "symmetric")
        assert t.user_attrs["init_first_grad"] >= 0  # y given: one backward pass measured it
        pictures = trial_artifacts(study, t)
        assert INIT_ACTIVATIONS in pictures
        if t.params["init"] == "zeros":  # every unit identical: pruned before training
            assert t.state == TrialState.PRUNED
            assert t.user_attrs["prune_reason"].startswith("dead init (symmetric)")
            assert "curve" not in t.user_attrs and LEARNING_CURVE not in pictures
        else:
            curve = t.user_attrs["curve"]
            assert set(curve) == {"value", "train_loss", "val_loss"}
            assert len(curve["val_loss"]) == 2 and curve["value"][-1] == pytest.approx(t.value)
            assert (user_dir / "tuner-artifacts" / pictures[LEARNING_CURVE]).is_file()
    assert store is not None


def test_a_reason_given_to_trial_pruned_is_kept(user_dir):
    source = '''
    import optuna

    def objective(trial, ctx):
        ctx.suggest(trial)
        raise optuna.TrialPruned("plateaued at epoch 3")
    '''
    study = _run(_study(user_dir, source), user_dir)
    reasons = {t.user_attrs.get("prune_reason") for t in study.trials}
    assert reasons == {"plateaued at epoch 3"}


def test_a_failure_stores_the_users_file_and_line(user_dir):
    source = '''
    def helper(x):
        return x["missing"]

    def objective(trial, ctx):
        ctx.suggest(trial)
        return helper({})
    '''
    path = _study(user_dir, source)
    with pytest.raises(ObjectiveFailed, match=r"KeyError: 'missing' \(at userobj_\w+\.py:3 in "
                                              r"helper\)"):
        _run(path, user_dir)


def test_debug_prints_the_users_traceback(tmp_path):
    source = '''
    def objective(trial, ctx):
        ctx.suggest(trial)
        return 1 / 0
    '''
    path = _study(tmp_path, source)
    proc = run_tuner("--debug", "run", path.name, cwd=tmp_path)
    assert proc.returncode != 0
    # Each failed trial's traceback, down to the user's own line.
    assert proc.stderr.count("Traceback (most recent call last)") >= 3
    assert "return 1 / 0" in proc.stderr and "in objective" in proc.stderr
    plain = run_tuner("run", path.name, "--name", "again", cwd=tmp_path)
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr, "only --debug shows tracebacks"
    assert "(at userobj_" in plain.stderr.splitlines()[-1], "the user's line, even without it"


BAD_CALLS = [
    ("ctx.init(torch.nn.Linear(4, 3), 'nope')",
     r"ctx\.init\(model, 'nope'\): unknown init scheme 'nope'; valid: constant,"),
    ("ctx.init('not a model', 'zeros')",
     r"ctx\.init\(model, 'zeros'\): model must be a torch\.nn\.Module, got str"),
    ("ctx.init(torch.nn.ReLU(), 'zeros')", r"ReLU has no Linear or Conv layer"),
    ("ctx.init(torch.nn.Linear(4, 3), 'pretrained')", r"set \[objective\] checkpoint"),
    ("ctx.check_init(trial, torch.nn.Linear(7, 3), torch.zeros(8, 4))",
     r"ctx\.check_init\(trial, model, x\): the model cannot take x of shape \(8, 4\)"),
    ("ctx.check_init(trial, torch.nn.Linear(4, 3), torch.zeros(8, 4), y=torch.zeros(5))",
     r"y must be a tensor of the targets of x's 8 rows, got Tensor of 5"),
    ("ctx.check_init(trial, torch.nn.Linear(4, 3), torch.zeros(8, 4), lr=0.1)",
     r"give both lr and steps"),
    ("ctx.report(trial, 1, 'high')",
     r"ctx\.report\(trial, step=1, value='high'\): value must be a finite number"),
    ("ctx.report(trial, 1, 0.5, train_loss=None)", r"train_loss must be a finite number"),
    ("ctx.report(trial, -1, 0.5)", r"step must be a whole number >= 0"),
]


@pytest.mark.parametrize(("call", "match"), BAD_CALLS)
def test_a_wrong_toolkit_call_fails_the_trial_naming_the_call(user_dir, call, match):
    source = f'''
    import torch

    def objective(trial, ctx):
        ctx.suggest(trial)
        {call}
        return 0.5
    '''
    with pytest.raises(ObjectiveFailed, match=match):
        _run(_study(user_dir, source), user_dir)


def test_a_nan_or_inf_reported_is_a_divergence_pruned_not_a_failure(user_dir):
    """Seen: a user's own loop reporting an overflowed val_loss failed three trials as an
    objective bug, and the study stopped."""
    source = '''
    def objective(trial, ctx):
        ctx.suggest(trial)
        ctx.report(trial, 1, 0.5, val_loss=float("inf") if trial.number % 2 else 1.0)
        return 0.5
    '''
    study = _run(_study(user_dir, source), user_dir)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert [t.number for t in pruned] == [1, 3] and not study.get_trials(states=(TrialState.FAIL,))
    assert pruned[0].user_attrs["prune_reason"] == (
        "training diverged in step 1 (val_loss=inf reported; usually the learning rate is too "
        "high)")


def test_the_study_goes_on_after_a_trial_with_a_wrong_call(user_dir):
    source = '''
    def objective(trial, ctx):
        ctx.suggest(trial)
        if trial.number == 1:
            ctx.init(object(), "zeros")
        return 0.5
    '''
    study = _run(_study(user_dir, source), user_dir)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 4 and states.count(TrialState.FAIL) == 1
    reason = study.trials[1].user_attrs["fail_reason"]
    assert reason.startswith("ToolkitError: ctx.init(model, 'zeros'): model must be")
    assert ".py:5 in objective" in reason


def test_shared_names_mean_the_same_for_every_objective(user_dir):
    config = load_config(_study(user_dir, OWN_MLP))
    assert config.space["batch_size"].kind == "pow2"
    assert config.space["lr"].log
    bad = _study(user_dir, OWN_MLP, space={"init": ["zeros", "he"]})
    with pytest.raises(ConfigError, match=r"\[space\] init: unknown init scheme 'he'"):
        load_config(bad)


@pytest.mark.parametrize(("objective", "match"), [
    ({"device": "tpu"}, r"\[objective\] device: must be auto, cpu, cuda or cuda:N"),
    ({"dataset": "mnist"}, r"\[objective\] dataset: unknown dataset 'mnist'"),
    ({"dataset": "csv"}, r"dataset 'csv' needs path"),
    ({"epochs": 0}, r"\[objective\] epochs must be a whole number >= 1"),
    ({"prune_dead_inits": "yes"}, r"prune_dead_inits must be true or false"),
])
def test_toolkit_settings_are_checked_for_any_objective(user_dir, objective, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_study(user_dir, OWN_MLP, objective=objective))
    assert not (user_dir / "tuner.db").exists()


def test_init_matches_the_gain_of_the_models_own_activation(user_dir):
    from tuner.objectives.context import ObjectiveContext

    config = load_config(_study(user_dir, OWN_MLP))
    ctx = ObjectiveContext(settings=config.objective_settings, space=config.space)
    torch.manual_seed(0)
    wide = torch.nn.Sequential(torch.nn.Linear(2000, 2000), torch.nn.Tanh())
    ctx.init(wide, "kaiming_normal")  # tanh's gain 5/3 over sqrt(fan_in)
    assert wide[0].weight.std().item() == pytest.approx(5 / 3 / 2000**0.5, rel=0.02)
    ctx.init(wide, "kaiming_normal", activation="relu")
    assert wide[0].weight.std().item() == pytest.approx(2**0.5 / 2000**0.5, rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize(("example", "name", "sizes"), [
    ("cnn_digits", "cnn-digits", {16, 32, 64, 128}),  # its own loop
    ("wide_mlp", "wide-mlp", {8, 16, 32, 64}),  # tuner.nn.training.train
])
def test_the_shipped_examples_run_as_studies(tmp_path, example, name, sizes):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    proc = run_tuner("run", f"examples/{example}.toml", "--n-trials", "8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/tuner.db")
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 8
    assert {t.user_attrs["batch_size"] for t in finished} <= sizes
    assert all("init_verdict" in t.user_attrs for t in finished)
    assert all(t.user_attrs.get("prune_reason") for t in finished if t.state == TrialState.PRUNED)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert max(t.value for t in complete) > 0.8
    assert all(set(trial_artifacts(study, t)) == {INIT_ACTIVATIONS, LEARNING_CURVE}
               for t in complete)
    report = run_tuner("report", name, "-o", "r.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "r.html").read_text()
    assert "not in the artifact store" not in html and "its pictures" in html


def test_the_report_of_an_objective_without_pictures_says_why_not_broken_setup(user_dir):
    from tuner.views.report import write_report

    source = '''
    def objective(trial, ctx):
        return ctx.suggest(trial)["lr"]
    '''
    study = _run(_study(user_dir, source), user_dir)
    write_report(study, user_dir / "r.html")
    html = (user_dir / "r.html").read_text()
    assert "stored no pictures: its objective calls neither" in html
    assert "no artifact folder found" not in html
