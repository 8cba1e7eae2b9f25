"""``[study] constraints`` (``["n_params <= 20000"]``): how far a trial is from satisfying each,
for Optuna's ``constraints_func`` (a value <= 0 is satisfied) and for tuner's ``feasible``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuner.core.keys import CONSTRAINT_VALUES


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
