"""Init health: is a freshly initialised network able to learn at all?

One forward pass over a batch, before any training, gives a verdict:

=============  ===========================================================================
``healthy``    none of the below
``symmetric``  every unit of some hidden layer outputs the same values (zeros/constant init):
               gradients cannot tell the units apart, so training never separates them
``vanishing``  the activation std falls below ``vanishing_std`` in some layer (N(0, 0.01²)
               in a deep net): the signal, and with it every gradient, is lost
``exploding``  the activation std grows past ``exploding_std`` (or to inf/NaN): ReLU nets with
               N(0, 1) weights; training diverges
``saturated``  more than ``saturated_fraction`` of some layer's activations sit at a squashing
               activation's bounds (tanh/sigmoid with N(0, 1) weights): their gradient is ~0
=============  ===========================================================================

The thresholds are deliberately loose (measured on an 8×64 MLP on digits, see BENCHMARKS.md):
a net flagged here ends at chance accuracy or close to it, while every borderline-but-trainable
init (e.g. U(±1/√fan_in) with ReLU at depth 8, std 7e-4, which Adam still trains) passes.
With ``[objective] prune_dead_inits = true`` (the default) the classifier prunes a trial whose
verdict is not ``healthy`` before its first epoch (``ctx.check_init``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from tuner.nn.models import ACTIVATION_TYPES, ACTIVATIONS

HEALTH_ROWS = 512  # training rows pushed through the network for the verdict
SATURATION_MARGIN = 0.01  # "at a bound": within 1% of the activation's output range of it


@dataclass(frozen=True)
class HealthThresholds:
    """Where a verdict starts; stds are of activations for standardised inputs (std ~1)."""

    vanishing_std: float = 1e-5
    exploding_std: float = 1e3
    saturated_fraction: float = 0.5
    symmetric_tol: float = 1e-6  # unit spread / largest |activation| at or below this: identical


DEFAULT_THRESHOLDS = HealthThresholds()


@dataclass(frozen=True)
class InitHealth:
    """A verdict with its reason (empty when healthy) and the per-layer numbers behind it."""

    verdict: str
    reason: str
    layer_std: list[float] = field(default_factory=list)
    layer_saturated: list[float] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.verdict == "healthy"


def saturated_fraction(a: torch.Tensor, activation: str) -> float:
    """The fraction of activations ``a`` (any shape) at the bounds of a squashing activation;
    0 for activations without bounds (ReLU & co.)."""
    bounds = ACTIVATIONS.get(activation).bounds
    if bounds is None or a.numel() == 0:
        return 0.0
    lo, hi = bounds
    margin = SATURATION_MARGIN * (hi - lo)
    return ((a <= lo + margin) | (a >= hi - margin)).float().mean().item()


def _identical_units(a: torch.Tensor, tol: float) -> bool:
    """Whether every unit (dim 1: features or channels) of ``a (batch, units, …)`` outputs the
    same values on every row."""
    if a.dim() < 2 or a.shape[1] < 2:
        return False
    a = a.reshape(a.shape[0], a.shape[1], -1).float()
    spread = (a - a[:, :1]).abs().amax().item()
    return spread <= tol * a.abs().amax().item()


@dataclass(frozen=True)
class _Signal:
    acts: list[torch.Tensor]
    std: list[float]
    saturated: list[float]


Check = Callable[[_Signal, HealthThresholds], str | None]


def _symmetric(s: _Signal, t: HealthThresholds) -> str | None:
    for i, a in enumerate(s.acts, start=1):
        # An overflowed layer (all inf/NaN) looks uniform but is exploding, not symmetric.
        if torch.isfinite(a).all() and _identical_units(a, t.symmetric_tol):
            value = a.flatten()[0].item()
            return (f"all {a.shape[1]} units of hidden layer {i} output the same values "
                    f"(e.g. {value:.3g}): identical units get identical gradients and never "
                    "separate")
    return None


def _vanishing(s: _Signal, t: HealthThresholds) -> str | None:
    i, low = min(enumerate(s.std, start=1), key=lambda p: p[1])
    if low < t.vanishing_std:
        return (f"the activation std falls to {low:.2g} by hidden layer {i} "
                f"(threshold {t.vanishing_std:g}); the signal and its gradients vanish")
    return None


def _exploding(s: _Signal, t: HealthThresholds) -> str | None:
    for i, (a, std) in enumerate(zip(s.acts, s.std, strict=True), start=1):
        if not math.isfinite(std) or not torch.isfinite(a).all():
            return f"hidden layer {i} produces inf/NaN activations"
    i, high = max(enumerate(s.std, start=1), key=lambda p: p[1])
    if high > t.exploding_std:
        return (f"the activation std grows to {high:.2g} by hidden layer {i} "
                f"(threshold {t.exploding_std:g}); training diverges")
    return None


def _saturated(s: _Signal, t: HealthThresholds) -> str | None:
    i, frac = max(enumerate(s.saturated, start=1), key=lambda p: p[1], default=(0, 0.0))
    if frac > t.saturated_fraction:
        return (f"{frac:.0%} of hidden layer {i}'s activations sit at the activation's bounds "
                f"(threshold {t.saturated_fraction:.0%}); their gradient is ~0")
    return None


# First match wins: a zeros net is symmetric before it is "vanishing".
CHECKS: tuple[tuple[str, Check], ...] = (
    ("symmetric", _symmetric),
    ("exploding", _exploding),
    ("vanishing", _vanishing),
    ("saturated", _saturated),
)
VERDICTS = ("healthy", *(name for name, _ in CHECKS))


def assess(
    activations: list[torch.Tensor], activation: str,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
) -> InitHealth:
    """The verdict for hidden-layer activations ``[(batch, units…), …]`` (input side first)."""
    std = [a.float().std().item() if a.numel() > 1 else 0.0 for a in activations]
    sat = [saturated_fraction(a, activation) for a in activations]
    signal = _Signal(activations, std, sat)
    for verdict, check in CHECKS:
        reason = check(signal, thresholds) if activations else None
        if reason:
            return InitHealth(verdict, reason, std, sat)
    return InitHealth("healthy", "", std, sat)


def hidden_activations(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every activation module of ``model`` for input ``x``, in forward order."""
    outputs: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
        for m in model.modules() if isinstance(m, ACTIVATION_TYPES)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return outputs


def init_health(
    model: nn.Module, x: torch.Tensor, activation: str,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
) -> InitHealth:
    """Push ``x (batch, features)`` through ``model`` (no gradients) and judge its init."""
    return assess(hidden_activations(model, x), activation, thresholds)
