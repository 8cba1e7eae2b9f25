"""Activations, optimisers and the small networks the built-in objective trains.

Every network is built from ``nn.Linear`` / ``nn.Conv2d`` layers (the ones init schemes touch)
and activation modules (the ones diagnostics hook), so both work on any registered model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from tuner.core.registry import Registry


@dataclass(frozen=True)
class Activation:
    """An activation: a module factory and the name ``torch.nn.init.calculate_gain`` knows.

    ``bounds``: the output range of a squashing activation (where it saturates), else ``None``.
    """

    make: Callable[[], nn.Module]
    gain_name: str  # one of torch's nonlinearity names, for gain-matched init schemes
    bounds: tuple[float, float] | None = None


ACTIVATIONS: Registry[Activation] = Registry("activation")
ACTIVATIONS.add("relu", Activation(nn.ReLU, "relu"))
ACTIVATIONS.add("leaky_relu", Activation(lambda: nn.LeakyReLU(0.01), "leaky_relu"))
ACTIVATIONS.add("tanh", Activation(nn.Tanh, "tanh", bounds=(-1.0, 1.0)))
ACTIVATIONS.add("sigmoid", Activation(nn.Sigmoid, "sigmoid", bounds=(0.0, 1.0)))
ACTIVATIONS.add("selu", Activation(nn.SELU, "selu"))
# GELU/SiLU/ELU have no gain of their own in torch; ReLU's is the customary stand-in.
ACTIVATIONS.add("gelu", Activation(nn.GELU, "relu"))
ACTIVATIONS.add("silu", Activation(nn.SiLU, "relu"))
ACTIVATIONS.add("elu", Activation(nn.ELU, "relu"))

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.SELU, nn.GELU, nn.SiLU, nn.ELU,
)

_ACTIVATION_NAMES = {type(ACTIVATIONS.get(n).make()): n for n in ACTIVATIONS}

OptimizerFactory = Callable[[Iterable, float, float, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
# Arguments: (param groups, lr, weight_decay, momentum). Weight decay is L2 on the weights.
OPTIMIZERS.add("sgd", lambda p, lr, wd, m: torch.optim.SGD(p, lr=lr, weight_decay=wd, momentum=m))
OPTIMIZERS.add("adam", lambda p, lr, wd, m: torch.optim.Adam(p, lr=lr, weight_decay=wd))
OPTIMIZERS.add("adamw", lambda p, lr, wd, m: torch.optim.AdamW(p, lr=lr, weight_decay=wd))
OPTIMIZERS.add(
    "rmsprop", lambda p, lr, wd, m: torch.optim.RMSprop(p, lr=lr, weight_decay=wd, momentum=m)
)
MOMENTUM_OPTIMIZERS = frozenset({"sgd", "rmsprop"})  # the ones that use the momentum argument


@dataclass(frozen=True)
class ModelSpec:
    """What a model factory needs: the data's shape and the architecture hyperparameters."""

    n_features: int
    n_classes: int
    image_shape: tuple[int, int, int] | None  # (channels, height, width) for image data
    depth: int  # hidden layers (mlp) or conv blocks (cnn)
    width: int  # units per hidden layer (mlp) or of the dense layer after the convs (cnn)
    activation: str


ModelFactory = Callable[[ModelSpec], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def mlp(spec: ModelSpec) -> nn.Sequential:
    """``depth`` hidden ``Linear(width) + activation`` layers, then a linear head.

    Input ``(batch, n_features)``; output logits ``(batch, n_classes)``.
    """
    act = ACTIVATIONS.get(spec.activation)
    layers: list[nn.Module] = []
    fan_in = spec.n_features
    for _ in range(spec.depth):
        layers += [nn.Linear(fan_in, spec.width), act.make()]
        fan_in = spec.width
    layers.append(nn.Linear(fan_in, spec.n_classes))
    return nn.Sequential(*layers)


class _Unflatten(nn.Module):
    """Restores ``(batch, C*H*W)`` rows to images; datasets keep samples flat for the MLP."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


def cnn(spec: ModelSpec) -> nn.Sequential:
    """A small CNN for image data: ``depth`` 3x3 conv blocks (16·2^i channels, 2x2 max-pool
    while the image is at least 4 pixels wide), then ``Linear(width)`` and a linear head.

    Input ``(batch, C*H*W)`` flattened; output logits ``(batch, n_classes)``.
    """
    if spec.image_shape is None:
        raise ValueError("the cnn model needs image data")
    act = ACTIVATIONS.get(spec.activation)
    channels, height, width = spec.image_shape
    layers: list[nn.Module] = [_Unflatten(spec.image_shape)]
    for i in range(spec.depth):
        out = 16 * 2**i
        layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), act.make()]
        channels = out
        if min(height, width) >= 4:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
    layers += [
        nn.Flatten(),
        nn.Linear(channels * height * width, spec.width),
        act.make(),
        nn.Linear(spec.width, spec.n_classes),
    ]
    return nn.Sequential(*layers)


MODELS.add("mlp", mlp)
MODELS.add("cnn", cnn)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights init schemes set: every Linear and Conv, in forward order."""
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)]


def infer_activation(model: nn.Module) -> str:
    """The registry name of the first activation module in ``model`` (``relu`` when it has
    none that :data:`ACTIVATIONS` knows): what gain-matched init schemes match by default."""
    for m in model.modules():
        name = _ACTIVATION_NAMES.get(type(m))
        if name is not None:
            return name
    return "relu"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
