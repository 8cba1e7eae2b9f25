"""The built-in objectives: train a small network and return a validation metric.

``classifier`` and ``regressor`` are one objective: the dataset's task (``[objective] task``,
else the dataset's own, else its target's; see :mod:`tuner.nn.data`) decides the network's
head, the loss (cross-entropy or mean squared error) and the metrics (``val_accuracy``,
``val_loss``; or ``val_mse``, ``val_rmse``, ``val_mae``, ``val_r2``, ``val_loss``).
``regressor`` only defaults to a regression (``task = "regression"``, dataset ``diabetes``).

``[objective]`` settings: ``dataset`` (a registered name, see :mod:`tuner.nn.data`), its options
(``path``, ``target``, ``task``, ``classes``, ``val_fraction`` …), ``model`` (``mlp`` or
``cnn``), ``epochs``, ``device`` and ``deterministic`` (reproducible GPU kernels, TF32 off:
:func:`tuner.nn.device.use_deterministic`). Searchable ``[space]`` names: lr, batch_size, init,
activation, weight_decay, depth, width, optimizer, momentum (each may also be fixed or left to
its default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import torch

from tuner.core.errors import ConfigError, Diverged, did_you_mean, warn_once
from tuner.core.metrics import (
    CLASSIFICATION_METRICS,
    COST_METRICS,
    REGRESSION_METRICS,
    natural_direction,
)
from tuner.nn import finetune, health
from tuner.nn.data import DATASETS, Dataset, dataset_options, known_task
from tuner.nn.device import fit_batch_size, use_deterministic
from tuner.nn.models import ACTIVATIONS, MODELS, MOMENTUM_OPTIMIZERS, OPTIMIZERS, ModelSpec
from tuner.nn.schemes import SCHEMES
from tuner.nn.training import EpochStats, TrainConfig, evaluate_metrics, train
from tuner.objectives.classifier import _finetune
from tuner.objectives.context import ObjectiveContext
from tuner.objectives.shared import (
    SHARED_RULES,
    bind_toolkit_settings,
    validate_toolkit_settings,
)
from tuner.search.space import ParamRule, SearchSpace

PARAM_RULES: dict[str, ParamRule] = {
    # The names every objective shares (tuner.objectives.shared), with this one's defaults.
    "lr": replace(SHARED_RULES["lr"], default=1e-3),
    "batch_size": replace(SHARED_RULES["batch_size"], default=64),
    "init": replace(SHARED_RULES["init"], default="kaiming_uniform"),
    "activation": ParamRule(registry=ACTIVATIONS, default="relu"),
    "optimizer": ParamRule(registry=OPTIMIZERS, default="adam"),
    "weight_decay": ParamRule(kind="float", low=0.0, default=0.0, help="L2 penalty"),
    "momentum": ParamRule(kind="float", low=0.0, high=1.0, default=0.9, help="sgd/rmsprop"),
    "depth": ParamRule(integer=True, low=1, high=64, default=2, help="hidden layers"),
    "width": ParamRule(integer=True, low=1, high=8192, default=64, help="units per layer"),
    **_finetune.PARAM_RULES,  # freeze_layers, head_lr_mult: act on init = "pretrained" only
}
METRICS = {m: natural_direction(m) for m in dict.fromkeys(
    (*CLASSIFICATION_METRICS, *REGRESSION_METRICS, *COST_METRICS))}  # val_accuracy, …
SETTINGS = {"dataset": "digits", "model": "mlp", "epochs": 10, "device": "auto",
            "artifacts": True,  # per-trial pictures for the dashboard (tuner.store.artifacts)
            "deterministic": False}  # deterministic kernels, TF32 off (reruns on a GPU repeat)
# Init science (tuner.nn.health, tuner.nn.finetune): prune dead inits before epoch 1; a checkpoint
# for init = "pretrained" (a file name, relative to the study file; None: no checkpoint).
SETTINGS.update({"prune_dead_inits": True, **_finetune.SETTINGS})


def validate(
    settings: dict[str, Any], space: SearchSpace, where: str
) -> tuple[dict[str, Any], SearchSpace]:
    """Check the ``[objective]`` table against the dataset's options, the model and the space;
    fill defaults. Reads nothing and probes nothing (that is :func:`bind`)."""
    dataset = settings.get("dataset", SETTINGS["dataset"])
    if not isinstance(dataset, str):
        raise ConfigError(f"{where}: [objective] dataset must be a name, got {dataset!r}")
    DATASETS.get(dataset, f"{where}: [objective] dataset")  # unknown: lists the valid ones
    valid = {**SETTINGS, **dataset_options(dataset)}
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise ConfigError(
            f"{where}: [objective] unknown key(s) {', '.join(unknown)} for dataset {dataset!r}"
            f"{did_you_mean(unknown, sorted(valid))}; valid: {', '.join(sorted(valid))}"
        )
    # device, epochs, the two switches, file paths (made absolute), the dataset's own needs:
    # what the toolkit checks for every objective.
    out = validate_toolkit_settings({**valid, **settings}, where)
    MODELS.get(out["model"], f"{where}: [objective] model")
    if not isinstance(out["deterministic"], bool):
        raise ConfigError(f"{where}: [objective] deterministic must be true or false, got "
                          f"{out['deterministic']!r}")
    vf = out["val_fraction"]
    if isinstance(vf, bool) or not isinstance(vf, int | float) or not 0 < vf < 1:
        raise ConfigError(f"{where}: [objective] val_fraction must be in (0, 1), got {vf!r}")
    _finetune.check_settings(out, space, where)
    for inert in _inert_settings(out, space):
        warn_once(f"{where}: {inert}")
    return out, space


def bind(settings: dict[str, Any], space: SearchSpace, where: str) -> SearchSpace:
    """What needs the machine and the files (once per process, before storage is written):
    the device exists, the dataset loads, the batch sizes fit its rows (and a GPU's memory:
    the space returned), a CNN has images, a pretrained init's checkpoint fits. Sets the
    deterministic mode when asked for (before any kernel runs)."""
    use_deterministic(settings.get("deterministic", False))
    data = bind_toolkit_settings(settings, where)
    dataset = settings["dataset"]
    if "batch_size" in space:
        largest = max(space["batch_size"].values())
        if largest > data.n_train:
            raise ConfigError(
                f"{where}: [space] batch_size: {largest} is larger than the training set "
                f"({data.n_train} rows of {dataset!r}); lower the upper bound"
            )
    if settings["model"] == "cnn" and data.image_shape is None:
        raise ConfigError(
            f"{where}: [objective] model 'cnn' needs image data; {dataset!r} is tabular"
        )
    space = fit_batch_size(space, settings, data, where)  # on a GPU: the largest that fits
    _finetune.check_checkpoint(settings, space, data, where)
    return space


def _inert_settings(settings: dict[str, Any], space: SearchSpace) -> list[str]:
    """Settings written in the study file that cannot change any trial (a likely mistake)."""
    given = {p.name for p in space.params if not p.default}
    out = []
    optimizers = space["optimizer"].values()
    if "momentum" in given and not MOMENTUM_OPTIMIZERS.intersection(optimizers):
        out.append(f"[space] momentum has no effect: optimizer {', '.join(optimizers)} does not "
                   f"use it (only {', '.join(sorted(MOMENTUM_OPTIMIZERS))} do)")
    pretrained = any(SCHEMES.get(name).from_checkpoint for name in space["init"].values())
    if not pretrained:
        knobs = [k for k in _finetune.PARAM_RULES if k in given]
        if knobs:
            out.append(f"[space] {', '.join(knobs)} has no effect: no [space] init is "
                       "'pretrained'")
        if settings.get("checkpoint") is not None:
            out.append("[objective] checkpoint is not used: no [space] init is 'pretrained'")
    return out


@dataclass
class TrialSetup:
    """One trial, ready to train: what :func:`prepare_trial` builds for the sequential loop and
    for a packed population (:mod:`tuner.objectives.classifier_pack`) alike, so both start from
    the same state."""

    trial: optuna.Trial
    data: Dataset
    model: torch.nn.Module
    cfg: TrainConfig
    generator: torch.Generator
    curve: list[EpochStats] = field(default_factory=list)


def model_spec(data: Dataset, hp: dict[str, Any]) -> ModelSpec:
    """The architecture of a trial with parameters ``hp`` on ``data``."""
    return ModelSpec(data.n_features, data.n_outputs, data.image_shape, hp["depth"], hp["width"],
                     hp["activation"])


def prepare_trial(trial: optuna.Trial, hp: dict[str, Any], ctx: ObjectiveContext) -> TrialSetup:
    """Seed, build and initialise the trial's model (``ctx.init``); set its config."""
    s = ctx.settings
    data = ctx.load_data()
    seed = ctx.trial_seed(trial)
    torch.manual_seed(seed)
    generator = torch.Generator(device=ctx.device).manual_seed(seed)
    model = MODELS.get(s["model"])(model_spec(data, hp)).to(ctx.device)
    ctx.init(model, hp["init"], hp["activation"])
    lr_scales = (finetune.configure(model, int(hp["freeze_layers"]), float(hp["head_lr_mult"]))
                 if SCHEMES.get(hp["init"]).from_checkpoint else {})
    cfg = TrainConfig(lr=hp["lr"], batch_size=hp["batch_size"], epochs=s["epochs"],
                      optimizer=hp["optimizer"], weight_decay=hp["weight_decay"],
                      momentum=hp["momentum"], lr_scales=lr_scales)
    if trial.user_attrs.get("batch_size") != cfg.batch_size:  # a searched one is stored already
        trial.set_user_attr("batch_size", cfg.batch_size)
    return TrialSetup(trial, data, model, cfg, generator)


def check_init(setup: TrialSetup, hp: dict[str, Any], ctx: ObjectiveContext) -> None:
    """``ctx.check_init`` on training rows, with their labels (the first layer's gradient)
    and, for plain SGD, the whole training's reach (lr / (1 - momentum) × steps); a pruned
    dead init reports the untrained network's metric (chance level) as step 0."""
    data, cfg = setup.data, setup.cfg

    def untrained() -> float:
        return evaluate_metrics(setup.model, data).get(ctx.metric, math.nan)

    lr = steps = None
    # Adaptive optimizers rescale the gradient, fine-tuning scales some layers' rates: no reach.
    if cfg.optimizer == "sgd" and not any(f != 1 for f in cfg.lr_scales.values()):
        lr = cfg.lr / (1 - cfg.momentum) if cfg.momentum < 1 else None
        steps = cfg.epochs * math.ceil(len(data.x_train) / cfg.batch_size) if lr else None
    rows = slice(None, health.HEALTH_ROWS)
    ctx.check_init(setup.trial, setup.model, data.x_train[rows], hp["activation"],
                   baseline=untrained, y=data.y_train[rows], lr=lr, steps=steps)


def report_epoch(ctx: ObjectiveContext, trial: optuna.Trial, stats: EpochStats) -> None:
    """``ctx.report`` one epoch, with every number it has in the learning curve (R² only when
    it is finite: NaN for a constant validation target)."""
    curve = {k: v for k, v in stats.metrics().items() if math.isfinite(v)}
    ctx.report(trial, stats.epoch, metric_of(stats, ctx.metric), **curve)


def with_defaults(hp: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters with the defaults of those its space did not draw (a conditional
    ``momentum`` in an Adam trial): what the network and the optimizer are built from."""
    return {**{k: r.default for k, r in PARAM_RULES.items() if r.default is not None}, **hp}


def classifier(trial: optuna.Trial, ctx: ObjectiveContext) -> float:
    """Train one configuration with the toolkit: init, health check, the fast loop
    (:func:`tuner.nn.training.train`), a report per epoch; return the last epoch's value."""
    hp = with_defaults(ctx.suggest(trial))
    setup = prepare_trial(trial, hp, ctx)
    check_init(setup, hp, ctx)

    def on_epoch(stats: EpochStats) -> None:
        setup.curve.append(stats)
        report_epoch(ctx, trial, stats)

    try:
        train(setup.model, setup.data, setup.cfg, on_epoch=on_epoch, generator=setup.generator)
    except Diverged as e:
        raise optuna.TrialPruned(str(e)) from None
    if ctx.multi:  # every metric of the study, by name
        return {m: measure(m, setup, ctx) for m in ctx.metrics}
    return measure(ctx.metric, setup, ctx)


def measure(metric: str, setup: TrialSetup, ctx: ObjectiveContext) -> float:
    """The trained trial's ``metric``: its last epoch's number, or the model's size
    (``n_params``) or forward time on 256 validation rows (``latency_ms``)."""
    if metric == "n_params":
        return ctx.count_params(setup.model)
    if metric == "latency_ms":
        return ctx.latency_ms(setup.model, setup.data.x_val[:256])
    return metric_of(setup.curve[-1], metric)


def metric_of(stats: EpochStats, metric: str) -> float:
    """The value of the study's ``metric`` in one epoch's statistics."""
    return stats.value(metric)


def task_of(settings: Mapping[str, Any]) -> str | None:
    """The task of validated settings, when known before the data is read."""
    dataset = settings.get("dataset", SETTINGS["dataset"])
    return known_task(dataset, settings.get("task")) if dataset in DATASETS else None


def validate_regressor(
    settings: dict[str, Any], space: SearchSpace, where: str
) -> tuple[dict[str, Any], SearchSpace]:
    """:func:`validate` with a regression's defaults (dataset ``diabetes``, task regression)."""
    return validate({"dataset": "diabetes", "task": "regression", **settings}, space, where)
