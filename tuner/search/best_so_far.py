"""Best value so far: the curve that the report's history and ``tuner compare`` both draw."""

from __future__ import annotations

import math


def best_so_far(values: list[float | None], maximize: bool) -> list[float | None]:
    """After each of ``values`` (in trial order; ``None`` for a trial without a value), the best
    finite value up to it, ``None`` before the first."""
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is not None and math.isfinite(v) and (
            best is None or (v > best if maximize else v < best)
        ):
            best = v
        out.append(best)
    return out
