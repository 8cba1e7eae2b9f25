"""``tuner report`` of a study with several objectives (issue 29, item 1): the Pareto front,
the hypervolume over trials, each metric's history and the Pareto set's table. Real SQLite
studies with the attributes tuner stores (``tuner:config``, ``feasible``, Optuna's
``constraints``, ``warm_start``); the assertions read the figures' data out of the HTML."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from tuner.core.keys import CONFIG_ATTR, CURVE, FEASIBLE, PRUNE_REASON, WARM_START
from tuner.views.report import write_report
from tuner.views.report._pareto import hypervolume

DISTS = {"lr": FloatDistribution(1e-4, 1.0, log=True),
         "init": CategoricalDistribution(["xavier_uniform", "kaiming_normal", "zeros"])}
INITS = ["xavier_uniform", "kaiming_normal"]

# (val_mse, n_params) of trials 0..6 with the constraint n_params <= 20000: trial 0 is a warm
# start's prior observation (it would dominate every other), trial 4 is infeasible (the best
# val_mse of all, on the front if it counted), trial 5 is dominated by trial 3.
SMALL = [(0.05, 500.0), (1.0, 10000.0), (0.4, 16000.0), (0.7, 12000.0), (0.1, 25000.0),
         (0.8, 14000.0), (0.3, 19000.0)]
WARM, INFEASIBLE, DOMINATED = 0, 4, 5
FRONT = [6, 2, 3, 1]  # best val_mse first


def _config(metrics: list[str], directions: list[str], constraints: list[str] | None = None,
            name: str = "mo") -> dict[str, Any]:
    study: dict[str, Any] = {"name": name, "metrics": metrics, "directions": directions,
                             "sampler": "nsga2", "pruner": "none", "n_trials": 10}
    if constraints:
        study["constraints"] = constraints
    return {"study": study, "objective": {"name": "classifier", "dataset": "digits"},
            "space": {"lr": {"low": 1e-4, "high": 1.0, "log": True}, "init": INITS}}


def _new(tmp_path: Path, metrics: list[str], directions: list[str], *, config: bool = True,
         constraints: list[str] | None = None, db: str = "t.db") -> optuna.Study:
    study = optuna.create_study(study_name="mo", directions=directions,
                                storage=f"sqlite:///{tmp_path / db}")
    study.set_metric_names(metrics)
    if config:
        study.set_user_attr(CONFIG_ATTR, _config(metrics, directions, constraints))
    return study


def _add(study: optuna.Study, number: int, values: list[float] | None, *,
         state: TrialState = TrialState.COMPLETE, bound: float | None = None,
         warm: bool = False) -> None:
    """One trial; with ``bound``, the attributes of ``n_params <= bound`` (its last value)."""
    user: dict[str, Any] = {CURVE: {"val_mse": [1.5, 1.1, values[0]], "train_loss": [1, .8, .6]}
                            } if values else {}
    system: dict[str, Any] = {}
    if bound is not None and state != TrialState.FAIL:
        slack = (values[-1] - bound) if values else 1.0
        user[FEASIBLE] = slack <= 0
        system["constraints"] = [slack]
    if warm:
        user[WARM_START] = f"old #{number}"
    if state == TrialState.PRUNED:
        user[PRUNE_REASON] = "dead init (vanishing): std 1e-9 at layer 2"
    study.add_trial(create_trial(
        state=state, values=values if state == TrialState.COMPLETE else None,
        params={"lr": 10 ** -(1 + number % 3), "init": INITS[number % 2]}, distributions=DISTS,
        user_attrs=user, system_attrs=system))


def _small(tmp_path: Path) -> optuna.Study:
    study = _new(tmp_path, ["val_mse", "n_params"], ["minimize", "minimize"],
                 constraints=["n_params <= 20000"])
    for i, values in enumerate(SMALL):
        _add(study, i, list(values), bound=20000, warm=i == WARM)
    _add(study, 7, None, state=TrialState.PRUNED, bound=20000)
    _add(study, 8, None, state=TrialState.FAIL)
    return study


def _figures(html: str) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Every plotly figure of the page as (traces, layout), read from its newPlot call."""
    decoder = json.JSONDecoder()
    out = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', html):
        data, end = decoder.raw_decode(html, m.end())
        rest = re.match(r"\s*,\s*", html[end:])
        assert rest is not None
        layout, _ = decoder.raw_decode(html, end + rest.end())
        out.append((data, layout))
    return out


def _titled(html: str, start: str) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
    found = [(d, lay) for d, lay in _figures(html) if _title(lay).startswith(start)]
    assert found, f"no figure titled {start!r}: {[_title(lay) for _, lay in _figures(html)]}"
    return found


def _title(layout: dict[str, Any]) -> str:
    title = layout.get("title", "")
    return title.get("text", "") if isinstance(title, dict) else str(title)


def _trace(traces: list[dict[str, Any]], name_start: str) -> dict[str, Any]:
    found = [t for t in traces if str(t.get("name", "")).startswith(name_start)]
    assert len(found) == 1, [t.get("name") for t in traces]
    return found[0]


def _report(study: optuna.Study, tmp_path: Path, name: str = "r.html") -> str:
    return write_report(study, tmp_path / name).read_text()


def test_the_pareto_front_is_the_feasible_own_non_dominated_trials(tmp_path):
    html = _report(_small(tmp_path), tmp_path)
    (traces, layout), = _titled(html, "Pareto front")
    front = _trace(traces, "Pareto-optimal")
    assert sorted(front["customdata"]) == sorted(FRONT)
    assert front["mode"].startswith("lines"), "the front is connected"
    assert front["line"]["shape"] == "hv", "the staircase that two minimised metrics dominate"
    assert [front["x"][k] for k in range(len(FRONT))] == sorted(SMALL[n][0] for n in FRONT)
    infeasible = _trace(traces, "infeasible")
    assert infeasible["customdata"] == [INFEASIBLE]
    assert infeasible["marker"]["symbol"] != front["marker"]["symbol"]
    assert "infeasible: breaks n_params &lt;= 20000" in infeasible["hovertext"][0]
    warm = _trace(traces, "warm start")
    assert warm["customdata"] == [WARM] and warm["marker"]["symbol"].endswith("-open")
    other = _trace(traces, "other feasible")
    assert other["customdata"] == [DOMINATED]
    constraint = _trace(traces, "constraint n_params ≤ 20000")
    assert constraint["y"] == [20000, 20000]
    assert layout["xaxis"]["title"]["text"].startswith("val_mse")
    assert layout["yaxis"]["title"]["text"].startswith("n_params")
    # the Pareto set's table: one row per member, best val_mse first, every metric a column
    table = html[html.index("<h2>Pareto set (4 trials)</h2>"):]
    assert [int(n) for n in re.findall(r"<tr data-trial='(\d+)'>", table)] == FRONT
    assert "<th>val_mse (min)</th><th>n_params (min)</th>" in table
    assert "<th class='l'>lr</th>" in table and "<td>1.6e+04</td>" in table
    assert "Pareto set: 4 trials (#6, #2, #3, #1)" in html
    assert "constraints: n_params &lt;= 20000" in html


def test_the_hypervolume_grows_to_the_hand_computed_area(tmp_path):
    html = _report(_small(tmp_path), tmp_path)
    (traces, layout), = _titled(html, "Hypervolume")
    hv = _trace(traces, "hypervolume")
    assert hv["x"] == [1, 2, 3, 4, 5, 6], "own trials only: the warm start (#0) left out"
    ys = hv["y"]
    assert all(b >= a for a, b in itertools.pairwise(ys)), ys
    # reference: the worst of the own complete trials (1.0 and 25000, the infeasible trial's),
    # out by 10% of the ranges (0.9 and 15000): (1.09, 26500). Horizontal bands under the
    # front 0.3/19000, 0.4/16000, 0.7/12000, 1.0/10000:
    area = ((1.09 - 0.3) * (26500 - 19000) + (1.09 - 0.4) * (19000 - 16000)
            + (1.09 - 0.7) * (16000 - 12000) + (1.09 - 1.0) * (12000 - 10000))
    assert area == pytest.approx(9735.0)
    assert ys[-1] == pytest.approx(area)
    assert ys[0] == pytest.approx((1.09 - 1.0) * (26500 - 10000)), "trial 1 alone"
    assert ys[3] == ys[2], "the infeasible trial 4 adds nothing"
    words = " ".join(a["text"] for a in layout["annotations"])
    assert "reference point val_mse = 1.09, n_params = 2.65e+04" in words
    assert ("each metric's worst among the 6 complete trials of the study's own, pushed out "
            "by 10% of its range") in words.replace("<br>", " ")
    assert "warm starts left out; feasible trials only" in words
    assert "Hypervolume after trial 6: 9735" in html


def test_each_metric_has_its_history_and_best_so_far(tmp_path):
    html = _report(_small(tmp_path), tmp_path)
    (mse, _), = _titled(html, "val_mse per trial (minimize)")
    (size, _), = _titled(html, "n_params per trial (minimize)")
    assert _trace(mse, "best so far (feasible)")["y"] == [1.0, 0.4, 0.4, 0.4, 0.4, 0.3]
    assert _trace(size, "best so far (feasible)")["y"] == [10000.0] * 6
    assert sorted(_trace(mse, "Pareto-optimal")["customdata"]) == sorted(FRONT)


def test_the_plots_of_one_value_say_they_show_the_first_metric(tmp_path):
    html = _report(_small(tmp_path), tmp_path)
    assert "<h2>Init schemes compared (by val_mse, the first metric)</h2>" in html
    assert "<h2>Slice plots (val_mse, the first metric)</h2>" in html
    assert "<h2>Parameter importance, per metric</h2>" in html
    for gone in ("Optimisation history", "Top ", "Best trial #"):
        assert f"<h2>{gone}" not in html
    (parallel, _), = _titled(html, "Parallel coordinates")
    labels = [d["label"] for d in parallel[0]["dimensions"]]
    assert labels[-2:] == ["val_mse", "n_params"]
    (curves, _), = _titled(html, "Learning curves of 4 Pareto-optimal trials")
    assert {t["name"] for t in curves} == {f"trial {n}" for n in FRONT}
    assert "trial 8 failed" in html and "1 pruned: dead init (vanishing)" in html


def test_a_maximised_metric_and_a_log_axis(tmp_path):
    study = _new(tmp_path, ["val_accuracy", "n_params"], ["maximize", "minimize"])
    points = [(0.90, 1e6), (0.85, 2e4), (0.60, 1e3), (0.70, 5e4), (0.95, 3e6), (0.50, 2e3)]
    for i, p in enumerate(points):
        _add(study, i, list(p))
    html = _report(study, tmp_path)
    (traces, layout), = _titled(html, "Pareto front")
    front = _trace(traces, "Pareto-optimal")
    assert sorted(front["customdata"]) == [0, 1, 2, 4], "0.70 / 5e4 and 0.50 / 2e3 dominated"
    assert front["x"][0] == 0.95 and front["line"]["shape"] == "hv", "best accuracy first"
    assert layout["yaxis"]["type"] == "log" and "log scale" in layout["yaxis"]["title"]["text"]
    assert layout["xaxis"]["type"] == "linear"
    assert "higher is better" in layout["xaxis"]["title"]["text"]
    assert "infeasible" not in json.dumps(traces), "no constraints: nothing is infeasible"
    (hv, _), = _titled(html, "Hypervolume")
    # losses (-acc, n): reference (-0.5 + 0.045, 3e6 + 2.999e5); front by -acc: 0.95/3e6,
    # 0.90/1e6, 0.85/2e4, 0.60/1e3
    rx, ry = -0.455, 3e6 + 0.1 * (3e6 - 1e3)
    area = ((rx + 0.95) * (ry - 3e6) + (rx + 0.90) * (3e6 - 1e6) + (rx + 0.85) * (1e6 - 2e4)
            + (rx + 0.60) * (2e4 - 1e3))
    assert hv[0]["y"][-1] == pytest.approx(area)


def test_three_metrics_give_a_scatter_per_pair(tmp_path):
    study = _new(tmp_path, ["val_mse", "n_params", "seconds"], ["minimize"] * 3)
    points = [(1.0, 10.0, 5.0), (0.5, 20.0, 4.0), (0.6, 30.0, 3.0), (0.7, 40.0, 6.0),
              (0.4, 50.0, 9.0)]
    for i, p in enumerate(points):
        _add(study, i, list(p))
    html = _report(study, tmp_path)
    plots = [(d, lay) for d, lay in _figures(html) if lay.get("meta") == "pareto"]
    assert [_title(lay) for _, lay in plots] == ["n_params against val_mse",
                                                  "seconds against val_mse",
                                                  "seconds against n_params"]
    for traces, _ in plots:
        front = _trace(traces, "Pareto-optimal")
        assert sorted(front["customdata"]) == [0, 1, 2, 4], "trial 3 is beaten by trial 2"
        assert "lines" not in front["mode"], "a projection of the front is no staircase"
    (hv, _), = _titled(html, "Hypervolume")
    ys = hv[0]["y"]
    assert all(b >= a for a, b in itertools.pairwise(ys)) and ys[-1] > ys[0] > 0


def test_a_study_of_only_pruned_trials_is_reported(tmp_path):
    study = _new(tmp_path, ["val_mse", "n_params"], ["minimize", "minimize"],
                 constraints=["n_params <= 20000"])
    for i in range(3):
        _add(study, i, None, state=TrialState.PRUNED, bound=20000)
    html = _report(study, tmp_path)
    assert "No trial completed: every finished trial was pruned." in html
    assert "Not shown: the Pareto front needs at least 1 complete trials" in html
    assert "Not shown: the hypervolume needs" in html
    assert "Not shown: the history of each metric needs" in html
    assert "Not shown: parameter importance needs at least 2" in html
    assert "3 pruned: dead init (vanishing)" in html and "<h2>Pareto set" not in html


def test_no_feasible_trial_and_a_study_made_outside_tuner(tmp_path):
    study = _new(tmp_path, ["val_mse", "n_params"], ["minimize", "minimize"],
                 constraints=["n_params <= 100"])
    for i, values in enumerate(SMALL[1:4]):
        _add(study, i, list(values), bound=100)
    html = _report(study, tmp_path)
    assert "none of the 3 complete trials is feasible" in html
    assert "None of them is feasible" in html
    plain = optuna.create_study(study_name="plain", directions=["minimize", "maximize"],
                                storage=f"sqlite:///{tmp_path / 'p.db'}")
    for i, values in enumerate([(1.0, 2.0), (2.0, 3.0), (3.0, 1.0)]):
        _add(plain, i, list(values))
    html = _report(plain, tmp_path, "p.html")
    (traces, layout), = _titled(html, "Pareto front")
    assert sorted(_trace(traces, "Pareto-optimal")["customdata"]) == [0, 1]
    assert layout["xaxis"]["title"]["text"].startswith("objective 1")
    assert "created outside tuner" in html


def test_the_sweep_agrees_with_optunas_hypervolume():
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(0)
    for _ in range(20):
        points = rng.random((12, 2))
        ref = np.array([1.1, 1.2])
        assert hypervolume(points, ref) == pytest.approx(compute_hypervolume(points, ref))
