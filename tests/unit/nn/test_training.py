"""The fast training loop's device policies, and the classifier reporting only the epochs its
pruner can act on (the steps themselves: tests/unit/search/test_report_steps.py)."""

from __future__ import annotations

import functools

import pytest
import torch

from tests.conftest import unique
from tuner.nn.data import load_dataset
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.schemes import apply_init
from tuner.nn.training import Diverged, TrainConfig, amp_dtype, bare_step, make_optimizer, train
from tuner.run.config import load_config
from tuner.run.study import run


@pytest.mark.parametrize(
    ("pruner", "options", "reported"),
    [("none", {}, set()), ("median", {"n_warmup_steps": 2}, {2, 3})],
)
def test_classifier_reports_only_useful_epochs(study_file, pruner, options, reported):
    config = load_config(study_file(
        study={"name": unique(), "pruner": pruner, "n_trials": 2},
        pruner=options, objective={"epochs": 4},
    ))
    study = run(config, f"journal:{study_file().parent / 'cadence.log'}").study
    for t in study.trials:  # two trials: fewer than the median pruner's startup trials
        assert set(t.intermediate_values) == reported
        assert len(t.user_attrs["curve"]["val_loss"]) == 4, "the whole curve is still stored"


def test_amp_is_off_on_cpu_and_for_small_cuda_models():
    model = MODELS.get("mlp")(ModelSpec(64, 10, None, 2, 64, "relu"))
    assert amp_dtype(model, torch.device("cpu")) is None
    assert amp_dtype(model, torch.device("cpu"), amp=True) is None
    assert amp_dtype(model, torch.device("cuda")) is None, "launch-bound: casts cost more"
    assert amp_dtype(model, torch.device("cuda"), amp=False) is None


def test_bare_step_matches_the_full_step_and_respects_hooks():
    torch.manual_seed(0)
    a = MODELS.get("mlp")(ModelSpec(4, 3, None, 1, 8, "relu"))
    b = MODELS.get("mlp")(ModelSpec(4, 3, None, 1, 8, "relu"))
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.Adam(a.parameters(), lr=0.1)
    opt_b = torch.optim.Adam(b.parameters(), lr=0.1)
    x = torch.randn(16, 4)
    for model, step in ((a, opt_a.step), (b, bare_step(opt_b))):
        model(x).pow(2).mean().backward()
        step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    calls: list[int] = []
    opt_b.register_step_post_hook(lambda *args: calls.append(1))
    bare_step(opt_b)()
    assert calls == [1], "a registered hook gets the full step"


def test_train_reads_the_same_numbers_as_evaluate():
    from tuner.nn.training import evaluate

    data = load_dataset("iris", seed=0)
    torch.manual_seed(1)
    model = apply_init(MODELS.get("mlp")(ModelSpec(4, 3, None, 1, 16, "relu")),
                       "kaiming_normal", "relu")
    last = train(model, data, TrainConfig(lr=0.05, batch_size=16, epochs=2))[-1]
    val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
    assert last.val_loss == pytest.approx(val_loss, rel=1e-6)
    assert last.val_accuracy == val_acc


def test_cpu_training_uses_one_thread_by_default(monkeypatch):
    import tuner.nn.training as training

    monkeypatch.setattr(training, "_threads_set", False)
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv(training.CPU_THREADS_ENV, raising=False)
        assert training.use_cpu_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_step_too_large_for_float32_is_a_divergence_not_a_crash(optimizer):
    from tuner.nn.training import Diverged

    data = load_dataset("iris", seed=0)
    torch.manual_seed(1)
    model = apply_init(MODELS.get("mlp")(ModelSpec(4, 3, None, 1, 16, "relu")),
                       "kaiming_normal", "relu")
    with pytest.raises(Diverged, match="diverged in epoch 1"):
        train(model, data, TrainConfig(lr=1e308, batch_size=16, epochs=2, optimizer=optimizer,
                                       momentum=0.9))


class _TwoLayer(torch.nn.Module):
    """A user's own module, not one of tuner's models."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.body, self.head = torch.nn.Linear(d, 16), torch.nn.Linear(16, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)))


def test_train_takes_any_module_and_the_users_loss():
    data = load_dataset("iris", seed=0)
    smoothed = functools.partial(torch.nn.functional.cross_entropy, label_smoothing=0.3)
    cfg = TrainConfig(lr=0.05, batch_size=16, epochs=3, optimizer="sgd")
    runs = {}
    for name, loss in (("default", None), ("smoothed", smoothed)):
        torch.manual_seed(0)
        model = _TwoLayer(data.n_features, data.n_classes)
        runs[name] = (model, train(model, data, cfg, loss=loss,
                                   generator=torch.Generator().manual_seed(0)))
    model, history = runs["smoothed"]
    with torch.no_grad():
        want = smoothed(model(data.x_val), data.y_val).item()
    assert history[-1].val_loss == pytest.approx(want, rel=1e-5)
    assert history[-1].train_loss != runs["default"][1][-1].train_loss
    assert 0 < history[-1].val_accuracy <= 1


def test_a_loss_that_goes_non_finite_is_a_divergence():
    data = load_dataset("iris", seed=0)
    with pytest.raises(Diverged, match="epoch 1"):
        train(_TwoLayer(4, 3), data, TrainConfig(lr=0.01, batch_size=16, epochs=2),
              loss=lambda scores, labels: scores.sum() * float("nan"))


def test_lr_scales_name_the_models_parameters():
    model = _TwoLayer(4, 3)
    cfg = TrainConfig(lr=0.1, batch_size=8, epochs=1, optimizer="sgd",
                      lr_scales={"head.weight": 10.0, "head.bias": 10.0})
    assert sorted(g["lr"] for g in make_optimizer(model, cfg).param_groups) == [
        0.1, pytest.approx(1.0)]
    bad = TrainConfig(lr=0.1, batch_size=8, epochs=1, lr_scales={"4.weight": 10.0})
    with pytest.raises(ValueError, match=r"lr_scales names parameters the model does not have: "
                                         r"\['4.weight'\]"):
        make_optimizer(model, bad)
