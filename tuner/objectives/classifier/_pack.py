"""The built-in classifier, packed: K trials of one architecture and batch size as one population.

Each member is set up, checked, reported and finished as the classifier does it alone
(``prepare_trial``, ``check_init``, ``report_epoch``, ``ctx.finish_trial``: same seed, init,
health check, pictures and user attributes), so a packed member reaches the result of the same
trial run alone; only the training loop differs
(:func:`tuner.nn.population.train_population` instead of :func:`tuner.nn.training.train`).
``tests/unit/nn/test_packing.py`` runs one study both ways and compares every trial.

Members may differ in ``lr``, ``weight_decay`` and ``init`` (any scheme that draws weights); all
other parameters must match. Knobs that only act on ``init = "pretrained"`` are ignored for the
others, and ``momentum`` for optimisers without it (Adam, AdamW), so they do not split groups.

A population needs about K times the memory of one member, which the batch-size fit (made for
one) does not plan for: a population that runs out of GPU memory before its first epoch is
split in halves, each trained on its own (and split again if need be), rather than failing
every member; a lone member that does not fit fails as it would alone.
"""

from __future__ import annotations

from typing import Any

import optuna
import torch

from tuner.nn.models import MODELS
from tuner.nn.population import MemberHook, MemberRun, can_stack, train_population
from tuner.nn.schemes import SCHEMES
from tuner.nn.stacked_optim import STACKED_OPTIMIZERS
from tuner.nn.training import EpochStats
from tuner.objectives import Outcome
from tuner.objectives.classifier import _finetune
from tuner.objectives.classifier._objective import (
    TrialSetup,
    check_init,
    metric_of,
    model_spec,
    prepare_trial,
    report_epoch,
    with_defaults,
)
from tuner.objectives.context import ObjectiveContext

PER_MEMBER = ("lr", "weight_decay", "init")
SHARED = ("batch_size", "activation", "optimizer", "depth", "width")
MOMENTUM = "momentum"  # shared where the optimizer uses it
PRETRAINED_ONLY = tuple(_finetune.PARAM_RULES)  # inert unless the init loads a checkpoint


def group_key(hp: dict[str, Any], ctx: ObjectiveContext) -> tuple | None:
    """What members of one population share, or ``None`` when this trial cannot be packed."""
    hp = with_defaults(hp)
    unknown = set(hp) - {*PER_MEMBER, *SHARED, MOMENTUM, *PRETRAINED_ONLY}
    scheme = SCHEMES.get(hp["init"])
    if unknown or getattr(scheme, "from_checkpoint", False):
        return None
    if hp["optimizer"] not in STACKED_OPTIMIZERS or not _stackable(hp, ctx):
        return None
    momentum = hp[MOMENTUM] if STACKED_OPTIMIZERS.get(hp["optimizer"]).uses_momentum else None
    return (*(hp[k] for k in SHARED), momentum)


def _stackable(hp: dict[str, Any], ctx: ObjectiveContext) -> bool:
    """Whether the study's model in this architecture can train as a population
    (:func:`can_stack`: no buffers, nothing frozen); decided once per architecture, on a model
    built without memory."""
    name = ctx.settings["model"]
    key = f"stackable:{name}:{hp['depth']}:{hp['width']}:{hp['activation']}"
    if key not in ctx.cache:
        spec = model_spec(ctx.load_data(), hp)  # outside the meta context: it may load the data
        with torch.device("meta"):
            model = MODELS.get(name)(spec)
        ctx.cache[key] = can_stack([model])
    return ctx.cache[key]


def train_members(
    members: list[tuple[optuna.Trial, dict[str, Any]]], ctx: ObjectiveContext,
    outcomes: dict[int, Outcome],
) -> None:
    """Train ``members`` (trial, params) of one group together; see the module doc. A member
    whose setup fails, fails alone, as it would run alone."""
    live: list[TrialSetup] = []
    for trial, drawn in members:
        hp = with_defaults(drawn)
        try:
            setup = prepare_trial(trial, hp, ctx)
            check_init(setup, hp, ctx)
        except optuna.TrialPruned as e:
            ctx.finish_trial(trial, str(e))
            outcomes[trial.number] = Outcome(pruned=True)
            continue
        except Exception as e:
            ctx.finish_trial(trial)
            outcomes[trial.number] = Outcome(error=e)
            continue
        live.append(setup)
    if not live:
        return
    reasons: dict[int, str] = {}

    def on_epoch(k: int, stats: EpochStats) -> bool:
        try:
            report_epoch(ctx, live[k].trial, stats)
        except optuna.TrialPruned as e:
            reasons[k] = str(e)
            return False
        return True

    try:
        runs = train_in_parts(live, on_epoch)
    except BaseException:
        for member in live:  # what the sequential loop does for a failing objective
            ctx.finish_trial(member.trial)
        raise  # the live members fail with this error (tuner.run.packed)
    for k, (member, run) in enumerate(zip(live, runs, strict=True)):
        number = member.trial.number
        if run.diverged is not None:
            ctx.finish_trial(member.trial, str(run.diverged))
            outcomes[number] = Outcome(pruned=True)
        elif run.stopped:
            ctx.finish_trial(member.trial, reasons[k])
            outcomes[number] = Outcome(pruned=True)
        else:
            ctx.finish_trial(member.trial)
            outcomes[number] = Outcome(value=metric_of(run.history[-1], ctx.metric))


def train_in_parts(setups: list[TrialSetup], on_epoch: MemberHook) -> list[MemberRun]:
    """:func:`train_population` of ``setups``; one that runs out of memory before any member's
    first epoch is reported is split in halves, each trained alone from the same state (the
    members' generators are wound back), so a pack larger than the device holds still trains.
    ``on_epoch`` gets each member's position in ``setups``."""
    states = [m.generator.get_state() for m in setups]
    try:
        return train_population([m.model for m in setups], setups[0].data,
                                [m.cfg for m in setups], [m.generator for m in setups],
                                on_epoch, [m.curve for m in setups])
    except torch.OutOfMemoryError:
        if len(setups) == 1 or any(m.curve for m in setups):
            raise  # one member alone, or epochs already reported: fail as it is
    # out of the handler: its traceback no longer holds the population's tensors
    for member, state in zip(setups, states, strict=True):
        member.generator.set_state(state)
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    half = len(setups) // 2
    return [*train_in_parts(setups[:half], on_epoch),
            *train_in_parts(setups[half:], lambda k, stats: on_epoch(half + k, stats))]
