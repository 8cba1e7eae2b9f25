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
PALETTE = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
           "#2ca02c", "#ff7f0e", "#1f77b4")  # for any other name, in the order it was stored
TITLES = {"val_accuracy": "validation accuracy"}
LOSS_SUFFIX = "_loss"
MAX_PANELS = 6  # three rows of two
PANEL_W, PANEL_H = 290, 190


LOG_SPAN = 100.0  # more than two decades: a log axis (the pictures and the report agree)


def wants_log_axis(values: Sequence[float]) -> bool:
    """Whether a plot of ``values`` (a metric, a loss) needs a log axis: its finite values are
    all positive and span more than two decades (max / min > :data:`LOG_SPAN`), so that one
    diverged trial or first epoch (33 000) would flatten every good value (100-300)."""
    finite = _finite(values)
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > LOG_SPAN


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

    def frame(self, xticks: Sequence[float], yticks: Sequence[float], title: str,
              ylabels: Sequence[str] | None = None) -> list[str]:
        out = [f"<rect x='{self.x:.1f}' y='{self.y:.1f}' width='{self.w:.1f}' "
               f"height='{self.h:.1f}' fill='#fafafa' stroke='#999'/>",
               f"<text x='{self.x + self.w / 2:.1f}' y='{self.y - 8:.1f}' font-size='13' "
               f"text-anchor='middle' {FONT}>{escape(title)}</text>"]
        for t, text in zip(yticks, ylabels or [_fmt(t) for t in yticks], strict=True):
            y = self.py(t)
            out.append(f"<line x1='{self.x:.1f}' x2='{self.x + self.w:.1f}' y1='{y:.1f}' "
                       f"y2='{y:.1f}' stroke='#e3e3e3'/>")
            out.append(f"<text x='{self.x - 5:.1f}' y='{y + 4:.1f}' font-size='10' "
                       f"text-anchor='end' {FONT}>{text}</text>")
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


def _series(panel: _Panel, values: Sequence[float], color: str, dashed: bool,
            log: bool = False) -> list[str]:
    points = [(panel.px(i), panel.py(math.log10(v) if log else v))
              for i, v in enumerate(values, start=1)
              if v is not None and math.isfinite(v) and (v > 0 or not log)]
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


def curve_panels(curve: Mapping[str, Sequence[float]],
                 metric: str | None = None) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """How :func:`learning_curve_svg` groups a trial's curves: ``([(kind, names)], not_drawn)``.

    ``kind`` is ``"loss"`` (every name ending in ``_loss``; the metric too when it is one),
    ``"metric"`` (the study's ``metric``, with every other name whose finite values overlap its
    range: ``val_f1`` beside ``val_accuracy``) or ``"other"`` (the rest, grouped the same way:
    ``val_mae`` with ``val_rmse``, ``val_r2`` alone). A name without a finite value draws no
    panel; past :data:`MAX_PANELS` panels the names are listed in ``not_drawn``."""
    names = [k for k, v in curve.items() if _finite(v)]
    losses = [k for k in names if k.endswith(LOSS_SUFFIX)]
    panels: list[tuple[str, list[str]]] = [("loss", losses)] if losses else []
    ranges: list[tuple[float, float] | None] = [None] if losses else []
    if metric in names and metric not in losses:
        panels.append(("metric", [metric]))
        ranges.append(_range(curve[metric]))
    not_drawn = []
    for name in names:
        if name in losses or name == metric:
            continue
        lo, hi = _range(curve[name])
        fits = [i for i, r in enumerate(ranges) if r is not None and lo <= r[1] and r[0] <= hi]
        if fits:
            i = fits[0]
            panels[i][1].append(name)
            ranges[i] = (min(lo, ranges[i][0]), max(hi, ranges[i][1]))
        elif len(panels) < MAX_PANELS:
            panels.append(("other", [name]))
            ranges.append((lo, hi))
        else:
            not_drawn.append(name)
    return panels, not_drawn


def _range(values: Sequence[float]) -> tuple[float, float]:
    finite = _finite(values)
    return min(finite), max(finite)


def _title(kind: str, names: list[str]) -> str:
    if kind == "loss":
        return "loss per epoch"
    what = " · ".join(TITLES.get(n, n) for n in names)
    return f"{what if len(what) <= 34 else 'other curves'} per epoch"


def _y_axis(values: list[float], loss: bool) -> tuple[tuple[float, float], list[float], bool]:
    """The y range, its ticks and whether it is a log axis (drawn as log10 of the values):
    log when the values span more than two decades (:func:`wants_log_axis`),
    0 to 1 for fractions (accuracy), else from 0 (or below the lowest value) to the highest."""
    if wants_log_axis(values):
        lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
        step = max(1, math.ceil((hi - lo) / 5))
        return (float(lo), float(hi)), [float(k) for k in range(lo, hi + 1, step)], True
    mn, mx = min(values), max(values)
    if not loss and mn >= 0 and mx <= 1:
        return (0.0, 1.0), nice_ticks(0, 1, 6), False
    lo, hi = min(0.0, mn), max(0.0, mx)
    pad = 0.05 * (hi - lo) or 1.0
    lo, hi = (lo - pad if mn < 0 else lo), (hi + pad if mx > 0 else hi)
    return (lo, hi), nice_ticks(lo, hi), False


def learning_curve_svg(curve: Mapping[str, Sequence[float]], title: str,
                       subtitle: str = "", metric: str | None = None) -> str:
    """The curves a trial reported, per epoch, in up to :data:`MAX_PANELS` panels
    (:func:`curve_panels`): the losses, the study's ``metric`` (``val_accuracy``, ``val_mse``
    …; in the losses' panel when it is a loss) and any other stored name.

    ``curve``: ``{name: [one value per finished epoch, epoch 1 first]}`` (the trial's ``curve``
    user attribute); non-finite values are skipped, and a panel without data is left out. A
    panel whose values span more than two decades has a log y axis, named on its axis label.
    """
    width = 760
    n = max((len(v) for v in curve.values()), default=0)
    panels, not_drawn = curve_panels(curve, metric)
    if not panels:
        msg = "no epoch finished" if n == 0 else "no finite value was reported"
        return _svg(width, 320, title, subtitle, [
            f"<text x='{width / 2}' y='160' font-size='14' text-anchor='middle' {FONT}>"
            f"{msg}</text>"])
    xr = (1.0, float(max(n, 2)))
    xticks = [t for t in nice_ticks(1, max(n, 2), min(n, 6)) if float(t).is_integer()]
    palette = iter(PALETTE)
    colors = {k: COLORS.get(k) or next(palette, "#333") for _, names in panels for k in names}
    legends = [_legend(names, metric) for _, names in panels]
    body: list[str] = []
    y0 = bottom = 70.0
    for row in range(0, len(panels), 2):
        lines = max(len(lg) for lg in legends[row:row + 2])
        for col, (kind, names) in enumerate(panels[row:row + 2]):
            x0 = 75 + col * 380
            values = [v for k in names for v in _finite(curve[k])]
            yr, yticks, log = _y_axis(values, kind == "loss")
            panel = _Panel(x0, y0, PANEL_W, PANEL_H, xr, yr)
            body += panel.frame(xticks, yticks, _title(kind, names),
                                [_power(int(t)) for t in yticks] if log else None)
            label = "loss" if kind == "loss" else (" · ".join(names)
                                                  if len(names) == 1 else "value")
            label += " (log scale)" if log else ""
            cy = y0 + PANEL_H / 2
            body.append(f"<text x='{x0 - 60}' y='{cy:.1f}' font-size='11' text-anchor='middle' "
                        f"transform='rotate(-90 {x0 - 60} {cy:.1f})' {FONT}>"
                        f"{escape(label)}</text>")
            body.append(f"<text x='{x0 + PANEL_W / 2}' y='{y0 + PANEL_H + 28:.1f}' "
                        f"font-size='11' fill='#555' text-anchor='middle' {FONT}>epoch</text>")
            for name in names:
                body += _series(panel, curve[name], colors[name],
                                dashed=kind == "loss" and name.startswith("val"), log=log)
            for i, line in enumerate(legends[row + col]):
                body += [_legend_entry(x0 + dx, y0 + PANEL_H + 46 + 16 * i, colors[name], text)
                         for dx, name, text in line]
        bottom = y0 + PANEL_H + 46 + 16 * (lines - 1) + 14  # below the last legend line
        y0 = bottom + 50
    if not_drawn:
        body.append(f"<text x='20' y='{bottom + 8:.1f}' font-size='11' fill='#555' {FONT}>"
                    f"also stored, not drawn: {escape(', '.join(not_drawn))}</text>")
        bottom += 22
    return _svg(width, int(bottom), title, subtitle, body)


def _power(k: int) -> str:
    return f"{10.0 ** k:g}" if -3 <= k <= 5 else f"1e{k}"


def _legend(names: list[str], metric: str | None) -> list[list[tuple[float, str, str]]]:
    """A panel's legend as lines of ``(x offset, name, text)``, wrapped to the panel's width
    (about 6 px per character)."""
    lines: list[list[tuple[float, str, str]]] = [[]]
    dx = 0.0
    for name in names:
        text = f"{name} (the study's metric)" if name == metric else name
        w = 24 + 6.2 * len(text)
        if dx and dx + w > PANEL_W + 20:
            lines.append([])
            dx = 0.0
        lines[-1].append((dx, name, text))
        dx += w + 10
    return lines


def _legend_entry(x: float, y: float, color: str, text: str) -> str:
    return (f"<rect x='{x:.1f}' y='{y:.1f}' width='14' height='4' fill='{color}'/>"
            f"<text x='{x:.1f}' dx='18' y='{y:.1f}' dy='6' font-size='11' {FONT}>"
            f"{escape(text)}</text>")


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
