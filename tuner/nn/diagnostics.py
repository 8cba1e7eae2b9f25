"""What a network's initial weights do to a signal: per-layer activation and gradient statistics.

The classic experiment behind the init schemes: push a batch through a freshly initialised
network and look at each hidden layer's activations (mean, std, histogram). Vanishing (std
shrinking layer by layer), saturation (tanh/sigmoid stuck at their limits) and symmetry (all
units identical) show up here before a single step of training.

:func:`activation_stats` measures any model on any input (the objective's per-trial pictures
use it); :func:`diagnose` runs the textbook set-up: ``depth`` hidden layers of ``width`` units,
input ``N(0, 1)`` of shape ``(samples, width)``, one backward pass of a simple loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from tuner.core.errors import ConfigError
from tuner.nn.health import assess, hidden_activations, saturated_fraction
from tuner.nn.models import ACTIVATION_TYPES, ACTIVATIONS, ModelSpec, mlp, weight_layers
from tuner.nn.schemes import SCHEMES, random_schemes

MAX_DIAGNOSE_BYTES = 4 * 2**30  # what one diagnose run may allocate (weights + activations)
DATA_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one hidden layer's activations ``(batch, units…)``; ``layer`` counts from 1.

    ``hist_counts``/``hist_edges``: a histogram over ``bins`` equal bins (edges has one more).
    """

    layer: int
    mean: float
    std: float
    hist_counts: list[int] = field(default_factory=list)
    hist_edges: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def layer_stats(
    i: int, a: torch.Tensor, bins: int = 30, hist_range: tuple[float, float] | None = None
) -> LayerStats:
    """Mean, std and histogram of hidden layer ``i``'s activations ``a (batch, units…)``."""
    flat = a.float().flatten()
    finite = flat[torch.isfinite(flat)]  # an exploding init overflows to inf/NaN
    if hist_range is not None:
        lo, hi = hist_range
    elif finite.numel():
        lo, hi = finite.min().item(), finite.max().item()
    else:
        lo, hi = 0.0, 0.0
    if hi <= lo:  # a constant layer (zeros init, dead ReLUs): one bin around the value
        lo, hi = lo - 0.5, hi + 0.5
    # NaN counts in the lowest bin, ±inf in the end bins, so every unit is still counted.
    shown = flat.nan_to_num(nan=lo, posinf=hi, neginf=lo).clamp(lo, hi)
    counts = torch.histc(shown, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return LayerStats(i, flat.mean().item(), flat.std().item(),
                      [int(c) for c in counts.tolist()], edges.tolist())


def activation_stats(
    model: nn.Module,
    x: torch.Tensor,
    bins: int = 30,
    hist_range: tuple[float, float] | None = None,
) -> list[LayerStats]:
    """Mean, std and histogram of each hidden layer's activations for input ``x (batch, d)``.

    Each histogram spans its own layer's min..max unless ``hist_range`` gives one shared range
    (values outside it land in the end bins), which is what makes layers comparable in a figure.
    """
    return [layer_stats(i, a, bins, hist_range)
            for i, a in enumerate(hidden_activations(model, x), start=1)]


# --------------------------------------------------------------------------- the classic run
@dataclass(frozen=True)
class LayerDiagnosis:
    """One hidden layer in :func:`diagnose` (``layer`` counts from 1, input side first).

    ``grad_*``: the loss gradient with respect to this layer's activations ``(samples, width)``;
    ``weight_grad_std``: the std of the gradient of its weight ``(width, fan_in)``;
    ``saturated``: the fraction of activations at a squashing activation's bounds (else 0).
    """

    layer: int
    mean: float
    std: float
    grad_mean: float
    grad_std: float
    weight_grad_std: float
    saturated: float
    hist_counts: list[int]
    hist_edges: list[float]


@dataclass(frozen=True)
class Diagnosis:
    """The classic experiment for one (scheme, activation): every hidden layer plus a verdict
    (see :mod:`tuner.nn.health`)."""

    scheme: str
    activation: str
    depth: int
    width: int
    samples: int
    seed: int
    layers: list[LayerDiagnosis]
    verdict: str
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def estimate_bytes(depth: int, width: int, samples: int) -> int:
    """Memory of one :func:`diagnose` run, float32: weights and their gradients, and per layer
    the pre-activations, activations and both their gradients for ``samples`` rows."""
    params = depth * width * (width + 1)
    return 4 * (2 * params + 4 * depth * samples * width + samples * width)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def check_diagnose_args(scheme: str, activation: str, depth: int, width: int,
                        samples: int, bins: int = 30) -> None:
    """Raise :class:`ConfigError` for an unknown name, a size below its minimum, or a network
    too large for memory (the message shows the estimate)."""
    if SCHEMES.get(scheme).from_checkpoint:
        raise ConfigError(
            f"diagnose draws random weights; init scheme {scheme!r} loads them from a checkpoint "
            f"(valid here: {', '.join(random_schemes())}, or all)"
        )
    ACTIVATIONS.get(activation)
    for name, value, low in (("depth", depth, 1), ("width", width, 1), ("samples", samples, 2),
                             ("bins", bins, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
    need = estimate_bytes(depth, width, samples)
    if need > MAX_DIAGNOSE_BYTES:
        raise ConfigError(
            f"depth {depth} x width {width} with {samples} samples needs about {_human(need)} "
            f"(weights, activations and gradients); the limit is {_human(MAX_DIAGNOSE_BYTES)}: "
            "lower --depth, --width or --samples"
        )


def probe_network(depth: int, width: int, activation: str) -> nn.Sequential:
    """``depth`` × (``Linear(width, width)`` + activation), no head: the textbook network."""
    spec = ModelSpec(n_features=width, n_classes=1, image_shape=None, depth=depth, width=width,
                     activation=activation)
    return nn.Sequential(*list(mlp(spec))[:-1])


def diagnose(
    scheme: str,
    activation: str,
    depth: int = 10,
    width: int = 500,
    samples: int = 1000,
    seed: int = 0,
    bins: int = 30,
) -> Diagnosis:
    """Run the classic experiment for one init scheme and activation.

    Input ``x ~ N(0, 1)`` of shape ``(samples, width)``; the loss is ``L = Σ ⟨h_depth, r⟩`` with a
    fixed ``r ~ N(0, 1)`` of the same shape, so the top layer receives a unit-variance gradient and
    ``grad_std`` at layer ``l`` is the backward gain from the top down to ``l``. Histograms share
    one range (a squashing activation's bounds, else the min..max over all layers) so shrinking
    and saturation show from panel to panel. Seeded: the same arguments give the same numbers.
    """
    check_diagnose_args(scheme, activation, depth, width, samples, bins)
    # The weights come from the global RNG seeded with ``seed``; the data must not (the same
    # stream would make the first rows of x copies of the first weight rows).
    gen = torch.Generator().manual_seed(seed + DATA_SEED_OFFSET)
    x = torch.randn(samples, width, generator=gen)
    r = torch.randn(samples, width, generator=gen)
    net = probe_network(depth, width, activation)
    with torch.random.fork_rng(devices=[]):  # schemes draw from the global RNG; leave it as found
        torch.manual_seed(seed)
        SCHEMES.get(scheme).apply(net, activation)

    outs: list[torch.Tensor] = []

    def keep(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        out.retain_grad()
        outs.append(out)

    hooks = [m.register_forward_hook(keep) for m in net if isinstance(m, ACTIVATION_TYPES)]
    try:
        (net(x) * r).sum().backward()
    finally:
        for h in hooks:
            h.remove()

    acts = [o.detach() for o in outs]
    bounds = ACTIVATIONS.get(activation).bounds
    if bounds is None:
        bounds = (min(a.min().item() for a in acts), max(a.max().item() for a in acts))
    layers = []
    for i, (a, out, lin) in enumerate(zip(acts, outs, weight_layers(net), strict=True), start=1):
        stats = layer_stats(i, a, bins, bounds)
        grad, wgrad = out.grad, lin.weight.grad
        layers.append(LayerDiagnosis(
            layer=i, mean=stats.mean, std=stats.std,
            grad_mean=grad.mean().item(), grad_std=grad.std().item(),
            weight_grad_std=wgrad.std().item(),
            saturated=saturated_fraction(a, activation),
            hist_counts=stats.hist_counts, hist_edges=stats.hist_edges,
        ))
    health = assess(acts, activation)
    return Diagnosis(scheme, activation, depth, width, samples, seed, layers,
                     health.verdict, health.reason)


def expand(value: str, names: list[str]) -> list[str]:
    """``"all"`` -> every name; ``"a,b"`` -> ``["a", "b"]``; a single name -> ``[name]``."""
    if value.strip() == "all":
        return list(names)
    return [v.strip() for v in value.split(",") if v.strip()]


def diagnose_many(
    schemes: str, activations: str, **kwargs: int
) -> list[Diagnosis]:
    """:func:`diagnose` for every combination; ``schemes``/``activations`` are a name, a
    comma-separated list, or ``all`` (every random scheme / every activation). Every name and
    size is checked before the first run."""
    combos = [(s, a) for s in expand(schemes, random_schemes())
              for a in expand(activations, ACTIVATIONS.names())]
    if not combos:
        raise ConfigError("name at least one init scheme and one activation")
    for s, a in combos:
        check_diagnose_args(s, a, kwargs.get("depth", 10), kwargs.get("width", 500),
                            kwargs.get("samples", 1000), kwargs.get("bins", 30))
    return [diagnose(s, a, **kwargs) for s, a in combos]
