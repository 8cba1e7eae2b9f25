"""``tuner pretrain``: train one classifier on a source task and save it as a checkpoint that
a study's ``init = "pretrained"`` starts from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuner.core.errors import ConfigError
from tuner.nn.checkpoint import check_writable, read_checkpoint, save_checkpoint
from tuner.nn.data import dataset_options, load_dataset
from tuner.nn.device import check_device, use_deterministic, use_device
from tuner.nn.finetune import init_model
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.training import Diverged, TrainConfig, train
from tuner.objectives.classifier import PARAM_RULES as RULES
from tuner.objectives.classifier import validate
from tuner.search.space_table import parse_space


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

    output = check_writable(output)  # before minutes of training, not after
    space = parse_space(dict(params), RULES, where)
    searched = [p.name for p in space.searched()]
    if searched:
        raise ConfigError(f"{where}: pretraining needs one value per parameter; "
                          f"{', '.join(searched)} {'is' if len(searched) == 1 else 'are'} a "
                          "list or range")
    s, space = validate(dict(settings), space, where)
    hp = {p.name: p.value for p in space.params}
    check_device(s["device"], f"{where}: device", hint="--set device=cpu")  # before the data
    device = use_device(s["device"])
    use_deterministic(s["deterministic"])
    options = {k: v for k, v in s.items() if k in dataset_options(s["dataset"])}
    data = load_dataset(s["dataset"], seed=seed, device=str(device), **options)
    spec = ModelSpec(data.n_features, data.n_outputs, data.image_shape, hp["depth"], hp["width"],
                     hp["activation"])
    torch.manual_seed(seed)
    model = MODELS.get(s["model"])(spec)
    lr_scales = init_model(model, hp, s)
    model.to(device)
    cfg = TrainConfig(lr=hp["lr"], batch_size=hp["batch_size"], epochs=s["epochs"],
                      optimizer=hp["optimizer"], weight_decay=hp["weight_decay"],
                      momentum=hp["momentum"], lr_scales=lr_scales)
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
                          read_checkpoint(path).describe() if path.is_file()
                          else f"not read back: {path} is not a regular file")
