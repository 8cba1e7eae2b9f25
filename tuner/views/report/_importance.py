"""The report's parameter importance: PED-ANOVA, the method optuna-dashboard shows too, named
beside the figure, with a plain warning while a study has too few complete trials for it."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial

from tuner.views.report._figures import LAYOUT, Figure, complete, param_label, too_few

IMPORTANCE_METHOD = "PED-ANOVA"
IMPORTANCE_TOP = 0.1  # PED-ANOVA's default target quantile: it compares the best 10% with all
IMPORTANCE_MEANINGFUL = 20  # complete trials before its ranking means much (2 / IMPORTANCE_TOP)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


Target = Callable[[FrozenTrial], float]


def param_importances(study: optuna.Study, target: Target | None = None) -> dict[str, float]:
    """The importance of each searched parameter (real names: ``batch_size``), most important
    first, summing to 1: PED-ANOVA on the complete trials, ranked by the study's direction
    (with ``target``: by it, lower is better; one metric of a multi-objective study).

    This is what optuna-dashboard shows too: it hard-codes ``PedAnovaImportanceEvaluator()``
    with the same selection of the best trials, so the report and the dashboard agree.
    """
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    with warnings.catch_warnings():  # "importances will be equal", "regimes have < 2 trials"
        warnings.simplefilter("ignore")
        scores = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(),
                                       target=target)
    return {param_label(k): v for k, v in scores.items()}


def importances(study: optuna.Study, trials: list[FrozenTrial], *,
                target: Target | None = None, metric: str | None = None) -> Figure:
    """PED-ANOVA importance of each searched parameter (complete trials), the method named in
    the title, and a plain warning on the figure while there are too few trials for it.

    A multi-objective study passes one ``metric`` at a time, its ``target`` (lower is better)
    and ``trials`` whose value is that metric."""
    n = len(complete(trials))
    if n < 2:
        return too_few(n, 2, "parameter importance" + (f" of {metric}" if metric else ""))
    try:
        scores = param_importances(study, target)
    except (ValueError, RuntimeError, ImportError) as e:
        return f"Not computable: parameter importance failed ({e})."
    if not scores:
        return "Not computable: no parameter varies across the complete trials."
    names, values = list(scores)[::-1], list(scores.values())[::-1]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", marker_color="#4c78a8",
                           text=[f"{v:.2f}" for v in values]))
    fig.update_layout(
        title=(f"Importance for {metric} ({IMPORTANCE_METHOD}; {n} complete trials)" if metric
               else f"Parameter importance ({IMPORTANCE_METHOD}, the dashboard's method too; "
                    f"{n} complete trials)"),
        xaxis_title="importance (sums to 1): how differently the best 10% of trials set it",
        **{**LAYOUT, "margin": {**LAYOUT["margin"], "t": 90}})
    fig.update_yaxes(automargin=True, ticksuffix=" ")  # names clear of their bars
    if n < IMPORTANCE_MEANINGFUL:
        fig.add_annotation(
            text=f"Only {n} complete trials: this ranking means little before about "
                 f"{IMPORTANCE_MEANINGFUL} ({IMPORTANCE_METHOD} judges by the best 10%, here "
                 f"{_plural(math.ceil(round(IMPORTANCE_TOP * n, 9)), 'trial')}).",
            xref="paper", yref="paper", x=0, y=1.02, xanchor="left", yanchor="bottom",
            showarrow=False, align="left", font={"size": 13, "color": "#5d4200"},
            bgcolor="#fff8e1", bordercolor="#f0b400", borderpad=4)
    return fig
