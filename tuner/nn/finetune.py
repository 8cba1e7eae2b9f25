"""Fine-tuning a pretrained network: frozen layers and the head's own learning rate.

The ``pretrained`` init scheme (:func:`tuner.nn.schemes.load_pretrained`) copies every layer
of a checkpoint but the head; the head (the last layer, whose size is the new task's number of
classes) starts fresh (Xavier-uniform). Two knobs act on pretrained networks only:

``freeze_layers``  the first *k* reused weight layers keep their pretrained values (0 = train all)
``head_lr_mult``   the head learns at ``lr × head_lr_mult``; the reused layers at ``lr``

(the recipe of the fine-tuning literature: freeze or slow down early, generic layers, give the
new head a larger learning rate). The classifier's checks of them are in
:mod:`tuner.objectives.classifier._finetune`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from tuner.core.errors import ConfigError
from tuner.nn.checkpoint import head_names
from tuner.nn.models import weight_layers
from tuner.nn.schemes import SCHEMES, apply_init


def configure(model: nn.Module, freeze_layers: int, head_lr_mult: float) -> dict[str, float]:
    """Freeze the first ``freeze_layers`` reused weight layers (``requires_grad = False``) and
    return the learning-rate factors that make the head learn at ``head_lr_mult`` × lr: give
    them to training as ``TrainConfig(lr_scales=…)``."""
    reused = weight_layers(model)[:-1]
    if freeze_layers > len(reused):
        raise ConfigError(f"freeze_layers={freeze_layers}, but the model reuses only "
                          f"{len(reused)} layers")
    for layer in reused[:freeze_layers]:
        for p in layer.parameters():
            p.requires_grad_(False)
    return dict.fromkeys(head_names(model), float(head_lr_mult))


def init_model(model: nn.Module, hp: Mapping[str, Any],
               settings: Mapping[str, Any]) -> dict[str, float]:
    """Initialise ``model`` with ``hp["init"]``; a pretrained init also gets its knobs (frozen
    layers now; the returned learning-rate factors, for ``TrainConfig(lr_scales=…)``)."""
    apply_init(model, hp["init"], hp["activation"], settings.get("checkpoint"))
    if SCHEMES.get(hp["init"]).from_checkpoint:
        return configure(model, int(hp.get("freeze_layers", 0)),
                         float(hp.get("head_lr_mult", 1.0)))
    return {}
