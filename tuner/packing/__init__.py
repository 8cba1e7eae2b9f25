"""Trial packing: train several trials of one architecture as one vectorised population."""

from __future__ import annotations

from tuner.packing._optim import STACKED_OPTIMIZERS, StackedOptimizer
from tuner.packing._population import MemberRun, Population, can_stack, train_population
from tuner.packing._study import optimize_claimed, optimize_packed

__all__ = [
    "STACKED_OPTIMIZERS",
    "MemberRun",
    "Population",
    "StackedOptimizer",
    "can_stack",
    "optimize_claimed",
    "optimize_packed",
    "train_population",
]
