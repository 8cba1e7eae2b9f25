"""The learning-curve picture draws the study's own metric, whatever it is (issue 28, item 2):
its panels, the names in them, and when an axis is logarithmic."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import optuna
import pytest

from tuner.nn.pictures import curve_panels, learning_curve_svg, wants_log_axis
from tuner.objectives import ObjectiveContext
from tuner.store.artifacts import LEARNING_CURVE, open_store, read_artifact, trial_artifacts

SVG = "{http://www.w3.org/2000/svg}"
REGRESSION = {"val_mse": [33000.0, 900.0, 300.0, 180.0], "train_loss": [30000.0, 800.0, 280.0,
              170.0], "val_loss": [33000.0, 900.0, 300.0, 180.0]}
CLASSIFICATION = {"train_loss": [1.2, 0.8, 0.5], "val_loss": [1.1, 0.85, 0.6],
                  "val_accuracy": [0.3, 0.6, 0.8]}


def _panels(svg: str) -> list[dict]:
    """Each panel of the picture: its title, axis label, tick labels, how many of its points
    are drawn inside it, and the legend entries under it."""
    root = ET.fromstring(svg)  # also proves the picture is well-formed XML
    texts = [(float(e.get("x", 0)), float(e.get("y", 0)), "".join(e.itertext()))
             for e in root.iter(f"{SVG}text")]
    points = [(float(c.get("cx")), float(c.get("cy"))) for c in root.iter(f"{SVG}circle")]
    panels = []
    for rect in root.iter(f"{SVG}rect"):
        if rect.get("fill") != "#fafafa":
            continue
        x, y, w, h = (float(rect.get(k)) for k in ("x", "y", "width", "height"))
        panels.append({
            "title": next(t for tx, ty, t in texts if x <= tx <= x + w and y - 12 <= ty < y),
            "label": next(t for tx, ty, t in texts if x - 70 <= tx < x - 45),
            "yticks": [t for tx, ty, t in texts if tx == x - 5 and y - 1 <= ty - 4 <= y + h + 1],
            "points": sum(x - 1 <= px <= x + w + 1 and y - 1 <= py <= y + h + 1
                          for px, py in points),
            "legend": [t for tx, ty, t in texts
                       if x <= tx <= x + w + 20 and y + h + 30 < ty < y + h + 100],
        })
    return panels


def test_a_regression_curve_draws_its_metric_and_no_accuracy_panel():
    svg = learning_curve_svg(REGRESSION, "trial 0: learning curve", metric="val_mse")
    panels = _panels(svg)
    assert [p["title"] for p in panels] == ["loss per epoch", "val_mse per epoch"]
    assert "accuracy" not in svg
    assert panels[1]["legend"] == ["val_mse (the study's metric)"]
    assert panels[0]["legend"] == ["train_loss", "val_loss"]
    assert [p["points"] for p in panels] == [8, 4], "every point drawn, inside its own panel"


def test_a_classification_curve_keeps_the_loss_and_accuracy_panels():
    panels = _panels(learning_curve_svg(CLASSIFICATION, "t", metric="val_accuracy"))
    assert [p["title"] for p in panels] == ["loss per epoch", "validation accuracy per epoch"]
    assert panels[1]["yticks"] == ["0", "0.2", "0.4", "0.6", "0.8", "1"], "accuracy on 0..1"
    assert panels[1]["legend"] == ["val_accuracy (the study's metric)"]
    assert [p["points"] for p in panels] == [6, 3]
    assert not any("log" in p["label"] for p in panels)


def test_any_name_a_user_reports_is_drawn_beside_or_with_the_metric():
    curve = {**CLASSIFICATION, "val_f1": [0.25, 0.55, 0.75], "grad_norm": [14.0, 9.0, 6.5],
             "aux_loss": [0.3, 0.2, 0.1]}
    panels = _panels(learning_curve_svg(curve, "t", metric="val_accuracy"))
    titles = [p["title"] for p in panels]
    assert titles == ["loss per epoch", "validation accuracy · val_f1 per epoch",
                      "grad_norm per epoch"], "f1 overlaps accuracy; grad_norm does not"
    assert panels[0]["legend"] == ["train_loss", "val_loss", "aux_loss"], "every *_loss"
    assert [p["points"] for p in panels] == [9, 6, 3]


def test_a_name_with_markup_or_braces_is_drawn_as_plain_text():
    svg = learning_curve_svg({"val_mse": [3.0, 2.0], "my{odd}<name>&": [7.0, 9.0]}, "t",
                             metric="val_mse")
    (_, odd) = _panels(svg)
    assert odd["legend"] == ["my{odd}<name>&"] and odd["points"] == 2


def test_a_metric_that_is_a_loss_is_drawn_once_in_the_loss_panel():
    curve = {"val_loss": [1.1, 0.9], "train_loss": [1.2, 0.8], "val_accuracy": [0.4, 0.6]}
    svg = learning_curve_svg(curve, "t", metric="val_loss")
    panels = _panels(svg)
    assert [p["title"] for p in panels] == ["loss per epoch", "validation accuracy per epoch"]
    assert panels[0]["legend"] == ["val_loss (the study's metric)", "train_loss"]
    assert svg.count(">val_loss") == 1 and panels[0]["points"] == 4


@pytest.mark.parametrize("curve, titles", [
    ({"train_loss": [math.nan, math.inf], "val_mse": [5.0, 4.0]}, ["val_mse per epoch"]),
    ({"val_mse": [5.0, 4.0], "val_accuracy": []}, ["val_mse per epoch"]),
    ({"train_loss": [1.0]}, ["loss per epoch"]),
])
def test_a_panel_without_data_is_left_out(curve, titles):
    panels = _panels(learning_curve_svg(curve, "t", metric="val_mse"))
    assert [p["title"] for p in panels] == titles
    assert all(p["points"] > 0 for p in panels)


def test_nothing_finite_says_so_instead_of_drawing_empty_panels():
    svg = learning_curve_svg({"val_mse": [math.nan]}, "t", metric="val_mse")
    assert _panels(svg) == [] and "no finite value was reported" in svg


@pytest.mark.parametrize("values, log", [
    ([1.0, 100.0], False),          # exactly two decades: linear
    ([1.0, 100.5], True),
    ([100.0, 250.0, 300.0], False),
    ([33000.0, 300.0, 100.0], True),
    ([math.nan, 2.0, math.inf, 500.0], True),  # only the finite values count
    ([0.0, 1000.0], False),         # a log axis cannot show 0
    ([-1.0, 1000.0], False),
    ([], False),
])
def test_the_log_axis_rule(values, log):
    assert wants_log_axis(values) is log
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        (panel,) = _panels(learning_curve_svg({"val_mse": values}, "t", metric="val_mse"))
        assert panel["label"] == ("val_mse (log scale)" if log else "val_mse")
        assert panel["points"] == len(finite)


def test_a_log_panel_is_labelled_in_powers_of_ten_and_holds_every_point():
    (_, metric) = _panels(learning_curve_svg(REGRESSION, "t", metric="val_mse"))
    assert metric["label"] == "val_mse (log scale)"
    assert metric["yticks"] == ["100", "1000", "10000", "100000"]
    assert metric["points"] == 4


def test_past_six_panels_the_other_names_are_listed_not_dropped_silently():
    curve = {f"c{i}": [10.0 ** i, 10.0 ** i * 1.5] for i in range(8)}
    panels, not_drawn = curve_panels(curve, "c0")
    assert len(panels) == 6 and not_drawn == ["c6", "c7"]
    svg = learning_curve_svg(curve, "t", metric="c0")
    assert "also stored, not drawn: c6, c7" in svg
    height = float(re.search(r"height='(\d+)'", svg).group(1))
    last_legend = max(float(m) for m in re.findall(r"<text x='[\d.]+' dx='18' y='([\d.]+)'", svg))
    listed = float(re.search(r"y='([\d.]+)'[^>]*>also stored", svg).group(1))
    assert last_legend + 14 < listed < height - 5, "below the last legend, inside the picture"


def test_a_trials_picture_draws_the_metric_the_context_was_given(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNER_ARTIFACT_DIR", raising=False)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'r.db'}",
                                pruner=optuna.pruners.NopPruner())
    ctx = ObjectiveContext(settings={"epochs": 3}, space=None, metric="val_mse")  # type: ignore[arg-type]
    trial = study.ask()
    for step, (mse, loss) in enumerate([(33000.0, 30000.0), (400.0, 380.0), (150.0, 140.0)], 1):
        ctx.report(trial, step, mse, train_loss=loss, val_r2=1 - mse / 1000)
    ctx.finish_trial(trial)
    study.tell(trial, 150.0)
    frozen = study.trials[0]
    assert set(frozen.user_attrs["curve"]) == {"val_mse", "train_loss", "val_r2"}
    store = open_store(tmp_path / "r-artifacts", create=False)
    svg = read_artifact(store, trial_artifacts(study, frozen)[LEARNING_CURVE]).decode()
    panels = _panels(svg)
    assert [p["title"] for p in panels] == ["loss per epoch", "val_mse per epoch",
                                            "val_r2 per epoch"]
    assert panels[1]["legend"] == ["val_mse (the study's metric)"]
    assert panels[1]["label"] == "val_mse (log scale)" and "accuracy" not in svg
