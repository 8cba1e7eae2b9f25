"""Small SVG pictures of one trial, written as text: a learning curve and the per-layer
activation histograms of the freshly initialised network.

They are drawn by hand rather than with matplotlib because they are made inside every trial:
a matplotlib figure costs ~100 ms, longer than a whole pruned quickstart trial, while these
strings take well under a millisecond. Browsers (and the dashboard's artifact viewer) show them
as images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

FONT = "font-family='DejaVu Sans, Arial, sans-serif'"
COLORS = {"train_loss": "#1f77b4", "val_loss": "#ff7f0e", "val_accuracy": "#2ca02c"}
LABELS = {"train_loss": "train loss", "val_loss": "val loss", "val_accuracy": "val accuracy"}


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 × 10^k)."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.4g}"


class _Panel:
    """A plotting box at ``(x, y)`` of ``w × h`` pixels mapping data ranges to pixels."""

    def __init__(self, x: float, y: float, w: float, h: float,
                 xr: tuple[float, float], yr: tuple[float, float]) -> None:
        self.x, self.y, self.w, self.h = x, y, w, h
        self.xr, self.yr = xr, yr

    def px(self, v: float) -> float:
        lo, hi = self.xr
        return self.x + (v - lo) / ((hi - lo) or 1) * self.w

    def py(self, v: float) -> float:
        lo, hi = self.yr
        return self.y + self.h - (v - lo) / ((hi - lo) or 1) * self.h

    def frame(self, xticks: Sequence[float], yticks: Sequence[float], title: str) -> list[str]:
        out = [f"<rect x='{self.x:.1f}' y='{self.y:.1f}' width='{self.w:.1f}' "
               f"height='{self.h:.1f}' fill='#fafafa' stroke='#999'/>",
               f"<text x='{self.x + self.w / 2:.1f}' y='{self.y - 8:.1f}' font-size='13' "
               f"text-anchor='middle' {FONT}>{escape(title)}</text>"]
        for t in yticks:
            y = self.py(t)
            out.append(f"<line x1='{self.x:.1f}' x2='{self.x + self.w:.1f}' y1='{y:.1f}' "
                       f"y2='{y:.1f}' stroke='#e3e3e3'/>")
            out.append(f"<text x='{self.x - 5:.1f}' y='{y + 4:.1f}' font-size='10' "
                       f"text-anchor='end' {FONT}>{_fmt(t)}</text>")
        for t in xticks:
            x = self.px(t)
            out.append(f"<text x='{x:.1f}' y='{self.y + self.h + 14:.1f}' font-size='10' "
                       f"text-anchor='middle' {FONT}>{_fmt(t)}</text>")
        return out


def _svg(width: int, height: int, title: str, subtitle: str, body: list[str]) -> str:
    head = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'>"
            f"<rect width='100%' height='100%' fill='white'/>"
            f"<text x='{width / 2}' y='20' font-size='15' font-weight='bold' "
            f"text-anchor='middle' {FONT}>{escape(title)}</text>"
            f"<text x='{width / 2}' y='38' font-size='12' fill='#555' "
            f"text-anchor='middle' {FONT}>{escape(subtitle)}</text>")
    return head + "".join(body) + "</svg>\n"


def _series(panel: _Panel, values: Sequence[float], color: str, dashed: bool) -> list[str]:
    points = [(panel.px(i), panel.py(v)) for i, v in enumerate(values, start=1)
              if v is not None and math.isfinite(v)]
    dash = " stroke-dasharray='5,3'" if dashed else ""
    out = []
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(f"<polyline points='{path}' fill='none' stroke='{color}' "
                   f"stroke-width='2'{dash}/>")
    out += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{color}'/>" for x, y in points]
    return out


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def learning_curve_svg(curve: Mapping[str, Sequence[float]], title: str,
                       subtitle: str = "") -> str:
    """Loss (train, validation) and validation accuracy per epoch, side by side.

    ``curve``: ``{"train_loss": [...], "val_loss": [...], "val_accuracy": [...]}``, one value
    per finished epoch (epoch 1 first); missing keys or non-finite values are skipped.
    """
    width, height = 760, 320
    n = max((len(v) for v in curve.values()), default=0)
    if n == 0:
        msg = (f"<text x='{width / 2}' y='{height / 2}' font-size='14' text-anchor='middle' "
               f"{FONT}>no epoch finished</text>")
        return _svg(width, height, title, subtitle, [msg])
    xr = (1.0, float(max(n, 2)))
    xticks = [t for t in nice_ticks(1, max(n, 2), min(n, 6)) if float(t).is_integer()]
    body: list[str] = []
    losses = _finite([*curve.get("train_loss", []), *curve.get("val_loss", [])]) or [0.0]
    lo, hi = min(0.0, min(losses)), max(losses) * 1.05 or 1.0
    loss_panel = _Panel(60, 70, 300, 200, xr, (lo, hi))
    body += loss_panel.frame(xticks, nice_ticks(lo, hi), "loss per epoch")
    acc_panel = _Panel(440, 70, 300, 200, xr, (0.0, 1.0))
    body += acc_panel.frame(xticks, nice_ticks(0, 1, 6), "validation accuracy per epoch")
    legend_x = 60
    for key, panel in (("train_loss", loss_panel), ("val_loss", loss_panel),
                       ("val_accuracy", acc_panel)):
        values = list(curve.get(key, []))
        if not values:
            continue
        body += _series(panel, values, COLORS[key], dashed=key == "val_loss")
        body.append(f"<rect x='{legend_x}' y='300' width='14' height='4' fill='{COLORS[key]}'/>"
                    f"<text x='{legend_x + 18}' y='306' font-size='11' {FONT}>"
                    f"{LABELS[key]}</text>")
        legend_x += 130
    body.append(f"<text x='{width - 20}' y='306' font-size='11' text-anchor='end' {FONT}>"
                "epoch</text>")
    return _svg(width, height, title, subtitle, body)


def _get(stats: Any, key: str) -> Any:
    return stats[key] if isinstance(stats, Mapping) else getattr(stats, key)


def activations_svg(layers: Sequence[Any], title: str, subtitle: str = "",
                    columns: int = 5) -> str:
    """One histogram per hidden layer of the activations of a freshly initialised network,
    then the std of every layer on a log scale.

    ``layers``: :class:`tuner.nn.diagnostics.LayerStats` (or their dicts), first layer first. Each
    histogram spans its own layer's range (read the axis labels); the last cell compares the
    layers, so shrinking (vanishing), growing (exploding) or zero (symmetric) std stands out.
    """
    if not layers:
        msg = (f"<text x='210' y='80' font-size='14' text-anchor='middle' {FONT}>"
               "the network has no hidden activations</text>")
        return _svg(420, 120, title, subtitle, [msg])
    cells = len(layers) + 1  # the last one: std per layer
    cols = max(1, min(columns, cells))
    rows = math.ceil(cells / cols)
    cell_w, cell_h = 190, 150
    width, height = max(cols * cell_w + 20, 420), rows * cell_h + 70

    def box(i: int) -> tuple[float, float]:
        return 10 + (i % cols) * cell_w + 30, 56 + (i // cols) * cell_h + 34

    body: list[str] = []
    for i, layer in enumerate(layers):
        body += _histogram(layer, *box(i), cell_w - 45, cell_h - 72)
    body += _std_by_layer([_get(layer, "std") for layer in layers], *box(len(layers)),
                          cell_w - 45, cell_h - 72)
    body.append(f"<text x='{width - 10}' y='{height - 6}' font-size='9' fill='#777' "
                f"text-anchor='end' {FONT}>bar height: √count</text>")
    return _svg(width, height, title, subtitle, body)


def _histogram(layer: Any, x0: float, y0: float, w: float, h: float) -> list[str]:
    counts = list(_get(layer, "hist_counts"))
    edges = list(_get(layer, "hist_edges")) or [0.0, 1.0]
    panel = _Panel(x0, y0, w, h, (edges[0], edges[-1]), (0.0, 1.0))
    out = panel.frame([], [], f"layer {_get(layer, 'layer')}")
    out.append(f"<text x='{x0 + w / 2:.1f}' y='{y0 + h + 28:.1f}' font-size='10' "
               f"text-anchor='middle' {FONT}>mean {_fmt(_get(layer, 'mean'))} · "
               f"std {_fmt(_get(layer, 'std'))}</text>"
               f"<text x='{x0:.1f}' y='{y0 + h + 13:.1f}' font-size='9' {FONT}>"
               f"{_fmt(edges[0])}</text><text x='{x0 + w:.1f}' y='{y0 + h + 13:.1f}' "
               f"font-size='9' text-anchor='end' {FONT}>{_fmt(edges[-1])}</text>")
    # Square-root heights: a ReLU layer's spike at 0 would flatten the rest of it, while
    # tanh's pile-up at ±1 (saturation) must still stand out.
    top = math.sqrt(max(counts, default=0)) or 1
    bar_w = w / max(len(counts), 1)
    for j, c in enumerate(counts):
        if c > 0:
            bh = math.sqrt(c) / top * h
            out.append(f"<rect x='{x0 + j * bar_w:.1f}' y='{y0 + h - bh:.1f}' "
                       f"width='{max(bar_w - 0.5, 0.5):.1f}' height='{bh:.1f}' fill='#4c78a8'/>")
    return out


def _std_by_layer(stds: Sequence[float], x0: float, y0: float, w: float, h: float) -> list[str]:
    floor = 1e-12  # a zero std (a constant layer) is drawn at the bottom and labelled 0
    logs = [math.log10(max(s, floor)) if math.isfinite(s) else 0.0 for s in stds]
    lo, hi = math.floor(min(logs)), math.ceil(max(logs))
    if hi - lo < 2:
        lo, hi = lo - 1, hi + 1
    step = max(1, math.ceil((hi - lo) / 4))
    panel = _Panel(x0, y0, w, h, (0.5, len(stds) + 0.5), (lo, hi))
    out = panel.frame([], [], "std per layer (log)")
    for k in range(lo, hi + 1, step):
        y = panel.py(k)
        out.append(f"<line x1='{x0:.1f}' x2='{x0 + w:.1f}' y1='{y:.1f}' y2='{y:.1f}' "
                   f"stroke='#e3e3e3'/><text x='{x0 - 4:.1f}' y='{y + 3:.1f}' font-size='9' "
                   f"text-anchor='end' {FONT}>1e{k}</text>")
    points = [(panel.px(i), panel.py(v)) for i, v in enumerate(logs, start=1)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    out.append(f"<polyline points='{path}' fill='none' stroke='#d62728' stroke-width='2'/>")
    out += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#d62728'/>" for x, y in points]
    zero = " · std 0 drawn at 1e-12" if any(s <= floor for s in stds) else ""
    out.append(f"<text x='{x0 + w / 2:.1f}' y='{y0 + h + 13:.1f}' font-size='9' "
               f"text-anchor='middle' {FONT}>layer 1 … {len(stds)}{zero}</text>")
    return out
