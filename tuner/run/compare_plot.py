"""``tuner compare``'s picture: best-so-far (with several metrics: hypervolume so far) against
trials, per sampler."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any


def plot(c: Any, path: Path) -> None:
    """Best-so-far vs trials of ``c``, a :class:`tuner.run.compare.Comparison` (not imported:
    compare imports this module): the median over seeds per sampler, the quartiles as a band.
    With several metrics, the hypervolume so far, its y label naming them and the reference
    point.
    Drawn on a bare ``Figure``: the caller's matplotlib backend and pyplot state stay as
    they are."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.subplots()
    # Runs differ in length: a failed trial is a trial spent on top of the budget, and a run
    # the loop gave up on ends early. Each curve is padded with NaN (no trial there) to the
    # longest; a run that completed no trial is all NaN, and draws nothing.
    length = max([c.n_trials, *(len(r.best) for r in c.runs)])
    x = np.arange(1, length + 1)
    shown: list[np.ndarray] = []
    for i, sampler in enumerate(c.samplers):
        rows = [[math.nan if b is None else b for b in c.curve(r)] +
                [math.nan] * (length - len(r.best)) for r in c.runs if r.sampler == sampler]
        if not rows:
            continue
        curves = np.array(rows, dtype=float)
        with warnings.catch_warnings():  # all-NaN columns before a first complete trial
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(curves, axis=0)
            low, high = np.nanpercentile(curves, [25, 75], axis=0)
        label = f"{sampler} (median of {len(rows)})" if np.isfinite(curves).any() else \
            f"{sampler} (no complete trial)"
        # Samplers share their random start-up trials (same seeds), so curves overlap: the
        # line styles keep each visible.
        (line,) = ax.plot(x, median, label=label, lw=2,
                          ls=("-", "--", ":", "-.")[i % 4], drawstyle="steps-post")
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, lw=0, step="post")
        shown.append(curves[:, c.n_trials // 5:])
    if math.isfinite(c.target):  # nan: no run completed a trial
        ax.axhline(c.target, color="0.3", ls="--", lw=1, label=f"target {c.target:.4g}")
    # Zoom on where samplers differ: the first trials' poor values would flatten the rest.
    values = np.concatenate([v.ravel() for v in shown] + [np.array([c.target])])
    values = values[np.isfinite(values)]
    if values.size:
        lo, hi = np.percentile(values, [5, 100] if c.direction == "maximize" else [0, 95])
        pad = 0.08 * (hi - lo) or 0.01
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("trials spent (failed ones too)")
    if c.multi:  # by hypervolume: name what it measures, and from where (a line each)
        lines = ["hypervolume so far" + (" (feasible trials)" if c.constraints else "")]
        refs = c.reference or [None] * len(c.metrics)
        for m, d, v in zip(c.metrics, c.directions, refs, strict=True):
            lines.append(f"{m} {'↑' if d == 'maximize' else '↓'}" +
                         ("" if v is None else f", reference point {v:.4g}"))
        if c.reference is None:
            lines.append("no reference point: no feasible trial")
        ax.set_ylabel("\n".join(lines), fontsize=8)
    else:
        ax.set_ylabel(f"best {c.metric} so far")
    ax.set_title(f"{c.study}: samplers compared (band: 25–75% of seeds)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if c.direction == "maximize" else "upper right")
    fig.tight_layout()
    fig.savefig(path)
