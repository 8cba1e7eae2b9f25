"""The plotly figures of a study report. Each builder returns a figure, or a sentence saying
plainly why there is none (too few finished trials, nothing searched, …)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import plotly.graph_objects as go
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from tuner.core.keys import LOG2_SUFFIX
from tuner.nn.pictures import LOG_SPAN, wants_log_axis
from tuner.search.best_so_far import best_so_far
from tuner.search.space import is_pow2
from tuner.views.real_params import real_params

Figure = go.Figure | str
LAYOUT: dict[str, Any] = {"template": "plotly_white", "height": 420,
                          "margin": {"l": 60, "r": 30, "t": 50, "b": 50}}
PRUNED_MARKER = {"color": "rgba(120,120,120,0.6)", "symbol": "x", "size": 8}


def is_complete(t: FrozenTrial) -> bool:
    """Complete with a finite value (what every plot of the metric can use)."""
    return t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)


def complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if is_complete(t)]


def last_reported(t: FrozenTrial) -> float | None:
    """A pruned trial's last intermediate value (what the pruner judged it on)."""
    if not t.intermediate_values:
        return None
    v = t.intermediate_values[max(t.intermediate_values)]
    return v if math.isfinite(v) else None


def too_few(n: int, need: int, what: str) -> str:
    return (f"Not shown: {what} needs at least {need} complete trials; this study has {n}.")


def metric_scale(values: list[float]) -> str:
    """How to draw an axis of the study's metric: ``"log"`` when its finite values span more
    than two decades (:func:`tuner.nn.pictures.wants_log_axis`: one trial at 33 000 would
    flatten the rest at 100-300); ``"linear-nonpositive"`` when their magnitudes span that much
    but some are 0 or below, which a log axis cannot show; else ``"linear"``."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if wants_log_axis(finite):
        return "log"
    mags = [abs(v) for v in finite if v != 0]
    if mags and min(finite) <= 0 and max(mags) / min(mags) > LOG_SPAN:
        return "linear-nonpositive"
    return "linear"


def metric_title(metric: str, scale: str) -> str:
    """The metric's axis title, saying when it is a log axis or why it is not one."""
    return {"log": f"{metric} (log scale)",
            "linear-nonpositive": f"{metric} (linear axis: values ≤ 0)"
            }.get(scale, metric)


def metric_axis(fig: go.Figure, values: list[float], metric: str, axis: str = "yaxis") -> None:
    """Lay out ``axis`` of ``fig``, which shows the study's metric (:func:`metric_scale`); a log
    axis is labelled 100, 200, 500, 1000 …, from the label below the lowest value to the one
    above the highest, padded so that no label sits in a corner."""
    fig.update_layout({axis: metric_layout(values, metric)})


def metric_layout(values: list[float], metric: str) -> dict[str, Any]:
    """The layout of an axis that shows ``values`` of ``metric`` (see :func:`metric_axis`)."""
    scale = metric_scale(values)
    layout: dict[str, Any] = {"type": "log" if scale == "log" else "linear",
                              "title": {"text": metric_title(metric, scale)}}
    if scale == "log":
        finite = [v for v in values if v is not None and math.isfinite(v)]
        ticks = _log_ticks(min(finite), max(finite), 10, enclose=True)
        lo, hi = math.log10(ticks[0]), math.log10(ticks[-1])
        pad = 0.04 * (hi - lo)
        layout.update(autorange=False, range=[lo - pad, hi + pad], tickmode="array",
                      tickvals=ticks, ticktext=[_tick(t) for t in ticks])
    else:
        layout.update(autorange=True, range=None, tickmode="auto", tickvals=None, ticktext=None)
    return layout


def history(trials: list[FrozenTrial], metric: str, maximize: bool) -> Figure:
    """Metric per trial number with the best-so-far line; pruned trials at their last report."""
    done = complete(trials)
    if not done:
        return too_few(0, 1, "the optimisation history")
    fig = go.Figure()
    fig.add_scatter(x=[t.number for t in done], y=[t.value for t in done], mode="markers",
                    name="complete trial", marker={"color": "#1f77b4", "size": 8})
    pruned = [(t.number, last_reported(t)) for t in trials if t.state == TrialState.PRUNED]
    pruned = [(n, v) for n, v in pruned if v is not None]
    if pruned:
        fig.add_scatter(x=[n for n, _ in pruned], y=[v for _, v in pruned], mode="markers",
                        name="pruned (last reported)", marker=PRUNED_MARKER)
    done = sorted(done, key=lambda t: t.number)
    fig.add_scatter(x=[t.number for t in done],
                    y=best_so_far([t.value for t in done], maximize), mode="lines",
                    line={"shape": "hv", "color": "#d62728"}, name="best so far")
    fig.update_layout(title="Optimisation history", xaxis_title="trial", **LAYOUT)
    metric_axis(fig, [t.value for t in done] + [v for _, v in pruned], metric)
    return fig


def param_label(param: str) -> str:
    """A parameter's real name: ``batch_size`` for the searched exponent ``batch_size_log2``."""
    return param.removesuffix(LOG2_SUFFIX)


def _scale(trials: list[FrozenTrial], param: str, values: list[Any]) -> str:
    """How to lay out a parameter's values: "pow2" (searched as powers of two, ``batch_size``),
    "log" (a log-scale distribution, or positive numbers spanning 8x or more), "linear", or
    "category" (text, or numbers chosen from a list: ``width = [32, 64]`` has two values, not
    a range from 30 to 65)."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "category"
    dists = [d for t in trials for k, d in t.distributions.items() if param_label(k) == param]
    if values and min(values) > 0 and all(is_pow2(v) for v in values) and (
            param == "batch_size" or any(k == param + LOG2_SUFFIX for t in trials
                                         for k in t.distributions)):
        return "pow2"
    if dists and all(isinstance(d, CategoricalDistribution) for d in dists):
        return "category"
    if not values or min(values) <= 0:
        return "linear"
    if any(getattr(d, "log", False) for d in dists) or max(values) / min(values) >= 8:
        return "log"
    return "linear"


def _log_ticks(lo: float, hi: float, base: int, *, enclose: bool = False) -> list[float]:
    """Readable tick values on a log axis: every power of ``base``; for base 10, also 2 and 5
    times each, then every digit, until three fall within [lo, hi]. The ticks within [lo, hi],
    or with ``enclose`` from the last tick at or below ``lo`` to the first at or above ``hi``
    (an axis that ends on labelled ticks). At most about 9 of them."""
    eps = 1e-9
    if base == 2:
        ks = range(math.floor(math.log2(lo) + eps), math.ceil(math.log2(hi) - eps) + 1)
        levels: list[list[float]] = [[float(2 ** k) for k in ks]]
    else:
        decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2)
        levels = [[float(f"{m}e{d}") for d in decades for m in ms]
                  for ms in ((1,), (1, 2, 5), tuple(range(1, 10)))]
    for ticks in levels:
        if sum(lo * (1 - eps) <= t <= hi * (1 + eps) for t in ticks) >= 3:
            break
    if enclose:
        below = max(t for t in ticks if t <= lo * (1 + eps))
        above = min(t for t in ticks if t >= hi * (1 - eps))
        ticks = [t for t in ticks if below <= t <= above]
    else:
        ticks = [t for t in ticks if lo * (1 - eps) <= t <= hi * (1 + eps)]
    step = max(1, math.ceil(len(ticks) / 9))
    if enclose:  # both ends labelled: a stride that reaches the last tick keeps gaps even
        step = next((s for s in range(step, 2 * step + 1) if (len(ticks) - 1) % s == 0), step)
    return ticks[::step] + ([ticks[-1]] if enclose and (len(ticks) - 1) % step else [])


def _tick(v: float) -> str:
    return f"{v:g}"


def _axis(trials: list[FrozenTrial], name: str, values: list[Any]) -> dict[str, Any]:
    """One parallel-coordinates axis. Log-scale numbers are drawn as their logarithm, on an axis
    (``range``) that ends on labelled ticks around the values: every tick lies inside it, so no
    axis grows past the others into its title."""
    scale = _scale(trials, name, values)
    if scale == "category":
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        order = sorted(set(values)) if numbers else sorted({str(v) for v in values})
        keys = values if numbers else [str(v) for v in values]
        return {"label": name, "values": [order.index(k) for k in keys],
                "tickvals": list(range(len(order))), "ticktext": [str(c) for c in order],
                "range": [0, max(len(order) - 1, 1)]}
    if scale == "linear":
        return {"label": name, "values": values}
    base = 2 if scale == "pow2" else 10
    ticks = _log_ticks(min(values), max(values), base, enclose=True)
    if len(ticks) == 1:  # one value, a power of two: a short axis around it
        ticks = [ticks[0] / base, ticks[0], ticks[0] * base]
    return {"label": name, "values": [math.log(v, base) for v in values],
            "range": [math.log(ticks[0], base), math.log(ticks[-1], base)],
            "tickvals": [math.log(t, base) for t in ticks], "ticktext": [_tick(t) for t in ticks]}


def parallel(trials: list[FrozenTrial], metric: str) -> Figure:
    """Every complete trial as a line through its (real) parameters and its metric."""
    done = complete(trials)
    if len(done) < 2:
        return too_few(len(done), 2, "the parallel-coordinates plot")
    return parallel_figure(done, [(metric, [t.value for t in done])],
                           "Parallel coordinates (complete trials)")


def parallel_figure(done: list[FrozenTrial], metrics: list[tuple[str, list[float]]],
                    title: str) -> go.Figure:
    """The parallel-coordinates plot of ``done`` (at least two trials): an axis per (real)
    parameter they all have, then one per ``(name, values)`` in ``metrics`` (one value per
    trial), the lines coloured by the first of them."""
    params = [real_params(t) for t in done]
    names = sorted({k for p in params for k in p if all(k in q for q in params)})
    dims = [_axis(done, k, [p[k] for p in params]) for k in names]
    line: dict[str, Any] = {}
    for metric, values in metrics:
        dim, colorbar = _metric_dim(metric, values)
        dims.append(dim)
        if not line:  # drawn as its logarithm, colours too: one outlier flattens neither
            line = {"color": dim["values"], "colorscale": "Viridis", "showscale": True}
            if colorbar is not None:
                line["colorbar"] = colorbar
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(title={"text": title, "y": 0.97},
                      **{**LAYOUT, "height": 460,
                         "margin": {"l": 110, "r": 40, "t": 110, "b": 40}})
    return fig


def _metric_dim(metric: str, values: list[float]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A metric's parallel-coordinates axis, and the colour bar's ticks when it is a log axis
    (drawn as its logarithm)."""
    scale = metric_scale(values)
    if scale != "log":
        return {"label": metric_title(metric, scale), "values": values}, None
    ticks = _log_ticks(min(values), max(values), 10, enclose=True)
    logs = {"tickvals": [math.log10(t) for t in ticks], "ticktext": [_tick(t) for t in ticks]}
    return {"label": metric_title(metric, scale), "values": [math.log10(v) for v in values],
            "range": [logs["tickvals"][0], logs["tickvals"][-1]], **logs}, logs


def slice_plot(trials: list[FrozenTrial], param: str, metric: str) -> Figure:
    """Metric against one parameter (its real value: batch size, not its exponent)."""
    rows = [(real_params(t).get(param), t.value, t.number) for t in complete(trials)]
    rows = [r for r in rows if r[0] is not None]
    if not rows:
        return f"Not shown: no complete trial has a value for {param}."
    pruned = [(real_params(t).get(param), last_reported(t)) for t in trials
              if t.state == TrialState.PRUNED]
    pruned = [(x, v) for x, v in pruned if x is not None and v is not None]
    fig = go.Figure()
    fig.add_scatter(x=[r[0] for r in rows], y=[r[1] for r in rows], mode="markers",
                    name="complete", text=[f"trial {r[2]}" for r in rows],
                    marker={"color": "#1f77b4", "size": 9})
    if pruned:
        fig.add_scatter(x=[x for x, _ in pruned], y=[v for _, v in pruned], mode="markers",
                        name="pruned (last reported)", marker=PRUNED_MARKER)
    xs = [r[0] for r in rows] + [x for x, _ in pruned]
    _slice_xaxis(fig, _scale(trials, param, xs), xs)
    fig.update_layout(title=f"{metric} against {param}", xaxis_title=param,
                      legend={"orientation": "h", "y": -0.2}, **LAYOUT)
    metric_axis(fig, [r[1] for r in rows] + [v for _, v in pruned], metric)
    return fig


def _slice_xaxis(fig: go.Figure, scale: str, xs: list[Any]) -> None:
    """A log axis (powers of two: the real batch sizes, evenly spaced) padded so that no point
    sits on its edge, with several labelled ticks however few decades the values span; a
    category axis for numbers chosen from a list."""
    if scale == "category":  # chosen from a list: one evenly spaced column per value
        cats = sorted(set(xs))
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=cats,
                         range=[-0.5, len(cats) - 0.5])  # no column on the plot's edge
        return
    if scale == "linear" and all(isinstance(x, int) for x in xs) and max(xs) - min(xs) <= 12:
        fig.update_xaxes(tickmode="linear", dtick=1, tickformat="d")  # depth 1, 2, 3, …
    if scale not in ("log", "pow2"):
        return
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    pad = max(0.06 * (hi - lo), 0.08)
    lo, hi = lo - pad, hi + pad
    ticks = _log_ticks(10 ** lo, 10 ** hi, 2 if scale == "pow2" else 10)
    fig.update_xaxes(type="log", range=[lo, hi], tickmode="array", tickvals=ticks,
                     ticktext=[_tick(t) for t in ticks], minor={"showgrid": False})


def by_category(trials: list[FrozenTrial], param: str, metric: str, maximize: bool) -> Figure:
    """Box and points of the metric per value of a categorical parameter (init scheme, …);
    each label also counts the pruned and failed trials of that value."""
    groups: dict[str, list[float]] = defaultdict(list)
    other: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pruned: dict[str, list[float]] = defaultdict(list)
    for t in trials:
        v = real_params(t).get(param)
        if v is None:
            continue
        if is_complete(t):
            groups[str(v)].append(t.value)
        elif t.state in (TrialState.PRUNED, TrialState.FAIL):
            other[str(v)][t.state.name.lower()] += 1
            if t.state == TrialState.PRUNED and last_reported(t) is not None:
                pruned[str(v)].append(last_reported(t))
    if not groups:
        return f"Not shown: no complete trial has a value for {param}."

    def rank(name: str) -> float:
        vals = sorted(groups.get(name, []))
        if not vals:
            return -math.inf if maximize else math.inf
        return vals[len(vals) // 2]

    fig = go.Figure()
    labels = []
    for name in sorted({*groups, *other}, key=rank, reverse=maximize):
        extra = "".join(f", {n} {s}" for s, n in sorted(other[name].items()))
        label = f"{name}<br>({len(groups.get(name, []))} complete{extra})"
        labels.append(label)
        values = groups.get(name, [])
        fig.add_box(x=[label] * len(values), y=values, name=name, boxpoints="all", jitter=0.4,
                    pointpos=0, marker={"size": 7}, showlegend=False)
        if pruned.get(name):
            fig.add_scatter(x=[label] * len(pruned[name]), y=pruned[name], mode="markers",
                            marker=PRUNED_MARKER, name="pruned (last reported)",
                            legendgroup="pruned", showlegend=not any(
                                getattr(tr, "legendgroup", None) == "pruned" for tr in fig.data))
    fig.update_xaxes(categoryorder="array", categoryarray=labels)
    fig.update_layout(title=f"{metric} per {param} (best first)",
                      legend={"orientation": "h", "y": -0.25}, **LAYOUT)
    metric_axis(fig, [v for vs in (*groups.values(), *pruned.values()) for v in vs], metric)
    return fig
