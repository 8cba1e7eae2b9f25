"""Init health: verdicts on real networks and data, the symmetry argument, and dead inits pruned
before any epoch inside real studies."""

from __future__ import annotations

import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from tuner.core.errors import ConfigError
from tuner.nn.data import load_dataset
from tuner.nn.health import (
    VERDICTS,
    assess,
    first_layer_gradient,
    hidden_activations,
    init_health,
)
from tuner.nn.models import ModelSpec, mlp
from tuner.nn.schemes import apply_init
from tuner.nn.training import TrainConfig, train
from tuner.run.config import load_config
from tuner.run.study import run
from tuner.views.summaries import scheme_table


def deep_net(scheme: str, activation: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The init-schemes study's network (8 x 64 MLP) on real digits rows."""
    data = load_dataset("digits", seed=0)
    torch.manual_seed(seed)
    model = apply_init(mlp(ModelSpec(64, 10, None, 8, 64, activation)), scheme, activation)
    return model, data.x_train[:512]


@pytest.mark.parametrize(("scheme", "activation", "verdict"), [
    ("zeros", "relu", "symmetric"),
    ("zeros", "sigmoid", "symmetric"),  # sigmoid(0) = 0.5 everywhere: identical, not vanishing
    ("constant", "tanh", "symmetric"),
    ("small_normal", "tanh", "vanishing"),
    ("small_normal", "relu", "vanishing"),
    ("large_normal", "relu", "exploding"),
    ("large_normal", "tanh", "saturated"),
    ("xavier_uniform", "tanh", "healthy"),
    ("kaiming_normal", "relu", "healthy"),
    ("orthogonal", "tanh", "healthy"),
    ("lecun_normal", "selu", "healthy"),
    ("uniform", "relu", "healthy"),  # std 7e-4 at layer 8, but Adam still trains it
])
def test_verdicts_on_the_deep_digits_net(scheme, activation, verdict):
    model, x = deep_net(scheme, activation)
    health = init_health(model, x, activation)
    assert health.verdict == verdict, health.reason
    assert len(health.layer_std) == 8
    assert bool(health.reason) == (verdict != "healthy")


def test_verdicts_come_from_one_table():
    assert VERDICTS == ("healthy", "symmetric", "exploding", "vanishing", "saturated",
                        "vanishing_gradient", "unknown")
    assert assess([], "relu").verdict == "unknown", "no layer seen is no verdict"


@pytest.mark.parametrize(("scheme", "activation"), [("zeros", "tanh"), ("constant", "tanh"),
                                                     ("constant", "sigmoid")])
def test_symmetric_init_stays_symmetric_after_training(scheme, activation):
    """The symmetry argument: units that start identical get identical gradients, so training
    never separates them, however long it runs."""
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = apply_init(mlp(ModelSpec(64, 10, None, 2, 32, activation)), scheme, activation)
    before = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
    history = train(model, data, TrainConfig(lr=0.1, batch_size=64, epochs=5, optimizer="sgd"))
    hidden = [m for m in model if isinstance(m, nn.Linear)][:-1]
    for layer in hidden:
        w, b = layer.weight.detach(), layer.bias.detach()
        assert torch.allclose(w, w[:1].expand_as(w), rtol=1e-5, atol=1e-7), "rows identical"
        assert torch.allclose(b, b[:1].expand_as(b), rtol=1e-5, atol=1e-7)
    for a in hidden_activations(model, data.x_val):
        assert torch.allclose(a, a[:, :1].expand_as(a), rtol=1e-4, atol=1e-6), "units identical"
    if scheme == "constant":
        assert not torch.equal(hidden[0].weight, before[0]), "it did train"
    # one effective unit per layer: far below a real init after the same training
    torch.manual_seed(0)
    real = apply_init(mlp(ModelSpec(64, 10, None, 2, 32, activation)), "xavier_uniform",
                      activation)
    real_history = train(real, data, TrainConfig(lr=0.1, batch_size=64, epochs=5,
                                                 optimizer="sgd"))
    w = real[0].weight.detach()
    assert not torch.allclose(w, w[:1].expand_as(w))
    assert history[-1].val_accuracy < real_history[-1].val_accuracy - 0.3


def quickstart_net(scheme: str, depth: int = 2, activation: str = "relu"):
    """The quickstart's network (2 x 64 ReLU MLP) on real digits rows and labels."""
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = apply_init(mlp(ModelSpec(64, 10, None, depth, 64, activation)), scheme, activation)
    return model, data


@pytest.mark.parametrize(("lr", "dead"), [(1e-3, True), (0.1, False)])
def test_small_normal_on_the_quickstart_net_is_judged_by_its_gradient(lr: float, dead: bool):
    """Seen: small_normal on the 2-layer quickstart net passed as healthy (its activations
    are fine) and sat at chance for 10 epochs. One backward pass shows its first layer's
    gradient is ~15x smaller than a real init's: at lr 1e-3 training cannot move it, at lr
    0.1 it can (and the net learns)."""
    model, data = quickstart_net("small_normal")
    x, y = data.x_train[:512], data.y_train[:512]
    steps = 10 * -(-len(data.x_train) // 32)
    activations_only = assess(hidden_activations(model, x), "relu")
    assert activations_only.healthy  # what the old verdict said
    grad = first_layer_gradient(model, x, y)
    health = assess(hidden_activations(model, x), "relu", first_grad=grad,
                    lr_steps=lr / (1 - 0.9) * steps)
    assert (health.verdict == "vanishing_gradient") == dead, health.reason
    trained = train(model, data, TrainConfig(lr=lr, batch_size=32, epochs=10, optimizer="sgd"))
    assert (trained[-1].val_accuracy < 0.2) == dead  # the verdict is what training does


@pytest.mark.parametrize("scheme", ["xavier_uniform", "kaiming_normal", "orthogonal",
                                    "lecun_normal"])
def test_real_inits_pass_the_gradient_check_even_at_a_low_learning_rate(scheme: str):
    model, data = quickstart_net(scheme)
    x, y = data.x_train[:512], data.y_train[:512]
    grad = first_layer_gradient(model, x, y)
    steps = 10 * -(-len(data.x_train) // 32)
    health = assess(hidden_activations(model, x), "relu", first_grad=grad,
                    lr_steps=1e-3 / (1 - 0.9) * steps)
    assert health.healthy, health.reason
    assert grad > 10 * first_layer_gradient(*_xy(quickstart_net("small_normal")))


def _xy(net_and_data):
    model, data = net_and_data
    return model, data.x_train[:512], data.y_train[:512]


def test_a_gradient_that_never_reaches_the_first_layer_is_dead_at_any_rate():
    model, data = quickstart_net("small_normal", depth=4, activation="tanh")
    x, y = data.x_train[:512], data.y_train[:512]
    assert assess(hidden_activations(model, x), "tanh").healthy
    grad = first_layer_gradient(model, x, y)
    health = assess(hidden_activations(model, x), "tanh", first_grad=grad)
    assert health.verdict == "vanishing_gradient" and "cannot learn" in health.reason
    assert model[0].weight.grad is None  # the check leaves the model's gradients alone


def test_the_classifier_prunes_a_stalled_init_and_stores_the_gradient(study_file, sqlite_url):
    config = load_config(study_file(
        study={"sampler": "grid", "n_trials": 2, "pruner": "none"},
        objective={"dataset": "digits", "epochs": 2},
        space={"init": ["small_normal", "kaiming_normal"], "lr": 1e-3, "batch_size": 32,
               "depth": 2, "width": 64, "activation": "relu", "optimizer": "sgd"},
    ))
    by_init = {t.params["init"]: t for t in run(config, sqlite_url).study.trials}
    small, real = by_init["small_normal"], by_init["kaiming_normal"]
    assert small.state == TrialState.PRUNED
    assert small.user_attrs["prune_reason"].startswith("dead init (vanishing_gradient): ")
    assert real.state == TrialState.COMPLETE and real.user_attrs["init_verdict"] == "healthy"
    assert real.user_attrs["init_first_grad"] > 10 * small.user_attrs["init_first_grad"]


def _dead_study(study_file, prune: bool, inits: list[str], n: int = 4, **study):
    return load_config(study_file(
        study={"sampler": "grid", "n_trials": n, "pruner": "none", **study},
        objective={"dataset": "digits", "epochs": 2, "prune_dead_inits": prune},
        space={"init": inits, "lr": 0.05, "batch_size": 64, "depth": 8, "width": 32,
               "activation": "tanh", "optimizer": "sgd"},
    ))


def test_dead_inits_are_pruned_before_any_epoch(study_file, sqlite_url):
    result = run(_dead_study(study_file, True, ["zeros", "small_normal", "kaiming_normal",
                                                "constant"]), sqlite_url)
    by_init = {t.params["init"]: t for t in result.study.trials}
    assert set(by_init) == {"zeros", "small_normal", "kaiming_normal", "constant"}
    healthy = by_init["kaiming_normal"]
    assert healthy.state == TrialState.COMPLETE and healthy.user_attrs["init_verdict"] == "healthy"
    assert len(healthy.user_attrs["init_layer_std"]) == 8
    assert "init_reason" not in healthy.user_attrs
    for scheme, verdict in (("zeros", "symmetric"), ("constant", "symmetric"),
                            ("small_normal", "vanishing")):
        t = by_init[scheme]
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["init_verdict"] == verdict
        assert t.user_attrs["prune_reason"].startswith(f"dead init ({verdict}): ")
        assert "curve" not in t.user_attrs, "no epoch was trained"
        # its value is the untrained network's accuracy, reported as step 0: chance level
        assert list(t.intermediate_values) == [0] and t.value < 0.2


def test_without_pruning_a_dead_init_trains_and_fails(study_file, sqlite_url):
    result = run(_dead_study(study_file, False, ["zeros", "kaiming_normal"], n=2), sqlite_url)
    by_init = {t.params["init"]: t for t in result.study.trials}
    zeros = by_init["zeros"]
    assert zeros.state == TrialState.COMPLETE
    assert zeros.user_attrs["init_verdict"] == "symmetric" and zeros.user_attrs["init_reason"]
    assert len(zeros.user_attrs["curve"]["val_accuracy"]) == 2
    assert zeros.value < 0.2 < by_init["kaiming_normal"].value


def test_scheme_table_summarises_a_study(study_file, sqlite_url):
    result = run(_dead_study(study_file, True, ["zeros", "kaiming_normal"], n=2), sqlite_url)
    rows = scheme_table(result.study.trials)
    assert [r["init"] for r in rows] == ["kaiming_normal", "zeros"]
    assert rows[1]["states"] == {"PRUNED": 1} and rows[1]["verdicts"] == {"symmetric": 1}
    assert rows[0]["best"] == rows[0]["mean"] > rows[1]["best"]
    flipped = scheme_table(result.study.trials, maximize=False)
    assert [r["init"] for r in flipped] == ["zeros", "kaiming_normal"]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_prune_dead_inits_must_be_a_bool(study_file, value):
    objective = {"prune_dead_inits": value} if value is not None else {}
    if value is None:
        config = load_config(study_file(objective=objective))
        assert config.objective_settings["prune_dead_inits"] is True, "on by default"
        return
    with pytest.raises(ConfigError, match=r"prune_dead_inits must be true or false, got"):
        load_config(study_file(objective=objective))


def test_val_loss_studies_get_the_untrained_loss(study_file, sqlite_url):
    config = _dead_study(study_file, True, ["zeros"], n=1, metric="val_loss")
    trial = run(config, sqlite_url).study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.value == pytest.approx(torch.log(torch.tensor(10.0)).item(), rel=0.05)


def test_a_real_init_at_a_tiny_learning_rate_is_not_called_dead():
    """A low lr is the lr's problem: kaiming's gradient is strong, so even a reach of ~0.1%
    does not make the init "dead" (the rule needs a weak gradient too)."""
    model, data = quickstart_net("kaiming_normal")
    x, y = data.x_train[:512], data.y_train[:512]
    health = assess(hidden_activations(model, x), "relu",
                    first_grad=first_layer_gradient(model, x, y), lr_steps=0.01 * 10)
    assert health.healthy, health.reason
