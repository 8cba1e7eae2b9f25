"""The report of a study with several objectives (``[study] metrics``): the Pareto front, the
hypervolume over trials, each metric's history, and the plots of one value made to show the
first metric.

A trial of such a study has one value per metric. The Pareto set (:func:`tuner.store.studies.
pareto_set`, what ``tuner show`` lists too) is the study's own complete trials that no other
beats on every metric, among the feasible ones when ``[study] constraints`` holds any. A warm
start's prior observations (user attribute ``warm_start``) are drawn hollow and counted in
neither the front nor the hypervolume: they were another study's trials.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tuner.core.keys import CONFIG_ATTR, CONSTRAINT_VALUES, FEASIBLE, WARM_START
from tuner.search.best_so_far import best_so_far
from tuner.search.constraints import parse_constraint
from tuner.search.hypervolume import from_losses, hypervolume_so_far, reference_losses
from tuner.search.hypervolume import hypervolume as hypervolume  # also this module's name
from tuner.views.real_params import real_params
from tuner.views.report._figures import LAYOUT, Figure, metric_layout, parallel_figure, too_few

OPTUNA_CONSTRAINTS = "constraints"  # Optuna's trial system attribute: one float each, <= 0 holds
FRONT_LABELS = 12  # the Pareto-optimal points are labelled with their number up to this many

FRONT = {"color": "#d62728", "symbol": "diamond", "size": 12,
         "line": {"color": "#7f0000", "width": 1}}
FEASIBLE_MARKER = {"color": "#1f77b4", "symbol": "circle", "size": 8, "opacity": 0.85}
INFEASIBLE_MARKER = {"color": "#ff7f0e", "symbol": "square", "size": 8, "opacity": 0.85}
WARM_MARKER = {"color": "#1f77b4", "symbol": "circle-open", "size": 10, "line": {"width": 2}}
WARM_INFEASIBLE_MARKER = {"color": "#ff7f0e", "symbol": "square-open", "size": 10,
                          "line": {"width": 2}}


@dataclass(frozen=True)
class Objectives:
    """What a multi-objective study optimises: its metrics' names (``study.metric_names``, else
    the stored ``[study] metrics``, else "objective 1" …), which of them are maximised, its
    constraints as written (``"n_params <= 20000"``) and whether any trial is judged by them."""

    names: tuple[str, ...]
    maximize: tuple[bool, ...]
    constraints: tuple[str, ...]
    constrained: bool

    def direction(self, i: int) -> str:
        return "maximize" if self.maximize[i] else "minimize"

    def better(self, i: int) -> str:
        return "higher is better" if self.maximize[i] else "lower is better"

    def loss(self, t: FrozenTrial) -> list[float]:
        """A trial's values turned so that lower is better in each."""
        return [-v if m else v for v, m in zip(t.values, self.maximize, strict=True)]


def objectives_of(study: optuna.Study, trials: list[FrozenTrial]) -> Objectives:
    maximize = tuple(d == StudyDirection.MAXIMIZE for d in study.directions)
    config = study.user_attrs.get(CONFIG_ATTR)
    table = config.get("study", {}) if isinstance(config, dict) else {}
    table = table if isinstance(table, dict) else {}
    names: Any = study.metric_names or table.get("metrics")
    if not (isinstance(names, list) and len(names) == len(maximize)
            and all(isinstance(n, str) and n for n in names)):
        names = [f"objective {i + 1}" for i in range(len(maximize))]
    constraints = table.get("constraints")
    constraints = tuple(c for c in constraints if isinstance(c, str)) if isinstance(
        constraints, list) else ()
    constrained = bool(constraints) or any(FEASIBLE in t.user_attrs for t in trials)
    return Objectives(tuple(names), maximize, constraints, constrained)


# ------------------------------------------------------------------------------- the trials
def scored(t: FrozenTrial, obj: Objectives) -> bool:
    """Complete, with a finite value for every metric (what the plots can draw)."""
    return (t.state == TrialState.COMPLETE and t.values is not None
            and len(t.values) == len(obj.names) and all(math.isfinite(v) for v in t.values))


def is_feasible(t: FrozenTrial) -> bool:
    """Whether a trial satisfies ``[study] constraints`` (its ``feasible`` attribute; a study
    without constraints: every trial)."""
    return bool(t.user_attrs.get(FEASIBLE, True))


def is_own(t: FrozenTrial) -> bool:
    """The study's own trial, not a warm start's prior observation."""
    return WARM_START not in t.user_attrs


def broken(t: FrozenTrial, obj: Objectives) -> list[str]:
    """The constraints an infeasible trial breaks: by the values the trial wrote
    (``constraint_values``, what Optuna's ``constraints_func`` hands on), else Optuna's own
    ``constraints`` system attribute."""
    values = t.user_attrs.get(CONSTRAINT_VALUES, t.system_attrs.get(OPTUNA_CONSTRAINTS))
    if not isinstance(values, list | tuple) or len(values) != len(obj.constraints):
        return []
    return [c for c, v in zip(obj.constraints, values, strict=True)
            if not (isinstance(v, int | float) and v <= 0)]


def first_metric(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials as a single-objective study's, whose value is their first metric: what the
    plots of one value (init schemes compared, slices …) read. Copies: the study is not
    touched."""
    out = []
    for t in trials:
        if t.values is not None and len(t.values) > 1:
            t = copy.copy(t)
            t.values = t.values[:1]
        out.append(t)
    return out


def sort_front(front: list[FrozenTrial], obj: Objectives) -> list[FrozenTrial]:
    """The Pareto set, best first by the first metric (then the second …)."""
    return sorted(front, key=lambda t: (obj.loss(t), t.number))


def _hover(t: FrozenTrial, obj: Objectives) -> str:
    lines = [f"trial {t.number}" + (f" (warm start: {t.user_attrs[WARM_START]})"
                                    if not is_own(t) else "")]
    lines += [f"{n} = {v:.4g}" for n, v in zip(obj.names, t.values, strict=True)]
    if obj.constrained:
        breaks = broken(t, obj)
        lines.append("feasible" if is_feasible(t) else
                     "infeasible" + (f": breaks {', '.join(breaks)}" if breaks else ""))
    lines += [f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
              for k, v in real_params(t).items()]
    return "<br>".join(escape(line) for line in lines)


@dataclass
class _Groups:
    """A study's scored trials, each in one group of the plots."""

    front: list[FrozenTrial]
    feasible: list[FrozenTrial]  # own, feasible, not on the front
    infeasible: list[FrozenTrial]  # own
    warm: list[FrozenTrial]
    warm_infeasible: list[FrozenTrial]

    def traces(self, obj: Objectives) -> list[tuple[str, list[FrozenTrial], dict[str, Any]]]:
        """(legend name, trials, marker) of every group with trials, the front last (on top)."""
        other = "other feasible trial" if obj.constrained else "other complete trial"
        groups = [(other, self.feasible, FEASIBLE_MARKER),
                  ("infeasible (breaks a constraint)", self.infeasible, INFEASIBLE_MARKER),
                  ("warm start (another study's; not counted)", self.warm, WARM_MARKER),
                  ("warm start, infeasible", self.warm_infeasible, WARM_INFEASIBLE_MARKER),
                  (f"Pareto-optimal ({len(self.front)})", self.front, FRONT)]
        return [g for g in groups if g[1]]


def groups(trials: list[FrozenTrial], front: list[FrozenTrial], obj: Objectives) -> _Groups:
    on_front = {t.number for t in front}
    done = [t for t in trials if scored(t, obj)]
    own = [t for t in done if is_own(t) and t.number not in on_front]
    warm = [t for t in done if not is_own(t)]
    return _Groups(
        front=[t for t in done if t.number in on_front],
        feasible=[t for t in own if is_feasible(t)],
        infeasible=[t for t in own if not is_feasible(t)],
        warm=[t for t in warm if is_feasible(t)],
        warm_infeasible=[t for t in warm if not is_feasible(t)])


# --------------------------------------------------------------------------- the Pareto front
def pareto_figures(trials: list[FrozenTrial], front: list[FrozenTrial],
                   obj: Objectives) -> list[Figure]:
    """The Pareto front: with two metrics one scatter of them, the front connected as the
    staircase it dominates; with more, one scatter per pair of metrics, the front (of all of
    them) highlighted but not connected: a projection of it is no staircase."""
    n = sum(scored(t, obj) for t in trials)
    if not n:
        return [too_few(0, 1, "the Pareto front")]
    split = groups(trials, front, obj)
    pairs = list(itertools.combinations(range(len(obj.names)), 2))
    return [_pareto_plot(split, obj, i, j, connect=len(obj.names) == 2) for i, j in pairs]


def _pareto_plot(split: _Groups, obj: Objectives, i: int, j: int, connect: bool) -> go.Figure:
    fig = go.Figure()
    xname, yname = obj.names[i], obj.names[j]
    for name, members, marker in split.traces(obj):
        is_front = members is split.front
        if is_front:
            members = sorted(members, key=lambda t: (obj.loss(t)[i], obj.loss(t)[j]))
        labels = is_front and len(members) <= FRONT_LABELS
        mode = "markers" + ("+text" if labels else "")
        if is_front and connect:
            mode = "lines+" + mode
        fig.add_scatter(
            x=[t.values[i] for t in members], y=[t.values[j] for t in members], mode=mode,
            name=name, marker=marker, customdata=[t.number for t in members],
            text=[f"#{t.number}" for t in members] if labels else None,
            textposition="top right", textfont={"color": FRONT["color"], "size": 11},
            hovertext=[_hover(t, obj) for t in members], hoverinfo="text",
            # in loss order (best x first), the boundary of what the front dominates runs
            # across to the next point's x, then to its y, whichever way each axis is better
            line={"color": FRONT["color"], "width": 2, "shape": "hv"} if is_front else None,
            meta="front" if is_front else "trials")
    every = [t for _, members, _ in split.traces(obj) for t in members]
    xs, ys = [t.values[i] for t in every], [t.values[j] for t in every]
    for text in obj.constraints:
        _constraint_line(fig, text, xname, yname, xs, ys)
    # side by side (three metrics or more), a short title: the modebar covers a long one
    title = f"Pareto front: {yname} against {xname}" if connect else f"{yname} against {xname}"
    fig.update_layout(title=title, meta="pareto", legend={"orientation": "h", "y": -0.22},
                      **{**LAYOUT, "height": 480})
    fig.update_layout(xaxis=_axis(xs, xname, obj.better(i)),
                      yaxis=_axis(ys, yname, obj.better(j)))
    return fig


def _axis(values: list[float], name: str, better: str) -> dict[str, Any]:
    layout = metric_layout(values, name)
    layout["title"] = {"text": f"{layout['title']['text']} · {better}"}
    return layout


def _constraint_line(fig: go.Figure, text: str, xname: str, yname: str,
                     xs: list[float], ys: list[float]) -> None:
    """A dashed line at a constraint's bound on the metric it is on, when that bound lies among
    the values drawn (a scatter trace: it sits right on a log axis as well)."""
    parsed = parse_constraint(text)
    if parsed is None:
        return
    name, op, bound = parsed
    if name not in (xname, yname):
        return
    along, across = (ys, xs) if name == xname else (xs, ys)
    if not across or not min(across) <= bound <= max(across):
        return
    ends = [min(along), max(along)]
    line = {"x": [bound, bound], "y": ends} if name == xname else {"x": ends, "y": [bound, bound]}
    sign = "≤" if op == "<=" else "≥"
    fig.add_scatter(**line, mode="lines", name=f"constraint {name} {sign} {bound:g}",
                    line={"color": "#555", "dash": "dash", "width": 1.5}, hoverinfo="name",
                    meta="constraint")


# ------------------------------------------------------------------------------ hypervolume
@dataclass(frozen=True)
class Reference:
    """The hypervolume's reference point, in the metrics' own values and as losses."""

    values: tuple[float, ...]
    losses: np.ndarray
    n: int  # the complete trials it was taken from
    flat: tuple[str, ...]  # metrics whose values were all equal (pushed out by 10% of the value)

    def words(self, obj: Objectives, warm: bool = False) -> str:
        point = ", ".join(f"{n} = {v:.4g}" for n, v in zip(obj.names, self.values, strict=True))
        flat = (f" ({', '.join(self.flat)}: all equal, out by 10% of the value)"
                if self.flat else "")
        own = " of the study's own" if warm else ""
        return (f"reference point {point}: each metric's worst among the {self.n} complete "
                f"trials{own}, pushed out by 10% of its range{flat}")


def reference_point(trials: list[FrozenTrial], obj: Objectives) -> Reference | None:
    """The worst value of each metric among the study's own complete trials (feasible or not),
    pushed out by 10% of its range
    (:func:`tuner.search.hypervolume.reference_losses`); ``None`` without such a trial."""
    own = [t for t in trials if scored(t, obj) and is_own(t)]
    if not own:
        return None
    ref, flat = reference_losses(np.array([obj.loss(t) for t in own], dtype=float))
    return Reference(from_losses(ref, obj.maximize), ref, len(own),
                     tuple(n for n, f in zip(obj.names, flat, strict=True) if f))


def hypervolume_history(trials: list[FrozenTrial], obj: Objectives,
                        ref: Reference) -> list[tuple[int, float]]:
    """After each of the study's own complete trials (by number), the hypervolume of its
    feasible ones so far: ``(number, hypervolume)``, never decreasing (0 before the first
    feasible one)."""
    own = sorted((t for t in trials if scored(t, obj) and is_own(t)), key=lambda t: t.number)
    volumes = hypervolume_so_far([obj.loss(t) if is_feasible(t) else None for t in own],
                                 ref.losses)
    return [(t.number, v or 0.0) for t, v in zip(own, volumes, strict=True)]


def hypervolume_plot(trials: list[FrozenTrial], obj: Objectives) -> tuple[Figure, str]:
    """The hypervolume over the study's own trials (feasible only), the reference point stated
    on the plot; and a sentence for below it (the last value)."""
    ref = reference_point(trials, obj)
    if ref is None:
        return too_few(0, 1, "the hypervolume"), ""
    if not any(is_feasible(t) and is_own(t) for t in trials if scored(t, obj)):
        return (f"Not shown: none of the {ref.n} complete trials is feasible; the hypervolume "
                "counts feasible trials only."), ""
    try:
        history = hypervolume_history(trials, obj, ref)
    except ImportError:  # the WFG of another Optuna than 5.1 (three or more metrics)
        return ("Not computable: this Optuna has no optuna._hypervolume.compute_hypervolume "
                f"for {len(obj.names)} metrics."), ""
    fig = go.Figure()
    fig.add_scatter(x=[n for n, _ in history], y=[v for _, v in history], mode="lines+markers",
                    line={"shape": "hv", "color": "#2ca02c"}, marker={"size": 6},
                    name="hypervolume", meta="hypervolume")
    warm = any(not is_own(t) for t in trials)
    words = ref.words(obj, warm)
    counted = "; ".join([*(["warm starts left out"] if warm else []),
                         *(["feasible trials only"] if obj.constrained else [])])
    text = _wrap(words) + (f"<br>{counted}" if counted else "")
    fig.add_annotation(text=text, xref="paper", yref="paper",
                       x=0, y=1.0, xanchor="left", yanchor="bottom", showarrow=False,
                       align="left", font={"size": 12, "color": "#444"})
    fig.update_layout(title={"text": "Hypervolume over trials", "y": 0.97},
                      xaxis_title="trial", yaxis_title="hypervolume (in the metrics' units)",
                      **{**LAYOUT, "margin": {**LAYOUT["margin"], "t": 110}})
    last = history[-1][1]
    return fig, (f"Hypervolume after trial {history[-1][0]}: {last:.6g} ({words}"
                 + (f"; {counted}" if counted else "") + ").")


def _wrap(text: str, width: int = 90) -> str:
    """Plotly does not wrap an annotation: break ``text`` into lines at spaces."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "<br>".join([*lines, line])


# --------------------------------------------------------------------------- each metric's
def metric_histories(trials: list[FrozenTrial], front: list[FrozenTrial],
                     obj: Objectives) -> list[Figure]:
    """:func:`metric_history` of each metric (one sentence when no trial has values)."""
    if not any(scored(t, obj) for t in trials):
        return [too_few(0, 1, "the history of each metric")]
    return [metric_history(trials, front, obj, i) for i in range(len(obj.names))]


def metric_history(trials: list[FrozenTrial], front: list[FrozenTrial], obj: Objectives,
                   i: int) -> Figure:
    """Metric ``i`` per trial number, the Pareto-optimal trials highlighted, with the best so
    far in its direction (the study's own, feasible trials)."""
    split = groups(trials, front, obj)
    traces = split.traces(obj)
    name = obj.names[i]
    if not traces:
        return too_few(0, 1, f"the history of {name}")
    fig = go.Figure()
    for label, members, marker in traces:
        fig.add_scatter(x=[t.number for t in members], y=[t.values[i] for t in members],
                        mode="markers", name=label, marker=marker,
                        customdata=[t.number for t in members],
                        hovertext=[_hover(t, obj) for t in members], hoverinfo="text")
    own = sorted((t for t in trials if scored(t, obj) and is_own(t)), key=lambda t: t.number)
    best = best_so_far([t.values[i] if is_feasible(t) else None for t in own], obj.maximize[i])
    if any(b is not None for b in best):
        fig.add_scatter(x=[t.number for t in own], y=best, mode="lines", meta="best",
                        line={"shape": "hv", "color": "#d62728"},
                        name="best so far" + (" (feasible)" if obj.constrained else ""))
    fig.update_layout(title=f"{name} per trial ({obj.direction(i)})", xaxis_title="trial",
                      legend={"orientation": "h", "y": -0.22}, **{**LAYOUT, "height": 440})
    fig.update_layout(yaxis=metric_layout([t.values[i] for _, m, _ in traces for t in m], name))
    return fig


def parallel_metrics(trials: list[FrozenTrial], obj: Objectives) -> Figure:
    """Parallel coordinates through the parameters and every metric, coloured by the first."""
    done = [t for t in trials if scored(t, obj)]
    if len(done) < 2:
        return too_few(len(done), 2, "the parallel-coordinates plot")
    return parallel_figure(done, [(n, [t.values[i] for t in done])
                                  for i, n in enumerate(obj.names)],
                           f"Parallel coordinates (complete trials; colour: {obj.names[0]})")


def importance_target(obj: Objectives, i: int) -> Any:
    """PED-ANOVA's ``target`` for metric ``i`` (it takes lower as better)."""
    sign = -1.0 if obj.maximize[i] else 1.0
    return lambda t: sign * t.values[i]
