"""The built-in classifier, packed: K trials of one architecture and batch size as one population.

Each member is set up exactly as :func:`tuner.objectives.classifier.classifier` sets up a trial
(same seed, same init, same health check, same pictures, same user attributes), so a packed
member reaches the result of the same trial run alone; only the training loop differs
(:func:`tuner.packing.train_population` instead of :func:`tuner.training.train`). Keep the two
in step: ``tests/test_packing.py`` runs one study both ways and compares every trial.

Members may differ in ``lr``, ``weight_decay`` and ``init`` (any scheme that draws weights); all
other parameters must match. Knobs that only act on ``init = "pretrained"`` are ignored for the
others, so they do not split groups.
"""

from __future__ import annotations

from typing import Any

import optuna
import torch

from tuner import artifacts, finetune, health
from tuner.cadence import trial_report_steps
from tuner.device import resolve_device
from tuner.init import SCHEMES
from tuner.models import MODELS, ModelSpec
from tuner.objectives import ObjectiveContext
from tuner.objectives.classifier import _load, _metric
from tuner.packing._optim import STACKED_OPTIMIZERS
from tuner.packing._population import can_stack, train_population
from tuner.packing._study import PACKERS, Outcome, PackSpec
from tuner.training import EpochStats, TrainConfig

PER_MEMBER = ("lr", "weight_decay", "init")
SHARED = ("batch_size", "activation", "optimizer", "momentum", "depth", "width")
PRETRAINED_ONLY = tuple(finetune.PARAM_RULES)  # inert unless the init loads a checkpoint


def group_key(hp: dict[str, Any], ctx: ObjectiveContext) -> tuple | None:
    """What members of one population share, or ``None`` when this trial cannot be packed."""
    unknown = set(hp) - {*PER_MEMBER, *SHARED, *PRETRAINED_ONLY}
    scheme = SCHEMES.get(hp["init"])
    if unknown or getattr(scheme, "from_checkpoint", False):
        return None
    if hp["optimizer"] not in STACKED_OPTIMIZERS:
        return None
    return tuple(hp[k] for k in SHARED)


def train_members(
    members: list[tuple[optuna.Trial, dict[str, Any]]], ctx: ObjectiveContext
) -> dict[int, Outcome]:
    """Train ``members`` (trial, params) of one group together; see the module doc."""
    s = ctx.settings
    device = resolve_device(s["device"])
    key = f"data:{device}"  # the classifier's own cache entry: one copy of the data
    if key not in ctx.cache:
        ctx.cache[key] = _load(s, seed=ctx.seed, device=device)
    data = ctx.cache[key]
    outcomes: dict[int, Outcome] = {}
    live: list[dict[str, Any]] = []
    for trial, hp in members:
        seed = ctx.trial_seed(trial)
        torch.manual_seed(seed)
        generator = torch.Generator(device=device).manual_seed(seed)
        spec = ModelSpec(data.n_features, data.n_classes, data.image_shape, hp["depth"],
                         hp["width"], hp["activation"])
        model = finetune.init_model(MODELS.get(s["model"])(spec), hp, s).to(device)
        pictures = artifacts.TrialPictures.capture(trial, ctx, model, data.x_val, hp)
        cfg = TrainConfig(lr=hp["lr"], batch_size=hp["batch_size"], epochs=s["epochs"],
                          optimizer=hp["optimizer"], weight_decay=hp["weight_decay"],
                          momentum=hp["momentum"])
        if trial.user_attrs.get("batch_size") != cfg.batch_size:
            trial.set_user_attr("batch_size", cfg.batch_size)
        member = {"trial": trial, "model": model, "cfg": cfg, "generator": generator,
                  "pictures": pictures, "curve": []}
        try:
            health.check_trial_init(trial, model, data, hp["activation"], ctx.metric,
                                    s["prune_dead_inits"])
        except optuna.TrialPruned as e:
            _finish(member, f"{e}")
            outcomes[trial.number] = Outcome(pruned=True)
            continue
        live.append(member)
    if not live or not can_stack([m["model"] for m in live]):
        return outcomes  # the rest run alone
    steps = trial_report_steps(live[0]["trial"], s["epochs"])

    def on_epoch(k: int, stats: EpochStats) -> bool:
        member = live[k]
        member["curve"].append(stats)
        if stats.epoch in steps:
            trial = member["trial"]
            trial.report(_metric(stats, ctx.metric), stats.epoch)
            if trial.should_prune():
                member["reason"] = f"pruned after epoch {stats.epoch}"
                return False
        return True

    runs = train_population([m["model"] for m in live], data, [m["cfg"] for m in live],
                            [m["generator"] for m in live], on_epoch)
    for member, run in zip(live, runs, strict=True):
        number = member["trial"].number
        if run.diverged is not None:
            _finish(member, str(run.diverged))
            outcomes[number] = Outcome(pruned=True)
        elif run.stopped:
            _finish(member, member["reason"])
            outcomes[number] = Outcome(pruned=True)
        else:
            _finish(member, None)
            outcomes[number] = Outcome(value=_metric(run.history[-1], ctx.metric))
    return outcomes


def _finish(member: dict[str, Any], prune_reason: str | None) -> None:
    """The classifier's last writes: why it was pruned, the learning curve, the pictures."""
    trial = member["trial"]
    if prune_reason is not None:
        trial.set_user_attr("prune_reason", prune_reason)
    curve: list[EpochStats] = member["curve"]
    history = {
        "train_loss": [c.train_loss for c in curve],
        "val_loss": [c.val_loss for c in curve],
        "val_accuracy": [c.val_accuracy for c in curve],
    }
    trial.set_user_attr("curve", history)
    member["pictures"].save(history)


PACKERS.add("classifier", PackSpec(key=group_key, train=train_members))
