"""Fine-tuning: the ``pretrained`` init scheme, its knobs, and ``tuner pretrain``.

A study initialises from a checkpoint (:mod:`tuner.nn.checkpoint`) with ``init = "pretrained"`` and
``[objective] checkpoint = "FILE"`` (relative to the study file). Every layer but the head is
copied; the head — the last layer, whose size is the new task's number of classes — starts
fresh (Xavier-uniform). Two searchable ``[space]`` knobs act on pretrained trials only:

``freeze_layers``  the first *k* reused weight layers keep their pretrained values (0 = train all)
``head_lr_mult``   the head learns at ``lr × head_lr_mult``; the reused layers at ``lr``

(the recipe of the fine-tuning literature: freeze or slow down early, generic layers, give the
new head a larger learning rate). Everything about the checkpoint — its file, format, model,
activation, layer shapes, and the knobs' ranges — is checked when the study file is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuner.core.errors import CheckpointError, ConfigError
from tuner.core.paths import missing_file_hint, resolve_path
from tuner.nn.checkpoint import (
    check_writable,
    copy_body,
    head_names,
    read_checkpoint,
    save_checkpoint,
)
from tuner.nn.models import MODELS, ModelSpec, weight_layers
from tuner.nn.schemes import SCHEMES, apply_init
from tuner.search.space import ParamRule, SearchSpace

HEAD_INIT = "xavier_uniform"
LR_SCALES_ATTR = "lr_scales"  # module attribute read by tuner.nn.training.make_optimizer
PARAM_RULES: dict[str, ParamRule] = {
    "freeze_layers": ParamRule(integer=True, low=0, high=64, default=0,
                               help="pretrained: early weight layers kept frozen"),
    "head_lr_mult": ParamRule(kind="float", low=0.0, low_open=True, log=True, default=1.0,
                              help="pretrained: head lr = lr × this"),
}
SETTINGS: dict[str, Any] = {"checkpoint": None}


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


def configure(model: nn.Module, freeze_layers: int, head_lr_mult: float) -> nn.Module:
    """Freeze the first ``freeze_layers`` reused weight layers (``requires_grad = False``) and
    mark the head's parameters to learn at ``head_lr_mult`` × lr (see :data:`LR_SCALES_ATTR`)."""
    reused = weight_layers(model)[:-1]
    if freeze_layers > len(reused):
        raise ConfigError(f"freeze_layers={freeze_layers}, but the model reuses only "
                          f"{len(reused)} layers")
    for layer in reused[:freeze_layers]:
        for p in layer.parameters():
            p.requires_grad_(False)
    setattr(model, LR_SCALES_ATTR, dict.fromkeys(head_names(model), float(head_lr_mult)))
    return model


def init_model(model: nn.Module, hp: Mapping[str, Any], settings: Mapping[str, Any]) -> nn.Module:
    """Initialise ``model`` with ``hp["init"]``; a pretrained init also gets its knobs."""
    apply_init(model, hp["init"], hp["activation"], settings.get("checkpoint"))
    if SCHEMES.get(hp["init"]).from_checkpoint:
        configure(model, int(hp.get("freeze_layers", 0)), float(hp.get("head_lr_mult", 1.0)))
    return model


# --------------------------------------------------------------------------- validation
def check_settings(settings: dict[str, Any], space: SearchSpace, data: Any, where: str) -> None:
    """Check ``[objective] checkpoint`` and the fine-tuning knobs against the space and data;
    resolve the checkpoint path (relative to the study file) in ``settings``."""
    path = settings.get("checkpoint")
    if path is not None:
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{where}: [objective] checkpoint must be a file name, got {path!r}")
        settings["checkpoint"] = resolve_path(path, where)
    inits = space["init"].values() if "init" in space else []
    if not any(SCHEMES.get(name).from_checkpoint for name in inits):
        return
    if path is None:
        raise ConfigError(f"{where}: [space] init 'pretrained' needs [objective] checkpoint = "
                          "\"FILE\" (a file written by 'tuner pretrain')")
    try:
        _check_against(read_checkpoint(settings["checkpoint"]), settings, space, data, where)
    except CheckpointError as e:
        hint = "" if Path(settings["checkpoint"]).exists() else missing_file_hint(where)
        raise CheckpointError(f"{where}: {e}{hint}") from None


def _check_against(ckpt: Any, settings: dict[str, Any], space: SearchSpace, data: Any,
                   where: str) -> None:
    if settings["model"] != ckpt.model:
        raise ConfigError(f"{where}: [objective] model is {settings['model']!r}, but checkpoint "
                          f"{ckpt.path} holds the model {ckpt.model!r}")
    need = {"depth": ckpt.spec.depth, "width": ckpt.spec.width,
            "activation": ckpt.spec.activation}
    for name, value in need.items():
        allowed = space[name].values()
        if any(v != value for v in allowed):
            raise ConfigError(
                f"{where}: [space] {name}: init 'pretrained' needs {name} = {value!r} (the "
                f"checkpoint's, {ckpt.path.name}), but the space allows {allowed!r}; "
                f"fix it to {value!r}"
            )
    spec = ModelSpec(data.n_features, data.n_classes, data.image_shape, ckpt.spec.depth,
                     ckpt.spec.width, ckpt.spec.activation)
    model = load_pretrained(MODELS.get(ckpt.model)(spec), ckpt.path, ckpt.spec.activation)
    reused = len(weight_layers(model)) - 1
    high = max(space["freeze_layers"].values())
    if high > reused:
        raise ConfigError(f"{where}: [space] freeze_layers reaches {high}, but the model of "
                          f"{ckpt.path.name} reuses {reused} layers (the head always trains)")


# --------------------------------------------------------------------------- pretraining
@dataclass(frozen=True)
class PretrainResult:
    """What ``tuner pretrain`` made: the file and how well it does on its own task."""

    path: Path
    val_accuracy: float
    val_loss: float
    epochs: int
    n_params: int
    description: str


def pretrain(
    settings: Mapping[str, Any],
    params: Mapping[str, Any],
    output: str | Path,
    seed: int = 0,
    where: str = "tuner pretrain",
) -> PretrainResult:
    """Train one classifier on a source task and save it as a tuner checkpoint.

    ``settings``: an ``[objective]`` table (dataset, classes, model, epochs, device …);
    ``params``: fixed ``[space]`` values (lr, batch_size, init, activation, depth, width,
    optimizer …; missing ones take the classifier's defaults). Both are validated exactly as a
    study file's are.
    """
    from tuner.nn.data import dataset_options, load_dataset
    from tuner.nn.device import resolve_device
    from tuner.nn.training import Diverged, TrainConfig, train
    from tuner.objectives.classifier import PARAM_RULES as RULES
    from tuner.objectives.classifier import validate
    from tuner.search.space import parse_space

    output = check_writable(output)  # before minutes of training, not after
    space = parse_space(dict(params), RULES, where)
    searched = [p.name for p in space.searched()]
    if searched:
        raise ConfigError(f"{where}: pretraining needs one value per parameter; "
                          f"{', '.join(searched)} {'is' if len(searched) == 1 else 'are'} a "
                          "list or range")
    s, space = validate(dict(settings), space, where)
    hp = {p.name: p.value for p in space.params}
    device = resolve_device(s["device"])
    options = {k: v for k, v in s.items() if k in dataset_options(s["dataset"])}
    data = load_dataset(s["dataset"], seed=seed, device=str(device), **options)
    spec = ModelSpec(data.n_features, data.n_classes, data.image_shape, hp["depth"], hp["width"],
                     hp["activation"])
    torch.manual_seed(seed)
    model = init_model(MODELS.get(s["model"])(spec), hp, s).to(device)
    cfg = TrainConfig(lr=hp["lr"], batch_size=hp["batch_size"], epochs=s["epochs"],
                      optimizer=hp["optimizer"], weight_decay=hp["weight_decay"],
                      momentum=hp["momentum"])
    try:
        history = train(model, data, cfg,
                        generator=torch.Generator(device=device).manual_seed(seed))
    except Diverged as e:
        raise ConfigError(f"{where}: {e} with lr = {hp['lr']:g}; lower lr") from None
    last = history[-1]
    source = {"dataset": s["dataset"], "classes": s.get("classes"), "epochs": s["epochs"],
              "seed": seed, "val_accuracy": last.val_accuracy, "val_loss": last.val_loss,
              "params": dict(hp)}
    path = save_checkpoint(output, model, s["model"], spec, source)
    n_params = sum(p.numel() for p in model.parameters())
    return PretrainResult(path, last.val_accuracy, last.val_loss, s["epochs"], n_params,
                          read_checkpoint(path).describe())
