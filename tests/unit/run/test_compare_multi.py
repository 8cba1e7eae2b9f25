"""``tuner compare`` of a study with several metrics (issue 29): by hypervolume, with one
reference point for all runs, a hypervolume-so-far curve per run, and the table, plot and raw
results of a single-metric comparison."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from tests.conftest import to_toml
from tuner.run.compare import Comparison, Run, _default_target, score_by_hypervolume
from tuner.search.best_so_far import trials_to_target
from tuner.search.hypervolume import hypervolume, hypervolume_so_far, reference_losses

TWO_METRICS = '''
def objective(trial, ctx):
    hp = ctx.suggest(trial)
    x, y = hp["x"], hp["y"]
    return {"loss": x * x + y, "size": (1 - x) ** 2 + y}
'''


def test_compare_of_two_metrics_by_hypervolume_writes_plot_table_and_results(
        tmp_path, monkeypatch, capsys):
    from tuner.cli import main  # in process: the command's own lines and files

    (tmp_path / "compare_two_metrics.py").write_text(TWO_METRICS)
    monkeypatch.chdir(tmp_path)  # where a `module:function` objective is imported from
    path = tmp_path / "mo.toml"
    path.write_text(to_toml({
        "study": {"name": "mo", "metrics": ["loss", "size"], "directions": ["minimize"] * 2,
                  "constraints": ["size <= 0.9"], "sampler": "tpe", "pruner": "none",
                  "n_trials": 6, "seed": 0},
        "objective": {"name": "compare_two_metrics:objective"},
        "space": {"x": {"low": 0.0, "high": 1.0}, "y": {"low": 0.0, "high": 0.5}}}))
    assert main(["compare", str(path), "--samplers", "random,nsga2", "--repeats", "2",
                 "--jobs", "2", "-o", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "comparing random, nsga2 on study 'mo' by hypervolume of loss and size" in captured.err
    assert "random seed 0: 6 complete trials, " in captured.err
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["best.png", "results.json", "table.md"]
    assert (out / "best.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = json.loads((out / "results.json").read_text())
    assert (raw["metric"], raw["direction"]) == ("hypervolume", "maximize")
    assert raw["metrics"] == ["loss", "size"] and raw["constraints"] == ["size <= 0.9"]
    assert [(r["sampler"], r["seed"]) for r in raw["runs"]] == [
        ("random", 0), ("random", 1), ("nsga2", 0), ("nsga2", 1)]
    # the reference point: each metric's worst among every run's complete feasible trials,
    # pushed out by 10% of its range
    feasible = np.array([v for r in raw["runs"] for v in _feasible(r)])
    assert all((v[1] <= 0.9) == f for r in raw["runs"]
               for v, f in zip(r["values"], r["feasible"], strict=True))
    worst, best = feasible.max(axis=0), feasible.min(axis=0)
    assert raw["reference"] == pytest.approx(list(worst + 0.1 * (worst - best)))
    assert raw["reference_points"] == len(feasible)
    for r in raw["runs"]:
        assert len(r["values"]) == len(r["best"]) == len(r["feasible"]) == 6
        curve = [b for b in r["best"] if b is not None]
        assert curve and all(b >= a for a, b in itertools.pairwise(curve)), r["best"]
        assert curve[-1] == pytest.approx(hypervolume(
            np.array(_feasible(r)),
            np.array(raw["reference"])))
    finals = sorted(r["best"][-1] for r in raw["runs"])
    assert raw["target"] == finals[2]  # half of the four runs reach it: the median final
    assert [s["sampler"] for s in raw["summary"]] == ["random", "nsga2"]
    table = (out / "table.md").read_text()
    assert table.startswith("mo: hypervolume of loss (minimize) and size (minimize), 6 trials "
                            "per run, target hypervolume ")
    assert "reference point loss = " in table and ", size = " in table
    assert f"each metric's worst among the {len(feasible)} complete feasible trials" in table
    assert "feasible trials only (size <= 0.9)" in table
    assert "final hypervolume: median [q25, q75]" in table
    assert "| random | 2 |" in table and "| nsga2 | 2 |" in table
    assert "| nsga2 | 2 |" in captured.out


def _feasible(run: dict) -> list[list[float]]:
    """A run's complete feasible trials' values, from results.json."""
    return [v for v, f in zip(run["values"], run["feasible"], strict=True)
            if v is not None and f]


def _runs(points: dict[str, list[tuple[list[float] | None, bool, str]]]) -> list[Run]:
    return [Run(name.split()[0], i, values=[v for v, _, _ in trials],
                states=[s for _, _, s in trials], elapsed_s=1.0,
                feasible=[f for _, f, _ in trials])
            for i, (name, trials) in enumerate(points.items())]


C, F, P = "COMPLETE", "FAIL", "PRUNED"


def test_the_reference_point_and_the_hypervolume_by_hand(tmp_path):
    # acc is maximised, size minimised; "size <= 50" holds for all but two trials
    runs = _runs({
        "random a": [([0.5, 10.0], True, C), (None, True, F), ([0.9, 30.0], True, C),
                     ([0.95, 100.0], False, C)],
        "random b": [([0.7, 20.0], True, C), ([0.6, 40.0], True, C)],
        "tpe a": [(None, True, P), ([0.99, 200.0], False, C)],  # nothing feasible
    })
    c = Comparison("s", "hypervolume", "maximize", 2, ["random", "tpe"], runs, math.nan, 0.5,
                   metrics=["acc", "size"], directions=["maximize", "minimize"],
                   constraints=["size <= 50"])
    score_by_hypervolume(c)
    # feasible: acc 0.5 … 0.9 (worst 0.5, range 0.4), size 10 … 40 (worst 40, range 30); the
    # infeasible 0.95/100 and 0.99/200 take no part
    assert c.reference == pytest.approx([0.46, 43.0]) and c.reference_points == 4
    a, b, none = (r.best for r in c.runs)
    # 0.5/10 alone: (0.5 - 0.46) * (43 - 10); the failed trial adds nothing; with 0.9/30 the
    # band (0.9 - 0.46) * (43 - 30) on top of (0.5 - 0.46) * (30 - 10); the infeasible nothing
    assert a == pytest.approx([1.32, 1.32, 6.52, 6.52])
    assert b == pytest.approx([5.52, 5.52])  # 0.6/40 is dominated by 0.7/20
    assert none == [None, None]
    assert hypervolume(np.array([[-0.9, 30.0], [-0.5, 10.0]]), np.array([-0.46, 43.0])) == \
        pytest.approx(6.52)
    c.target = _default_target(c)  # finals 6.52, 5.52 and none: two of the three runs
    assert c.target == pytest.approx(5.52)
    for r in c.runs:
        r.to_target = trials_to_target(r.best, c.target, maximize=True)
    assert [r.to_target for r in c.runs] == [3, 1, None]
    rows = {row["sampler"]: row for row in c.summary()}
    assert rows["random"]["expected_trials_to_target"] == 2.0  # (3 + 1) / 2
    # a run without a feasible trial dominates nothing: its final hypervolume is 0
    assert rows["tpe"]["reached"] == 0 and rows["tpe"]["final_best_median"] == 0.0
    assert rows["random"]["final_best_median"] == pytest.approx((6.52 + 5.52) / 2)
    table = c.table()
    assert "| tpe | 1 | 0/1 | > 2 | never reached | > 1.00x | 0 [0, 0] |" in table
    assert "s: hypervolume of acc (maximize) and size (minimize), 2 trials per run" in table
    assert ("reference point acc = 0.46, size = 43: each metric's worst among the 4 complete "
            "feasible trials of all runs, pushed out by 10% of its range; feasible trials only "
            "(size <= 50)") in table
    assert "infeasible trials (spent, not in the hypervolume): random 1 of 5 complete, " \
        "tpe 1 of 1 complete" in table
    assert "failed trials (counted as trials spent): random 1 of 6, tpe 0 of 2" in table
    paths = c.write(tmp_path / "out")
    raw = json.loads(paths["results"].read_text(), parse_constant=lambda n: pytest.fail(n))
    assert raw["reference"] == pytest.approx([0.46, 43.0])
    assert raw["runs"][0]["best"] == pytest.approx([1.32, 1.32, 6.52, 6.52])
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_without_a_feasible_trial_there_is_no_reference_and_no_target(tmp_path):
    runs = _runs({"random a": [([1.0, 2.0], False, C)], "random b": [(None, True, F)]})
    c = Comparison("s", "hypervolume", "maximize", 1, ["random"], runs, math.nan, 0.5,
                   metrics=["a", "b"], directions=["minimize", "minimize"],
                   constraints=["b <= 1"])
    score_by_hypervolume(c)
    assert c.reference is None and [r.best for r in c.runs] == [[None], [None]]
    c.target = _default_target(c)
    assert math.isnan(c.target)
    paths = c.write(tmp_path / "out")
    table = paths["table"].read_text()
    assert "no target: no run completed a feasible trial" in table.splitlines()[0]
    assert "no reference point: no run completed a feasible trial" in table
    assert json.loads(paths["results"].read_text())["reference"] is None
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_the_reference_rule_and_the_curve_of_the_pure_computation():
    ref, flat = reference_losses(np.array([[2.0, 5.0], [2.0, 1.0], [2.0, 3.0]]))
    # a metric whose values are all equal is pushed out by 10% of the value (at least 1)
    assert list(ref) == pytest.approx([2.2, 5.4]) and list(flat) == [True, False]
    ref, _ = reference_losses(np.array([[0.0, -3.0], [0.0, -1.0]]))
    assert list(ref) == pytest.approx([0.1, -0.8])
    curve = hypervolume_so_far([None, [1.0, 1.0], [3.0, 3.0], None, [0.0, 2.0], [1.0, 1.0]],
                               np.array([4.0, 4.0]))
    assert curve == pytest.approx([None, 9.0, 9.0, 9.0, 11.0, 11.0])
