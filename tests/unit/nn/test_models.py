"""Model factories and the training loop on real data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuner.nn.data import load_dataset
from tuner.nn.models import ACTIVATIONS, MODELS, OPTIMIZERS, ModelSpec, weight_layers
from tuner.nn.schemes import apply_init
from tuner.nn.training import Diverged, TrainConfig, train


def test_mlp_shape_and_layers():
    model = MODELS.get("mlp")(ModelSpec(64, 10, None, depth=3, width=32, activation="tanh"))
    assert model(torch.zeros(5, 64)).shape == (5, 10)
    assert [layer.weight.shape for layer in weight_layers(model)] == [
        (32, 64), (32, 32), (32, 32), (10, 32)]
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 3


def test_cnn_takes_flat_image_rows():
    model = MODELS.get("cnn")(ModelSpec(64, 10, (1, 8, 8), depth=2, width=32, activation="relu"))
    assert model(torch.zeros(5, 64)).shape == (5, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 2


COMBOS = [(a, "adam") for a in ACTIVATIONS.names()] + [
    ("relu", o) for o in OPTIMIZERS.names() if o != "adam"]


@pytest.mark.parametrize(("activation", "optimizer"), COMBOS)
def test_training_learns_digits(activation, optimizer):
    torch.manual_seed(0)
    data = load_dataset("digits", seed=0)
    spec = ModelSpec(data.n_features, data.n_classes, None, 1, 32, activation)
    model = apply_init(MODELS.get("mlp")(spec), "xavier_uniform", activation)
    lr = 0.01 if optimizer in ("adam", "adamw", "rmsprop") else 0.1
    history = train(model, data, TrainConfig(lr=lr, batch_size=32, epochs=3, optimizer=optimizer))
    assert [h.epoch for h in history] == [1, 2, 3]
    assert history[-1].val_accuracy > 0.6, "three epochs of any sane setting learn digits"
    assert history[-1].train_loss < history[0].train_loss


def test_cnn_learns_digits():
    torch.manual_seed(0)
    data = load_dataset("digits", seed=0)
    spec = ModelSpec(data.n_features, data.n_classes, data.image_shape, 1, 32, "relu")
    model = apply_init(MODELS.get("cnn")(spec), "kaiming_normal", "relu")
    history = train(model, data, TrainConfig(lr=0.01, batch_size=32, epochs=2))
    assert history[-1].val_accuracy > 0.8


def test_same_seed_same_result():
    data = load_dataset("iris", seed=0)

    def once() -> float:
        torch.manual_seed(3)
        model = apply_init(MODELS.get("mlp")(ModelSpec(4, 3, None, 2, 16, "relu")),
                           "kaiming_normal", "relu")
        gen = torch.Generator().manual_seed(3)
        return train(model, data, TrainConfig(lr=0.05, batch_size=16, epochs=2),
                     generator=gen)[-1].val_loss

    assert once() == once()


def test_divergence_is_detected():
    data = load_dataset("iris", seed=0)
    model = MODELS.get("mlp")(ModelSpec(4, 3, None, 2, 16, "relu"))
    with pytest.raises(Diverged, match="diverged in epoch 1"):
        train(model, data, TrainConfig(lr=1e8, batch_size=16, epochs=3, optimizer="sgd",
                                       momentum=0.0))
