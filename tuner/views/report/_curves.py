"""The report's learning curves: the study's metric per epoch of the top trials, beside any
other curve they stored (user attribute ``curve``, ``{name: [one value per epoch]}``), chosen
from a menu."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from tuner.core.keys import CURVE
from tuner.views.report._figures import LAYOUT, Figure, metric_layout


def curve_names(trials: list[FrozenTrial], metric: str) -> list[str]:
    """Every curve name the trials stored, the study's metric first, then in stored order."""
    names = dict.fromkeys(k for t in trials for k in _curve(t))
    return sorted(names, key=lambda k: k != metric)


def learning_curves(top: list[FrozenTrial], metric: str, *, which: str = "the top {n}",
                    role: str = "the study's metric") -> Figure:
    """The study's ``metric`` per epoch of the ``top`` trials (left; the first name stored when
    none of them stores a curve under it), and any other stored name (right: ``train_loss`` at
    first, the others from the menu above it). Each axis is a log axis when its values span
    more than two decades (:func:`tuner.views.report._figures.metric_scale`). The title names
    them as ``which`` ("the top {n}" trials) and the left plot's metric as ``role``."""
    shown = [t for t in top if _curve(t)]
    if not shown:
        return "Not shown: the trials store no learning curves (user attribute 'curve')."
    left, *others = curve_names(shown, metric)
    title = f"{left} ({role})" if left == metric else left
    fig = (make_subplots(rows=1, cols=2, subplot_titles=(title, ""), horizontal_spacing=0.12)
           if others else make_subplots(rows=1, cols=1, subplot_titles=(title,)))
    colors = {t.number: f"hsl({i * 360 // len(shown)},65%,45%)" for i, t in enumerate(shown)}
    _traces(fig, shown, left, colors, col=1, visible=True, legend=True)
    fig.update_layout(yaxis=_yaxis(shown, left))
    first = "train_loss" if "train_loss" in others else (others[0] if others else None)
    buttons = []
    for name in others:
        _traces(fig, shown, name, colors, col=2, visible=name == first, legend=False)
    for name in others:
        visible = [tr.meta == left or tr.meta == name for tr in fig.data]
        axis = _yaxis(shown, name)
        buttons.append({"label": name, "method": "update", "args": [
            {"visible": visible},
            {**{f"yaxis2.{k}": v for k, v in axis.items() if k != "title"},
             "yaxis2.title.text": axis["title"]["text"]}]})
    if others:
        fig.update_layout(yaxis2=_yaxis(shown, first), updatemenus=[{
            "buttons": buttons, "active": others.index(first), "direction": "down",
            "x": 0.78, "xanchor": "center", "y": 1.02, "yanchor": "bottom",
            "showactive": True, "bgcolor": "white", "bordercolor": "#999"}])
    fig.update_xaxes(title_text="epoch", dtick=1 if _epochs(shown) <= 12 else None)
    fig.update_layout(title=f"Learning curves of {which.format(n=len(shown))} trials",
                      **{**LAYOUT, "margin": {**LAYOUT["margin"], "t": 90}})
    return fig


def _curve(t: FrozenTrial) -> dict[str, list[Any]]:
    curve = t.user_attrs.get(CURVE)
    if not isinstance(curve, dict):
        return {}
    return {k: v for k, v in curve.items() if isinstance(v, list) and v}


def _values(trials: list[FrozenTrial], name: str) -> list[float]:
    """``name``'s finite values over ``trials`` (what its axis must show)."""
    return [v for t in trials for v in _curve(t).get(name, [])
            if isinstance(v, int | float) and math.isfinite(v)]


def _epochs(trials: list[FrozenTrial]) -> int:
    return max(len(v) for t in trials for v in _curve(t).values())


def _yaxis(trials: list[FrozenTrial], name: str | None) -> dict[str, Any]:
    return metric_layout(_values(trials, name) if name else [], name or "")


def _traces(fig: go.Figure, trials: list[FrozenTrial], name: str, colors: dict[int, str],
            col: int, visible: bool, legend: bool) -> None:
    for t in trials:
        ys = _curve(t).get(name)
        if not ys:
            continue
        fig.add_scatter(x=list(range(1, len(ys) + 1)), y=ys, mode="lines+markers",
                        name=f"trial {t.number}", legendgroup=str(t.number), meta=name,
                        hovertemplate=f"trial {t.number}<br>epoch %{{x}}<br>%{{meta}} %{{y}}"
                                      "<extra></extra>",
                        showlegend=legend, visible=visible, line={"color": colors[t.number]},
                        row=1, col=col)
