"""Trial packing: train several trials of one architecture as one vectorised population."""

from __future__ import annotations

from tuner.packing import _classifier  # noqa: F401  (registers the classifier's packer)
from tuner.packing._optim import STACKED_OPTIMIZERS, StackedOptimizer
from tuner.packing._population import MemberRun, Population, can_stack, train_population
from tuner.packing._study import PACKERS, Outcome, PackSpec, optimize_claimed, optimize_packed

__all__ = [
    "PACKERS",
    "STACKED_OPTIMIZERS",
    "MemberRun",
    "Outcome",
    "PackSpec",
    "Population",
    "StackedOptimizer",
    "can_stack",
    "optimize_claimed",
    "optimize_packed",
    "train_population",
]
