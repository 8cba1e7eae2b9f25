"""Hypervolume: the space that a set of points dominates up to a reference point, the rule that
picks the reference point, and the hypervolume-so-far curve. The report of a study with
several objectives (:mod:`tuner.views.report._pareto`) and ``tuner compare`` of one
(:mod:`tuner.run.compare`) both use them.

Points are *losses*: each metric turned so that lower is better (:func:`losses`), one row per
point. Pure computation on numbers: no study, no trial.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

try:  # exact hypervolume in any dimension (WFG); private, but in Optuna 5.1 (and 3.x, 4.x)
    from optuna._hypervolume import compute_hypervolume
except ImportError:  # pragma: no cover - another Optuna: three or more metrics say so
    compute_hypervolume = None

REFERENCE_MARGIN = 0.1  # the reference point: the worst value, out by 10% of the range


def losses(values: Sequence[float], maximize: Sequence[bool]) -> list[float]:
    """One point's values turned so that lower is better in each metric."""
    return [-v if m else v for v, m in zip(values, maximize, strict=True)]


def from_losses(point: Sequence[float], maximize: Sequence[bool]) -> tuple[float, ...]:
    """A point of losses back in the metrics' own values."""
    return tuple(float(-v if m else v) for v, m in zip(point, maximize, strict=True))


def reference_losses(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference point of ``points`` (losses, at least one row): each metric's worst value
    pushed out by :data:`REFERENCE_MARGIN` of its range, or of the value itself (at least 1)
    where every point has the same value; and which metrics were flat so."""
    points = np.asarray(points, dtype=float)
    worst, best = points.max(axis=0), points.min(axis=0)
    span = worst - best
    flat = span == 0
    span = np.where(flat, np.maximum(np.abs(worst), 1.0), span)
    return worst + REFERENCE_MARGIN * span, flat


def hypervolume(losses: np.ndarray, ref: np.ndarray) -> float:
    """The hypervolume that points (losses, lower is better) dominate up to ``ref``: a sweep
    with two metrics; Optuna's exact ``compute_hypervolume`` (WFG) with more. Points outside
    the reference point's box add nothing."""
    losses = np.asarray(losses, dtype=float)
    ref = np.asarray(ref, dtype=float)
    points = losses[np.all(losses <= ref, axis=1)] if len(losses) else losses
    if not len(points):
        return 0.0
    if points.shape[1] == 2:
        points = points[np.lexsort((points[:, 1], points[:, 0]))]  # by the first, then second
        area, low = 0.0, ref[1]
        for x, y in points:
            if y < low:  # a new lowest point: the band from it up to the last one
                area += (ref[0] - x) * (low - y)
                low = y
        return float(area)
    if compute_hypervolume is None:
        raise ImportError("optuna._hypervolume.compute_hypervolume")
    return float(compute_hypervolume(points, ref))


def hypervolume_so_far(points: Sequence[Sequence[float] | None],
                       ref: np.ndarray) -> list[float | None]:
    """After each of ``points`` (losses, in trial order; ``None`` for a trial that adds no
    point: failed, pruned, infeasible), the hypervolume of the points so far up to ``ref``:
    ``None`` before the first point, then never decreasing. Only the non-dominated points are
    kept, and the volume is computed again only when a new point joins them."""
    ref = np.asarray(ref, dtype=float)
    front = np.empty((0, len(ref)))
    volume: float | None = None
    out: list[float | None] = []
    for p in points:
        point = None if p is None else np.asarray(p, dtype=float)
        joins = point is not None and bool(np.all(np.isfinite(point))) and (
            volume is None or not np.any(np.all(front <= point, axis=1)))  # not dominated
        if joins:
            front = np.vstack([front[~np.all(point <= front, axis=1)], point])
            volume = hypervolume(front, ref)
        out.append(volume)
    return out


def needs_wfg(n_metrics: int) -> bool:
    """Whether ``n_metrics`` need Optuna's WFG and this Optuna lacks it."""
    return n_metrics > 2 and compute_hypervolume is None
