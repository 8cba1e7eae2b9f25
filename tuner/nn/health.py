"""Init health: is a freshly initialised network able to learn at all?

One forward pass over a batch, before any training, gives a verdict. The probe watches every
weight layer (Linear/Conv, :func:`tuner.nn.models.weight_layers`) as it is called: the signal of
hidden layer k is what the next weight layer receives, so activations applied in ``forward``
(``torch.relu(self.fc1(x))``), in ``nn.Sequential`` or as modules, residual blocks and conv
nets are all seen (a conv layer's channels are its units; between two convs the signal is
taken after any pooling). ``n`` weight layers called in a chain give ``n - 1`` hidden layers.

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
``vanishing_   the gradient that reaches the first weight layer (one backward pass of the loss,
gradient``     when the caller gives the targets) is below ``vanishing_grad`` of its weights'
               norm; or it is weak (below ``weak_grad``) and, given the learning rate and
               steps of plain SGD, the whole training would move those weights by less than
               ``stalled_move`` of their norm (N(0, 0.01²) in the 2-layer quickstart net with
               lr 1e-3: activations look fine, it stays at chance; a real init at a low lr is
               the lr's problem, not the init's, and passes)
``unknown``    the probe saw no hidden layer (a single weight layer, or a forward that never
               calls one on another's output) and no dead gradient: nothing was judged
=============  ===========================================================================

The thresholds are deliberately loose (measured on an 8×64 MLP on digits, see BENCHMARKS.md):
a net flagged here ends at chance accuracy or close to it, while every borderline-but-trainable
init (e.g. U(±1/√fan_in) with ReLU at depth 8, std 7e-4, which Adam still trains) passes.
With ``[objective] prune_dead_inits = true`` (the default) ``ctx.check_init`` prunes a trial
whose init is dead (:attr:`InitHealth.dead`: every verdict but ``healthy`` and ``unknown``)
before its first epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tuner.nn.models import ACTIVATIONS, weight_layers
from tuner.nn.training import mse_loss

HEALTH_ROWS = 512  # training rows pushed through the network for the verdict
NO_HIDDEN_LAYER = ("the probe saw no hidden layer (no Linear/Conv layer received another one's "
                   "output in the forward pass), so the init could not be judged")
# Switched off while probing: a random mask would make identical units look different.
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)
SATURATION_MARGIN = 0.01  # "at a bound": within 1% of the activation's output range of it


@dataclass(frozen=True)
class HealthThresholds:
    """Where a verdict starts; stds are of activations for standardised inputs (std ~1)."""

    vanishing_std: float = 1e-5
    exploding_std: float = 1e3
    saturated_fraction: float = 0.5
    symmetric_tol: float = 1e-6  # unit spread / largest |activation| at or below this: identical
    vanishing_grad: float = 1e-3  # |grad W1| / |W1|: healthy inits measured >= 5e-3
    weak_grad: float = 0.02  # below it the init, not only the lr, holds the layer back: real
    #                          inits on a 2-layer net measured 0.05-0.1, small_normal 4e-3
    stalled_move: float = 0.02  # lr x |grad W1| / |W1| x steps: below it, trials ended <= 0.21


DEFAULT_THRESHOLDS = HealthThresholds()


@dataclass(frozen=True)
class InitHealth:
    """A verdict (one of :data:`VERDICTS`) with its reason (empty when healthy) and the
    per-layer numbers behind it."""

    verdict: str
    reason: str
    layer_std: list[float] = field(default_factory=list)
    layer_saturated: list[float] = field(default_factory=list)
    first_grad: float | None = None  # |grad W1| / |W1| of the first weight layer, when measured

    @property
    def healthy(self) -> bool:
        return self.verdict == "healthy"

    @property
    def dead(self) -> bool:
        """Whether the init cannot train (:data:`DEAD_VERDICTS`); ``unknown`` is not dead."""
        return self.verdict in DEAD_VERDICTS


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
    first_grad: float | None = None
    lr_steps: float | None = None  # learning rate x optimizer steps (plain SGD's reach)


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
    i, low = min(enumerate(s.std, start=1), key=lambda p: p[1], default=(0, math.inf))
    if low < t.vanishing_std:
        return (f"the activation std falls to {low:.2g} by hidden layer {i} "
                f"(threshold {t.vanishing_std:g}); the signal and its gradients vanish")
    return None


def _exploding(s: _Signal, t: HealthThresholds) -> str | None:
    for i, (a, std) in enumerate(zip(s.acts, s.std, strict=True), start=1):
        if not math.isfinite(std) or not torch.isfinite(a).all():
            return f"hidden layer {i} produces inf/NaN activations"
    i, high = max(enumerate(s.std, start=1), key=lambda p: p[1], default=(0, 0.0))
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


def _vanishing_gradient(s: _Signal, t: HealthThresholds) -> str | None:
    g = s.first_grad
    if g is None:
        return None
    if g < t.vanishing_grad:
        return (f"the gradient reaching the first layer is {g:.2g} of its weights' norm "
                f"(threshold {t.vanishing_grad:g}); that layer cannot learn")
    if s.lr_steps is not None and g < t.weak_grad and g * s.lr_steps < t.stalled_move:
        return (f"the gradient reaching the first layer is {g:.2g} of its weights' norm: "
                f"at this learning rate all of training moves them by ~{g * s.lr_steps:.1%} "
                f"(threshold {t.stalled_move:.0%}); the network stays where it started")
    return None


# First match wins: a zeros net is symmetric before it is "vanishing"; the gradient is judged
# last (a dead signal explains a dead gradient).
CHECKS: tuple[tuple[str, Check], ...] = (
    ("symmetric", _symmetric),
    ("exploding", _exploding),
    ("vanishing", _vanishing),
    ("saturated", _saturated),
    ("vanishing_gradient", _vanishing_gradient),
)
DEAD_VERDICTS = tuple(name for name, _ in CHECKS)
VERDICTS = ("healthy", *DEAD_VERDICTS, "unknown")


def assess(
    activations: list[torch.Tensor], activation: str,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
    first_grad: float | None = None, lr_steps: float | None = None,
) -> InitHealth:
    """The verdict for hidden-layer activations ``[(batch, units…), …]`` (input side first),
    and, when measured, the first layer's relative gradient (:func:`first_layer_gradient`);
    ``lr_steps`` (plain SGD's learning rate × its steps over the whole training) also judges
    whether that gradient can move the layer at all. No activations and no dead gradient:
    ``unknown``."""
    std = [a.float().std().item() if a.numel() > 1 else 0.0 for a in activations]
    sat = [saturated_fraction(a, activation) for a in activations]
    signal = _Signal(activations, std, sat, first_grad, lr_steps)
    for verdict, check in CHECKS:
        reason = check(signal, thresholds)
        if reason:
            return InitHealth(verdict, reason, std, sat, first_grad)
    if not activations:
        return InitHealth("unknown", NO_HIDDEN_LAYER, std, sat, first_grad)
    return InitHealth("healthy", "", std, sat, first_grad)


def first_layer_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> float | None:
    """``|grad W| / |W|`` of the first trainable weight layer of ``model`` after one backward
    pass of ``loss(model(x), y)`` (default: cross-entropy for integer ``y``, mean squared error
    otherwise); ``None`` when no weight layer trains. The model's ``.grad``s are untouched."""
    weights = [m.weight for m in weight_layers(model) if m.weight.requires_grad]
    if not weights:
        return None
    w = weights[0]
    out = model(x)
    if loss is None:
        # (b, 1) outputs against a (b,) target: compare them row by row, never broadcast
        loss = mse_loss if y.is_floating_point() else F.cross_entropy
    (grad,) = torch.autograd.grad(loss(out, y), [w], allow_unused=True)
    if grad is None:  # the first layer does not reach the loss at all
        return 0.0
    g, norm = grad.norm().item(), w.detach().norm().item()
    if not math.isfinite(g):
        return None  # an overflow: the exploding check speaks for it
    return g / norm if norm > 0 else (math.inf if g > 0 else 0.0)


def hidden_activations(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The signal of every hidden layer of ``model`` for input ``x``, input side first: the
    input of each weight layer (Linear/Conv) called after another one in the forward pass,
    which is the previous layer's output after its activation (wherever it is applied).

    The first call's input (the network's input) and an input already seen (a second branch
    reading the same tensor) are not hidden layers. A flat ``(batch, n)`` input right after a
    conv layer (``nn.Flatten``) is viewed as ``(batch, channels, n / channels)``, so its units
    are still the conv's channels. Dropout modules are off during the pass.
    """
    layers = weight_layers(model)
    seen: list[torch.Tensor] = []  # every weight layer input, kept alive so no address is reused
    calls: list[tuple[torch.Tensor | None, torch.Size | None]] = []  # (hidden input, out shape)

    def before(_m: nn.Module, args: tuple) -> None:
        a = args[0] if args and isinstance(args[0], torch.Tensor) else None
        new = a is not None and not any(
            s is a or (s.data_ptr() == a.data_ptr() and s.shape == a.shape
                       and s.stride() == a.stride()) for s in seen)
        if a is not None:
            seen.append(a)
        calls.append((a.detach() if new and calls else None, None))

    def after(_m: nn.Module, _args: tuple, out: object) -> None:
        shape = out.shape if isinstance(out, torch.Tensor) else None
        calls[-1] = (calls[-1][0], shape)

    dropouts = [m for m in model.modules() if isinstance(m, _DROPOUT_TYPES) and m.training]
    hooks = [h for m in layers for h in (m.register_forward_pre_hook(before),
                                         m.register_forward_hook(after))]
    try:
        for m in dropouts:
            m.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        for m in dropouts:
            m.train()
    hidden: list[torch.Tensor] = []
    for (a, _), (_, prev_out) in zip(calls[1:], calls, strict=False):
        if a is None:
            continue
        if (a.dim() == 2 and prev_out is not None and len(prev_out) > 2
                and prev_out[1] > 0 and a.shape[1] % prev_out[1] == 0):
            a = a.reshape(a.shape[0], prev_out[1], -1)
        hidden.append(a)
    return hidden


def init_health(
    model: nn.Module, x: torch.Tensor, activation: str,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
) -> InitHealth:
    """Push ``x (batch, features)`` through ``model`` (no gradients) and judge its init."""
    return assess(hidden_activations(model, x), activation, thresholds)
