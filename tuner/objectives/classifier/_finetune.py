"""The classifier's fine-tuning knobs and the load-time checks of its checkpoint.

A study initialises from a checkpoint (:mod:`tuner.nn.checkpoint`) with ``init = "pretrained"``
and ``[objective] checkpoint = "FILE"`` (relative to the study file); see
:func:`tuner.nn.schemes.load_pretrained`. Two searchable ``[space]`` knobs act on pretrained
trials only (:func:`tuner.nn.finetune.configure`):

``freeze_layers``  the first *k* reused weight layers keep their pretrained values (0 = train all)
``head_lr_mult``   the head learns at ``lr × head_lr_mult``; the reused layers at ``lr``

Everything about the checkpoint (its file, format, model, activation, layer shapes, and the
knobs' ranges) is checked when the study file is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner.core.errors import CheckpointError, ConfigError
from tuner.core.paths import missing_file_hint, resolve_path
from tuner.nn.checkpoint import read_checkpoint
from tuner.nn.models import MODELS, ModelSpec, weight_layers
from tuner.nn.schemes import SCHEMES, load_pretrained
from tuner.search.space import ParamRule, SearchSpace

PARAM_RULES: dict[str, ParamRule] = {
    "freeze_layers": ParamRule(integer=True, low=0, high=64, default=0,
                               help="pretrained: early weight layers kept frozen"),
    "head_lr_mult": ParamRule(kind="float", low=0.0, low_open=True, log=True, default=1.0,
                              help="pretrained: head lr = lr × this"),
}
SETTINGS: dict[str, Any] = {"checkpoint": None}


def check_settings(settings: dict[str, Any], space: SearchSpace, where: str) -> None:
    """Check ``[objective] checkpoint`` (reading nothing) and resolve its path, relative to the
    study file, in ``settings``; a pretrained init needs one."""
    path = settings.get("checkpoint")
    if path is not None:
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{where}: [objective] checkpoint must be a file name, got {path!r}")
        settings["checkpoint"] = resolve_path(path, where)
    if _pretrained(space) and path is None:
        raise ConfigError(f"{where}: [space] init 'pretrained' needs [objective] checkpoint = "
                          "\"FILE\" (a file written by 'tuner pretrain')")


def _pretrained(space: SearchSpace) -> bool:
    inits = space["init"].values() if "init" in space else []
    return any(SCHEMES.get(name).from_checkpoint for name in inits)


def check_checkpoint(settings: dict[str, Any], space: SearchSpace, data: Any,
                     where: str) -> None:
    """Read the checkpoint of a pretrained init and check it against the model, the space's
    fine-tuning knobs and ``data`` (the binding phase: it reads the file)."""
    if not _pretrained(space):
        return
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
    spec = ModelSpec(data.n_features, data.n_outputs, data.image_shape, ckpt.spec.depth,
                     ckpt.spec.width, ckpt.spec.activation)
    model = load_pretrained(MODELS.get(ckpt.model)(spec), ckpt.path, ckpt.spec.activation)
    reused = len(weight_layers(model)) - 1
    high = max(space["freeze_layers"].values())
    if high > reused:
        raise ConfigError(f"{where}: [space] freeze_layers reaches {high}, but the model of "
                          f"{ckpt.path.name} reuses {reused} layers (the head always trains)")
