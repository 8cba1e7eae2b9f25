"""Weight initialisation schemes, by name.

A scheme sets the weights of every ``Linear``/``Conv`` layer of a model; biases start at zero.
Formulas (fan_in/fan_out as torch computes them, receptive field included for convs):

======================  ===============================================================
``zeros``               W = 0 (symmetric: every unit of a layer stays identical)
``constant``            W = 0.05 (symmetric, like zeros)
``small_normal``        W ~ N(0, 0.01²)   (activations vanish in deep tanh nets)
``large_normal``        W ~ N(0, 1)       (tanh/sigmoid saturate)
``uniform``             W ~ U(-1/√fan_in, 1/√fan_in)
``xavier_uniform``      W ~ U(-a, a), a = √(6/(fan_in+fan_out))   Var = 2/(fan_in+fan_out)
``xavier_normal``       W ~ N(0, 2/(fan_in+fan_out))
``kaiming_uniform``     W ~ U(-b, b), b = gain·√(3/fan_in)       Var = gain²/fan_in
``kaiming_normal``      W ~ N(0, gain²/fan_in); gain matched to the activation (√2 for ReLU)
``orthogonal``          W orthogonal (rows or columns orthonormal), scaled by the activation gain
``lecun_normal``        W ~ N(0, 1/fan_in)
``pretrained``          hidden layers copied from a tuner checkpoint, a fresh Xavier head
======================  ===============================================================

``pretrained`` is the one scheme that needs more than the model: ``apply(..., checkpoint=PATH)``
(the study file's ``[objective] checkpoint``); :mod:`tuner.nn.finetune` does the loading and
checking. A vectorised trainer that initialises tensor by tensor can use ``init_weight`` for
every scheme whose ``from_checkpoint`` is false.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tuner.core.errors import CheckpointError
from tuner.core.registry import Registry
from tuner.nn.checkpoint import copy_body, read_checkpoint
from tuner.nn.models import ACTIVATIONS, weight_layers

HEAD_INIT = "xavier_uniform"  # the fresh head of a pretrained network

CONSTANT_VALUE = 0.05

WeightInit = Callable[[torch.Tensor, float], None]
"""Fills one weight tensor in place; gets the activation's gain (``calculate_gain``)."""


@dataclass(frozen=True)
class InitScheme:
    """A named scheme. ``symmetric`` schemes give every unit of a layer the same weights;
    ``from_checkpoint`` schemes copy weights from a file instead of drawing them."""

    name: str
    init_weight: WeightInit
    symmetric: bool = False
    from_checkpoint: bool = False

    def apply(
        self, model: nn.Module, activation: str, checkpoint: str | Path | None = None
    ) -> nn.Module:
        """Initialise every Linear/Conv layer of ``model`` in place and return it.

        ``checkpoint`` is used (and required) only by ``from_checkpoint`` schemes.
        """
        if self.from_checkpoint:
            if checkpoint is None:
                raise CheckpointError(
                    f"init scheme {self.name!r} needs a checkpoint: set [objective] checkpoint "
                    "to a file written by 'tuner pretrain'"
                )
            return load_pretrained(model, checkpoint, activation)
        gain = nn.init.calculate_gain(ACTIVATIONS.get(activation).gain_name)
        with torch.no_grad():
            for layer in weight_layers(model):
                self.init_weight(layer.weight, gain)
                if layer.bias is not None:
                    layer.bias.zero_()
        return model


SCHEMES: Registry[InitScheme] = Registry("init scheme")


def _fans(w: torch.Tensor) -> tuple[int, int]:
    return nn.init._calculate_fan_in_and_fan_out(w)


def _uniform_fan_in(w: torch.Tensor, gain: float) -> None:
    bound = 1.0 / math.sqrt(_fans(w)[0])
    nn.init.uniform_(w, -bound, bound)


def _kaiming_uniform(w: torch.Tensor, gain: float) -> None:
    bound = gain * math.sqrt(3.0 / _fans(w)[0])
    nn.init.uniform_(w, -bound, bound)


def _kaiming_normal(w: torch.Tensor, gain: float) -> None:
    nn.init.normal_(w, 0.0, gain / math.sqrt(_fans(w)[0]))


def _lecun_normal(w: torch.Tensor, gain: float) -> None:
    nn.init.normal_(w, 0.0, 1.0 / math.sqrt(_fans(w)[0]))


def _needs_model(w: torch.Tensor, gain: float) -> None:
    raise CheckpointError("init scheme 'pretrained' copies whole layers from a checkpoint; "
                          "use InitScheme.apply(model, activation, checkpoint=PATH)")


for _scheme in (
    InitScheme("zeros", lambda w, g: nn.init.zeros_(w), symmetric=True),
    InitScheme("constant", lambda w, g: nn.init.constant_(w, CONSTANT_VALUE), symmetric=True),
    InitScheme("small_normal", lambda w, g: nn.init.normal_(w, 0.0, 0.01)),
    InitScheme("large_normal", lambda w, g: nn.init.normal_(w, 0.0, 1.0)),
    InitScheme("uniform", _uniform_fan_in),
    InitScheme("xavier_uniform", lambda w, g: nn.init.xavier_uniform_(w, gain=1.0)),
    InitScheme("xavier_normal", lambda w, g: nn.init.xavier_normal_(w, gain=1.0)),
    InitScheme("kaiming_uniform", _kaiming_uniform),
    InitScheme("kaiming_normal", _kaiming_normal),
    InitScheme("orthogonal", lambda w, g: nn.init.orthogonal_(w, gain=g)),
    InitScheme("lecun_normal", _lecun_normal),
    InitScheme("pretrained", _needs_model, from_checkpoint=True),
):
    SCHEMES.add(_scheme.name, _scheme)


def apply_init(
    model: nn.Module, scheme: str, activation: str, checkpoint: str | Path | None = None
) -> nn.Module:
    """Initialise ``model`` in place with the named scheme (see the module table)."""
    return SCHEMES.get(scheme).apply(model, activation, checkpoint)


def random_schemes() -> list[str]:
    """The schemes that draw weights (every one but those that load a checkpoint)."""
    return [name for name in SCHEMES if not SCHEMES.get(name).from_checkpoint]


def load_pretrained(model: nn.Module, checkpoint: str | Path, activation: str) -> nn.Module:
    """The ``pretrained`` scheme: copy all but the head from ``checkpoint``; a fresh head."""
    ckpt = read_checkpoint(checkpoint)
    if ckpt.spec.activation != activation:
        raise CheckpointError(
            f"checkpoint {ckpt.path} was trained with activation {ckpt.spec.activation!r}; "
            f"the model uses {activation!r}"
        )
    copy_body(model, ckpt)
    head = weight_layers(model)[-1]
    with torch.no_grad():
        SCHEMES.get(HEAD_INIT).init_weight(head.weight, 1.0)
        if head.bias is not None:
            head.bias.zero_()
    return model
