"""The plotly figures of a study report. Each builder returns a figure, or a sentence saying
plainly why there is none (too few finished trials, nothing searched, …)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from tuner.core.keys import CURVE
from tuner.search.best_so_far import best_so_far
from tuner.views.summaries import trial_params

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


def _too_few(n: int, need: int, what: str) -> str:
    return (f"Not shown: {what} needs at least {need} complete trials; this study has {n}.")


def history(trials: list[FrozenTrial], metric: str, maximize: bool) -> Figure:
    """Metric per trial number with the best-so-far line; pruned trials at their last report."""
    done = complete(trials)
    if not done:
        return _too_few(0, 1, "the optimisation history")
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
    fig.update_layout(title="Optimisation history", xaxis_title="trial", yaxis_title=metric,
                      **LAYOUT)
    return fig


def importances(study: optuna.Study, trials: list[FrozenTrial]) -> Figure:
    """fANOVA importance of each searched parameter for the metric (complete trials)."""
    n = len(complete(trials))
    if n < 2:
        return _too_few(n, 2, "parameter importance")
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    try:
        scores = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError, ImportError) as e:
        return f"Not computable: parameter importance failed ({e})."
    if not scores:
        return "Not computable: no parameter varies across the complete trials."
    names = [_label(k) for k in scores][::-1]
    fig = go.Figure(go.Bar(x=list(scores.values())[::-1], y=names, orientation="h",
                           marker_color="#4c78a8",
                           text=[f"{v:.2f}" for v in list(scores.values())[::-1]]))
    fig.update_layout(title=f"Parameter importance (fANOVA, {n} complete trials)",
                      xaxis_title="share of the metric's variance", **LAYOUT)
    return fig


def _label(param: str) -> str:
    return param[:-5] if param.endswith("_log2") else param


def _axis(name: str, values: list[Any]) -> dict[str, Any] | None:
    """One parallel-coordinates axis (numbers on a log axis where they span decades)."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        positive = all(v > 0 for v in values)
        if positive and (name == "batch_size" or max(values) / min(values) >= 8):
            base = 2 if name == "batch_size" else 10
            logs = [math.log(v, base) for v in values]
            ticks = sorted(set(range(math.floor(min(logs)), math.ceil(max(logs)) + 1)))
            return {"label": name, "values": logs, "tickvals": ticks,
                    "ticktext": [f"{base ** k:g}" for k in ticks]}
        return {"label": name, "values": values}
    cats = sorted({str(v) for v in values})
    return {"label": name, "values": [cats.index(str(v)) for v in values],
            "tickvals": list(range(len(cats))), "ticktext": cats}


def parallel(trials: list[FrozenTrial], metric: str) -> Figure:
    """Every complete trial as a line through its (real) parameters and its metric."""
    done = complete(trials)
    if len(done) < 2:
        return _too_few(len(done), 2, "the parallel-coordinates plot")
    params = [trial_params(t) for t in done]
    names = sorted({k for p in params for k in p if all(k in q for q in params)})
    values = [t.value for t in done]
    dims = [d for d in (_axis(k, [p[k] for p in params]) for k in names) if d]
    dims.append({"label": metric, "values": values})
    fig = go.Figure(go.Parcoords(line={"color": values, "colorscale": "Viridis",
                                       "showscale": True}, dimensions=dims))
    fig.update_layout(title={"text": "Parallel coordinates (complete trials)", "y": 0.97},
                      **{**LAYOUT, "height": 460,
                         "margin": {"l": 70, "r": 40, "t": 110, "b": 40}})
    return fig


def slice_plot(trials: list[FrozenTrial], param: str, metric: str) -> Figure:
    """Metric against one parameter (its real value: batch size, not its exponent)."""
    rows = [(trial_params(t).get(param), t.value, t.number) for t in complete(trials)]
    rows = [r for r in rows if r[0] is not None]
    if not rows:
        return f"Not shown: no complete trial has a value for {param}."
    pruned = [(trial_params(t).get(param), last_reported(t)) for t in trials
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
    numeric = all(isinstance(x, int | float) and x > 0 for x in xs)
    if numeric and param == "batch_size":  # powers of two: evenly spaced, labelled as they are
        ticks = sorted(set(xs))
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks])
    elif numeric and max(xs) / min(xs) >= 8:
        fig.update_xaxes(type="log", dtick=1)  # a label per decade
    fig.update_layout(title=f"{metric} against {param}", xaxis_title=param, yaxis_title=metric,
                      legend={"orientation": "h", "y": -0.2}, **LAYOUT)
    return fig


def by_category(trials: list[FrozenTrial], param: str, metric: str, maximize: bool) -> Figure:
    """Box and points of the metric per value of a categorical parameter (init scheme, …);
    each label also counts the pruned and failed trials of that value."""
    groups: dict[str, list[float]] = defaultdict(list)
    other: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pruned: dict[str, list[float]] = defaultdict(list)
    for t in trials:
        v = trial_params(t).get(param)
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
    fig.update_layout(title=f"{metric} per {param} (best first)", yaxis_title=metric,
                      legend={"orientation": "h", "y": -0.25}, **LAYOUT)
    return fig


def learning_curves(trials: list[FrozenTrial], top: list[FrozenTrial]) -> Figure:
    """Train loss and validation accuracy per epoch of the top trials (user attr ``curve``)."""
    shown = [t for t in top if isinstance(t.user_attrs.get(CURVE), dict)]
    if not shown:
        return "Not shown: the trials store no learning curves (user attribute 'curve')."
    fig = make_subplots(rows=1, cols=2, subplot_titles=("train loss", "validation accuracy"))
    for i, t in enumerate(shown):
        curve = t.user_attrs[CURVE]
        color = f"hsl({i * 360 // max(len(shown), 1)},65%,45%)"
        for col, key in ((1, "train_loss"), (2, "val_accuracy")):
            ys = curve.get(key, [])
            fig.add_scatter(x=list(range(1, len(ys) + 1)), y=ys, mode="lines+markers",
                            name=f"trial {t.number}", legendgroup=str(t.number),
                            showlegend=col == 1, line={"color": color}, row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_layout(title=f"Learning curves of the top {len(shown)} trials", **LAYOUT)
    return fig
