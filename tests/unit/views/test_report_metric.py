"""The report reads the study's own metric (issue 28, item 2): its learning curves draw it (and
any other stored curve, from a menu), and every plot of it turns logarithmic when its values
span more than two decades. Real SQLite studies with the user attributes tuner stores."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests._browser import dump_dom
from tuner.core.keys import CONFIG_ATTR, CURVE
from tuner.views.report import _figures as figs
from tuner.views.report import build_report, write_report
from tuner.views.report._curves import learning_curves

# What the regression trials end on: one diverged (33 000), the rest between 100 and 300.
FINALS = [240.0, 180.0, 33000.0, 120.0, 290.0, 150.0, 210.0, 105.0]


def _study(tmp_path: Path, finals: list[float], metric: str = "val_mse",
           direction: str = "minimize", curves: bool = True,
           pruned: float | None = 500.0, db: str = "s.db",
           far_start: int | None = None) -> optuna.Study:
    """``finals`` trials (one more pruned at ``pruned``, after the second), each with a curve
    of 4 epochs falling to its final value; trial ``far_start`` starts at 33 000."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / db}", study_name="reg",
                                direction=direction,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr(CONFIG_ATTR, {"study": {"name": "reg", "metric": metric,
                                                "direction": direction}})
    for i, final in enumerate(finals):
        t = study.ask()
        t.suggest_float("lr", 1e-4, 1.0, log=True)
        t.suggest_categorical("init", ["xavier_uniform", "kaiming_normal"])
        values = [final * (1 + 2 / epoch) for epoch in range(1, 5)]
        if i == far_start:
            values[0] = 33000.0
        if curves:
            t.set_user_attr(CURVE, {metric: values, "train_loss": [v * 0.9 for v in values],
                                    "val_r2": [1 - v / 400 for v in values]})
        for step, v in enumerate(values, 1):
            t.report(v, step)
        study.tell(t, final)
        if i == 1 and pruned is not None:  # a pruned trial, at its last reported value
            p = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
                           "init": optuna.distributions.CategoricalDistribution(
                               ["xavier_uniform", "kaiming_normal"])})
            p.report(pruned, 1)
            study.tell(p, state=TrialState.PRUNED)
    return study


def _top(study: optuna.Study, n: int = 5) -> list:
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")[:n]


def test_a_val_mse_report_draws_val_mse_curves_of_the_top_trials(tmp_path):
    study = _study(tmp_path, FINALS)
    top = _top(study)
    fig = learning_curves(top, "val_mse")
    left = [tr for tr in fig.data if tr.xaxis == "x"]
    assert {tr.meta for tr in left} == {"val_mse"}
    assert [tr.name for tr in left] == [f"trial {t.number}" for t in top]
    assert list(left[0].y) == top[0].user_attrs[CURVE]["val_mse"]
    assert fig.layout.annotations[0].text == "val_mse (the study's metric)"
    assert "accuracy" not in fig.to_json()
    # the other stored names, from the menu: train_loss first, val_r2 on the same axes
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["train_loss", "val_r2"]
    assert menu.active == 0
    right = [tr for tr in fig.data if tr.xaxis == "x2"]
    assert {tr.meta for tr in right if tr.visible} == {"train_loss"}
    r2 = menu.buttons[1].args
    shown = [tr.meta for tr, on in zip(fig.data, r2[0]["visible"], strict=True) if on]
    assert set(shown) == {"val_mse", "val_r2"} and len(shown) == 2 * len(top)
    assert r2[1]["yaxis2.title.text"] == "val_r2"
    html = build_report(study)
    assert html.count('"meta":"val_mse"') == len(top), "the report draws those curves"


@pytest.mark.parametrize("finals, log", [(FINALS, True), ([f for f in FINALS if f < 1000], False)])
def test_every_plot_of_the_metric_is_logarithmic_when_one_trial_diverged(tmp_path, finals, log):
    study = _study(tmp_path, finals)
    trials = study.trials
    axes = {
        "history": figs.history(trials, "val_mse", False).layout.yaxis,
        "slice": figs.slice_plot(trials, "lr", "val_mse").layout.yaxis,
        "by init": figs.by_category(trials, "init", "val_mse", False).layout.yaxis,
    }
    for name, axis in axes.items():
        assert (axis.type == "log") is log, name
        assert axis.title.text == ("val_mse (log scale)" if log else "val_mse"), name
    (metric_dim,) = [d for d in figs.parallel(trials, "val_mse").data[0].dimensions
                     if d.label.startswith("val_mse")]
    values = [t.value for t in trials if t.state == TrialState.COMPLETE]
    if log:
        assert metric_dim.label == "val_mse (log scale)"
        assert list(metric_dim.values) == pytest.approx([math.log10(v) for v in values])
        assert "33000" not in metric_dim.ticktext and "10000" in metric_dim.ticktext
        lo, hi = metric_dim.range
        assert lo <= math.log10(min(values)) and hi >= math.log10(max(values))
    else:
        assert metric_dim.label == "val_mse" and list(metric_dim.values) == values


def test_a_log_axis_has_readable_labels_around_every_value_and_keeps_the_pruned_trials(tmp_path):
    study = _study(tmp_path, FINALS, pruned=500.0)
    fig = figs.history(study.trials, "val_mse", False)
    pruned = next(tr for tr in fig.data if tr.name == "pruned (last reported)")
    assert list(pruned.y) == [500.0], "a pruned trial still sits at its last reported value"
    axis = fig.layout.yaxis
    assert list(axis.ticktext) == [f"{t:g}" for t in axis.tickvals]
    assert axis.tickvals[0] <= 105.0 and axis.tickvals[-1] >= 33000.0
    lo, hi = axis.range
    assert lo < math.log10(axis.tickvals[0]) and hi > math.log10(axis.tickvals[-1]), \
        "padded: no label in a corner"


def test_a_learning_curve_that_spans_decades_is_drawn_on_a_log_axis(tmp_path):
    best = FINALS.index(min(FINALS))  # its first epoch far off, then it settled
    fig = learning_curves(_top(_study(tmp_path, FINALS, far_start=best)), "val_mse")
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "val_mse (log scale)"
    assert fig.layout.yaxis2.type == "log", "train_loss (0.9 x val_mse) spans as much"
    train, r2 = (b.args[1] for b in fig.layout.updatemenus[0].buttons)
    assert (train["yaxis2.type"], r2["yaxis2.type"]) == ("log", "linear"), \
        "each menu entry sets the axis its own values need"
    assert r2["yaxis2.title.text"] == "val_r2 (linear axis: values ≤ 0)"
    assert r2["yaxis2.tickvals"] is None and r2["yaxis2.autorange"] is True, "log ticks undone"
    untouched = learning_curves(_top(_study(tmp_path, FINALS, db="calm.db")), "val_mse")
    assert untouched.layout.yaxis.type == "linear"


def test_a_metric_with_values_below_zero_stays_linear_and_says_why(tmp_path):
    finals = [0.8, 0.7, -33000.0, 0.9, 0.85]  # r2: one trial diverged far below zero
    study = _study(tmp_path, finals, metric="val_r2", direction="maximize", pruned=None)
    axis = figs.history(study.trials, "val_r2", True).layout.yaxis
    assert axis.type == "linear"
    assert axis.title.text == "val_r2 (linear axis: values ≤ 0)"
    calm = _study(tmp_path, [0.8, 0.7, -0.2, 0.9], metric="val_r2", direction="maximize",
                  pruned=None, db="calm.db")  # below zero, but no two decades apart: no word
    assert figs.history(calm.trials, "val_r2", True).layout.yaxis.title.text == "val_r2"


def test_curves_stored_without_the_metrics_name_still_draw_and_none_says_so(tmp_path):
    study = _study(tmp_path, FINALS[:4], metric="rmse_of_mine")
    fig = learning_curves(_top(study), "value")  # a plain Optuna study calls it "value"
    assert fig.layout.annotations[0].text == "rmse_of_mine", "the first stored name instead"
    bare = _study(tmp_path, FINALS[:3], curves=False, db="bare.db")
    assert learning_curves(_top(bare), "val_mse").startswith("Not shown: the trials store no")


def test_a_classification_report_still_draws_accuracy_and_train_loss(tmp_path):
    study = _study(tmp_path, [0.8, 0.92, 0.85, 0.6], metric="val_accuracy",
                   direction="maximize", pruned=None)
    fig = learning_curves(_top(study), "val_accuracy")
    assert fig.layout.annotations[0].text == "val_accuracy (the study's metric)"
    assert {tr.meta for tr in fig.data if tr.visible is not False} == {"val_accuracy",
                                                                       "train_loss"}
    assert fig.layout.yaxis.type == "linear"


@pytest.mark.browser
def test_the_log_axes_are_drawn_in_chromium(tmp_path):
    path = write_report(_study(tmp_path, FINALS), tmp_path / "r.html")
    dom = dump_dom(path.as_uri())
    assert dom.count("val_mse (log scale)") >= 4, "history, slice, init boxes, parallel"
    assert ">10000<" in dom and ">train_loss<" in dom, "log ticks, the curve menu"


def test_a_diverged_trial_at_1e16_gets_evenly_spaced_log_labels(tmp_path):
    # what studies/regression.toml ends on: one sgd trial at 1.15e16, the good ones near 150
    study = _study(tmp_path, [146.1, 1.15e16, 151.5, 4.468e4], curves=False, pruned=None)
    axes = [figs.history(study.trials, "val_mse", False).layout.yaxis,
            figs.by_category(study.trials, "init", "val_mse", False).layout.yaxis]
    (dim,) = [d for d in figs.parallel(study.trials, "val_mse").data[0].dimensions
              if d.label.startswith("val_mse")]
    for ticks in [list(a.tickvals) for a in axes] + [[10 ** v for v in dim.tickvals]]:
        assert ticks[0] <= 146.1 and ticks[-1] >= 1.15e16, ticks
        gaps = {round(math.log10(b / a), 6) for a, b in itertools.pairwise(ticks)}
        assert len(gaps) == 1, f"uneven gaps between labels (1e+16 next to 1e+17): {ticks}"
        assert 3 <= len(ticks) <= 9, ticks


def test_pruned_trials_that_reported_nothing_are_said_to_be_not_plotted(tmp_path):
    study = _study(tmp_path, FINALS, curves=False)  # one pruned at 500 after trial 1
    for _ in range(2):  # diverged in epoch 1: pruned before any report
        t = study.ask()
        t.suggest_float("lr", 1e-4, 1.0, log=True)
        t.set_user_attr("prune_reason", "training diverged in epoch 1 (training loss=nan)")
        study.tell(t, state=TrialState.PRUNED)
    html = build_report(study)
    assert ("3 pruned (1 shown as grey × at their last reported value, 2 not plotted: "
            "they reported no value)") in html
    assert ("2 pruned: training diverged in epoch N (training loss=nan) "
            "— not plotted: no value reported") in html
    assert "1 pruned: by the pruner</li>" in html


def test_numbers_chosen_from_a_list_get_one_column_each_not_a_range(tmp_path):
    # examples/regression_mlp.toml: width = [32, 64] is two choices, not an axis from 30 to 65
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'w.db'}", direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    for i in range(8):
        study.enqueue_trial({"width": [128, 32, 64][i % 3]})
        t = study.ask()
        t.suggest_float("lr", 1e-4, 1.0, log=True)
        width = t.suggest_categorical("width", [32, 64, 128])
        study.tell(t, 100.0 + width + i)
    axis = figs.slice_plot(study.trials, "width", "val_mse").layout.xaxis
    assert axis.type == "category" and list(axis.categoryarray) == [32, 64, 128]
    assert list(axis.range) == [-0.5, 2.5], "half a column of room either side"
    (dim,) = [d for d in figs.parallel(study.trials, "val_mse").data[0].dimensions
              if d.label == "width"]
    assert list(dim.ticktext) == ["32", "64", "128"], "in numeric order, not as text"
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert list(dim.values) == [[32, 64, 128].index(t.params["width"]) for t in done]
