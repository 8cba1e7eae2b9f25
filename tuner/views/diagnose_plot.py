"""The textbook figure for :func:`tuner.nn.diagnostics.diagnose`: per-layer activation histograms
with the per-layer mean/std curves.

One diagnosis: a row of curves (activation mean; activation std; gradient std, log scale) above a
grid of histograms, one panel per hidden layer, all on one x range. Several: one row each, the
std curves then up to :data:`MAX_ROW_PANELS` histograms. Drawn on a bare ``Figure`` (the Agg
canvas; no pyplot, no display needed).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tuner.core.errors import ConfigError
from tuner.nn.diagnostics import Diagnosis, LayerDiagnosis

MAX_PANELS = 20  # histogram panels of one diagnosis; deeper nets show evenly spaced layers
MAX_ROW_PANELS = 10  # histogram panels per row when several diagnoses share a figure
MAX_PIXELS = 12_000  # the taller side of a figure of many rows
COLUMNS = 5
BAR = "#3b6fb6"
STD = "#c0392b"
GRAD = "#7d3c98"


def shown_layers(layers: list[LayerDiagnosis], limit: int) -> list[LayerDiagnosis]:
    """Every layer, or ``limit`` evenly spaced ones (first and last included)."""
    if len(layers) <= limit:
        return layers
    step = (len(layers) - 1) / (limit - 1)
    return [layers[round(i * step)] for i in range(limit)]


def _hist(ax: Axes, layer: LayerDiagnosis, title: bool = True) -> None:
    edges = layer.hist_edges
    widths = [b - a for a, b in itertools.pairwise(edges)]
    ax.bar(edges[:-1], layer.hist_counts, width=widths, align="edge", color=BAR, linewidth=0)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_yticks([])
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(f"layer {layer.layer}", fontsize=9)
    ax.text(0.98, 0.95, f"mean {layer.mean:.2g}\nstd {layer.std:.2g}", transform=ax.transAxes,
            ha="right", va="top", fontsize=7, color="#333333")


def _curve(ax: Axes, xs: list[int], ys: list[float], color: str, title: str,
           log: bool = False) -> None:
    ax.plot(xs, ys, "o-", color=color, markersize=4)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("layer", fontsize=8)
    ax.set_xticks(xs if len(xs) <= 12 else xs[:: math.ceil(len(xs) / 12)])
    ax.tick_params(labelsize=7)
    if log and all(y > 0 for y in ys):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _title(d: Diagnosis) -> str:
    return (f"{d.scheme} + {d.activation}: {d.depth} layers × {d.width} units, input N(0, 1), "
            f"{d.samples} samples — {d.verdict}")


def figure_one(d: Diagnosis) -> Figure:
    """The classic figure for one diagnosis."""
    shown = shown_layers(d.layers, MAX_PANELS)
    cols = min(COLUMNS, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(3.0 * max(cols, 3), 3.2 + 2.0 * rows), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.2, 2.0 * rows])
    xs = [layer.layer for layer in d.layers]
    a1, a2, a3 = top.subplots(1, 3)
    _curve(a1, xs, [layer.mean for layer in d.layers], BAR, "activation mean")
    _curve(a2, xs, [layer.std for layer in d.layers], STD, "activation std")
    # from zero, like the textbook: a flat 0.98 must not look like noise
    finite = [layer.std for layer in d.layers if math.isfinite(layer.std)]
    a2.set_ylim(0, 1.1 * max(finite, default=0.0) or 1.0)
    _curve(a3, xs, [layer.grad_std for layer in d.layers], GRAD,
           "gradient std (dL/dh, log)", log=True)
    axes = bottom.subplots(rows, cols, squeeze=False)
    for ax, layer in zip(axes.flat, shown, strict=False):
        _hist(ax, layer)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    fig.suptitle(_title(d), fontsize=12)
    return fig


def figure_many(ds: list[Diagnosis]) -> Figure:
    """One row per diagnosis: its std curves, then its layer histograms."""
    panels = max(len(shown_layers(d.layers, MAX_ROW_PANELS)) for d in ds)
    height = 1.7 * len(ds) + 0.6
    fig = Figure(figsize=(2.6 + 1.7 * panels, height), layout="constrained",
                 dpi=min(100, MAX_PIXELS / height))
    grid = fig.subplots(len(ds), panels + 1, squeeze=False,
                        gridspec_kw={"width_ratios": [1.6] + [1] * panels})
    for row, d in zip(grid, ds, strict=True):
        xs = [layer.layer for layer in d.layers]
        curve = row[0]
        curve.plot(xs, [layer.std for layer in d.layers], "o-", color=STD, markersize=3,
                   label="act std")
        curve.plot(xs, [layer.grad_std for layer in d.layers], "s--", color=GRAD,
                   markersize=3, label="grad std")
        if all(layer.std > 0 and layer.grad_std > 0 for layer in d.layers):
            curve.set_yscale("log")
        curve.tick_params(labelsize=6)
        curve.set_ylabel(f"{d.scheme}\n+ {d.activation}\n{d.verdict}", fontsize=8)
        curve.legend(fontsize=6, loc="best")
        shown = shown_layers(d.layers, MAX_ROW_PANELS)
        for ax, layer in zip(row[1:], shown, strict=False):
            _hist(ax, layer)
        for ax in row[1 + len(shown):]:
            ax.set_visible(False)
    fig.suptitle(f"activations per layer ({ds[0].depth} × {ds[0].width}, input N(0, 1))",
                 fontsize=11)
    return fig


def save_png(diagnoses: list[Diagnosis], path: str | Path) -> Path:
    """Draw ``diagnoses`` (one: :func:`figure_one`; several: :func:`figure_many`) to ``path``."""
    path = Path(path)
    fig = figure_one(diagnoses[0]) if len(diagnoses) == 1 else figure_many(diagnoses)
    try:
        fig.savefig(path, format="png", dpi=fig.dpi)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None
    return path
