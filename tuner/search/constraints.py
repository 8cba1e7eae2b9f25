"""``[study] constraints`` (``["n_params <= 20000"]``): how far a trial is from satisfying each,
for Optuna's ``constraints_func`` (a value <= 0 is satisfied) and for tuner's ``feasible``."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from tuner.core.keys import CONSTRAINT_VALUES

CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=)\s*(\S+)\s*$")


def parse_constraint(text: Any) -> tuple[str, str, float] | None:
    """``"n_params <= 20000"`` as ``("n_params", "<=", 20000.0)``; ``None`` for anything that
    is not ``METRIC <= NUMBER`` or ``METRIC >= NUMBER`` with a finite number."""
    m = CONSTRAINT_RE.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    try:
        bound = float(m.group(3))
    except ValueError:
        return None
    return (m.group(1), m.group(2), bound) if math.isfinite(bound) else None


class Constraints:
    """The constraints of a study with ``metrics`` (in the objective's order). Picklable (a
    class, not a closure): worker and ``compare`` processes build their samplers with it."""

    def __init__(self, metrics: Sequence[str], constraints: Sequence[tuple[str, str, float]]):
        self.index = [metrics.index(name) for name, _, _ in constraints]
        self.constraints = list(constraints)

    def of(self, values: Sequence[float] | None) -> list[float]:
        """Per constraint, how far ``values`` break it (<= 0: satisfied); a trial without
        values (pruned before training) breaks them all."""
        if values is None:
            return [1.0] * len(self.constraints)
        return [values[i] - bound if op == "<=" else bound - values[i]
                for i, (_, op, bound) in zip(self.index, self.constraints, strict=True)]

    def feasible(self, values: Sequence[float] | None) -> bool:
        return all(c <= 0 for c in self.of(values))

    def __call__(self, trial: Any) -> list[float]:
        """Optuna's ``constraints_func(FrozenTrial)``. Optuna calls it in the sampler's
        ``after_trial``, before it stores the trial's values (``trial.values`` is ``None``
        then): so what the trial wrote as its :data:`CONSTRAINT_VALUES` (from its values, when
        its objective returned), else :meth:`of` its values (a pruned trial: all broken)."""
        stored = trial.user_attrs.get(CONSTRAINT_VALUES)
        if isinstance(stored, list | tuple) and len(stored) == len(self.constraints):
            return [float(v) for v in stored]
        return self.of(trial.values)
