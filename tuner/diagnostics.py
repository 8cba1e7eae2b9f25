"""What a network's initial weights do to a signal: per-layer activation statistics.

The classic experiment behind the init schemes: push a batch through a freshly initialised
network and look at each hidden layer's activations (mean, std, histogram). Vanishing (std
shrinking layer by layer), saturation (tanh/sigmoid stuck at their limits) and symmetry (all
units identical) show up here before a single step of training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from tuner.models import ACTIVATION_TYPES


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


def activation_stats(model: nn.Module, x: torch.Tensor, bins: int = 30) -> list[LayerStats]:
    """Mean, std and histogram of each hidden layer's activations for input ``x (batch, d)``."""
    stats = []
    for i, a in enumerate(hidden_activations(model, x), start=1):
        flat = a.float().flatten()
        lo, hi = flat.min().item(), flat.max().item()
        if hi <= lo:  # a constant layer (zeros init, dead ReLUs): one bin around the value
            lo, hi = lo - 0.5, hi + 0.5
        counts = torch.histc(flat, bins=bins, min=lo, max=hi)
        edges = torch.linspace(lo, hi, bins + 1)
        stats.append(LayerStats(i, flat.mean().item(), flat.std().item(),
                                [int(c) for c in counts.tolist()], edges.tolist()))
    return stats
