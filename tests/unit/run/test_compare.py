"""``tuner compare``: samplers × seeds, the target, the table, the plot and the raw results."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TUNER, to_toml
from tuner.core.errors import ConfigError
from tuner.run.compare import Comparison, Run, _default_target, compare
from tuner.run.compare_plot import plot
from tuner.run.config import load_config
from tuner.search.best_so_far import (
    best_so_far,
    expected_trials,
    ratio_interval,
    ratio_of_expected,
    trials_to_target,
)


def _comparison(direction: str, finals: dict[str, list[list[float | None]]]) -> Comparison:
    runs = [Run(s, seed, values=v, states=["COMPLETE"] * len(v), elapsed_s=1.0,
                best=best_so_far(v, direction == "maximize"))
            for s, per_seed in finals.items() for seed, v in enumerate(per_seed)]
    return Comparison("s", "m", direction, 4, list(finals), runs, math.nan, 0.5)


@pytest.mark.parametrize(
    ("direction", "share", "expected"),
    # final bests, best first: 0.9, 0.8, 0.7, 0.6 (maximize); 0.1, 0.6, 0.7, 0.8 (minimize)
    [("maximize", 0.5, 0.8), ("maximize", 0.25, 0.9), ("maximize", 1.0, 0.6),
     ("minimize", 0.5, 0.6), ("minimize", 0.25, 0.1), ("minimize", 1.0, 0.8)],
)
def test_default_target_is_reached_by_the_given_share_of_runs(direction, share, expected):
    c = _comparison(direction, {"a": [[0.1, 0.9], [0.8, None]], "b": [[0.7], [0.6, 0.6]]})
    c.target_share = share
    assert _default_target(c) == expected


def test_trials_to_target_and_summary():
    c = _comparison("maximize", {"a": [[0.5, 0.9, 0.9, 0.9], [0.95, 0.95, 0.95, 0.95]],
                                 "b": [[0.1, 0.2, 0.3, 0.4], [0.1, 0.1, 0.1, 0.92]]})
    c.target = 0.9
    for r in c.runs:
        r.to_target = trials_to_target(r.best, c.target, maximize=True)
    assert [r.to_target for r in c.runs] == [2, 1, None, 4]
    rows = {row["sampler"]: row for row in c.summary()}
    assert rows["a"]["reached"] == 2 and rows["a"]["median_trials_to_target"] == 1.5
    assert rows["b"]["reached"] == 1 and math.isinf(rows["b"]["median_trials_to_target"])
    # expected trials: all trials spent (to the target, or the whole run) per run that reached it
    assert rows["a"]["expected_trials_to_target"] == 1.5
    assert rows["b"]["expected_trials_to_target"] == 8.0  # (4 unreached + 4) / 1
    assert rows["a"]["vs_random"] is None  # no random search among the samplers
    table = c.table()
    assert "| a | 2 | 2/2 | 1.5 | 1.5 | — |" in table
    assert "| b | 2 | 1/2 | > 4 | 8.0 | — |" in table


@pytest.mark.parametrize(
    ("random_runs", "expected"),
    # tpe: reached at 1 and 3 of 4 trials: 2.0 expected; random as given
    [([[0.1, 0.2, 0.95, 0.95], [0.1, 0.1, 0.1, 0.1]], ("", 2.0 / 7.0, "| tpe | 2 | 2/2 | 2 | 2.0 "
                                                       "| 0.29x [")),
     # random never reaches 0.9 in 8 trials: its expected trials are over 8, tpe's ratio below
     ([[0.1] * 4, [0.5] * 4], ("<", 2.0 / 8.0, "| tpe | 2 | 2/2 | 2 | 2.0 | < 0.25x |"))],
)
def test_expected_trials_against_random(random_runs, expected):
    c = _comparison("maximize", {"random": random_runs,
                                 "tpe": [[0.95, 0.95, 0.95, 0.95], [0.1, 0.5, 0.91, 0.9]]})
    c.target = 0.9
    for r in c.runs:
        r.to_target = trials_to_target(r.best, c.target, maximize=True)
    rows = {row["sampler"]: row for row in c.summary()}
    bound, ratio, line = expected
    assert rows["tpe"]["vs_random_bound"] == bound
    assert rows["tpe"]["vs_random"] == pytest.approx(ratio)
    assert line in c.table()
    if bound:
        assert math.isinf(rows["random"]["expected_trials_to_target"])
        assert rows["random"]["vs_random"] is None and "| never reached | — |" in c.table()
    else:
        assert rows["random"]["vs_random"] == 1.0 and rows["random"]["vs_random_interval"] is None
        low, high = rows["tpe"]["vs_random_interval"]  # paired resamples of the two seeds
        # resampled seed pairs: (0, 0) gives 1/3, (0, 1) 2/7, (1, 1) 0 (random never reaches)
        assert (low, high) == (0.0, pytest.approx(1 / 3))


def test_the_bootstrap_interval_is_seeded_and_brackets_a_clear_difference():
    fast = [(2, 30)] * 8 + [(5, 30)] * 2
    slow = [(20, 30)] * 5 + [(None, 30)] * 5
    low, high = ratio_interval(fast, slow)
    assert low <= expected_trials(fast) / expected_trials(slow) <= high < 0.25
    assert ratio_interval(fast, slow) == (low, high)
    assert ratio_interval(slow, slow) == (1.0, 1.0)  # paired by seed: every resample gives 1
    low, high = ratio_interval(slow, slow[:-1])  # not paired: resampled independently
    assert low < 1.0 < high


def test_expected_trials_and_its_ratios():
    assert expected_trials([(2, 10), (None, 10), (4, 10)]) == 8.0
    assert math.isinf(expected_trials([(None, 10), (None, 9)]))
    assert ratio_of_expected(4.0, 8.0, 30, 20) == (0.5, "")
    assert ratio_of_expected(4.0, math.inf, 40, 20) == (0.1, "<")
    assert ratio_of_expected(math.inf, 8.0, 40, 20) == (2.5, ">")
    assert ratio_of_expected(math.inf, math.inf, 40, 20) == (None, "")
    assert trials_to_target([None, 0.3, 0.2], 0.25, maximize=False) == 3
    assert trials_to_target([None, 0.3, 0.2], 0.1, maximize=False) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"samplers": ["tpe", "annealing"]}, r"unknown sampler 'annealing'; valid: "),
     ({"samplers": []}, r"at least one sampler"),
     ({"samplers": ["tpe"], "repeats": 0}, r"repeats and n_trials must be >= 1"),
     ({"samplers": ["tpe"], "target_share": 0.0}, r"target share must be in \(0, 1\]"),
     ({"samplers": ["tpe"], "target": float("nan")}, r"target must be a finite metric value"),
     ({"samplers": ["random", "random"]}, r"sampler 'random' is listed twice"),
     ({"samplers": ["random", "grid"]}, r"study.toml \(compared with sampler grid\): \[sampler\]: "
                                        r"the grid sampler needs a finite set of values")],
)
def test_bad_comparisons(study_file, kwargs, match):
    samplers = kwargs.pop("samplers")
    with pytest.raises(ConfigError, match=match):
        compare(load_config(study_file()), samplers, **kwargs)


@pytest.mark.slow
def test_compare_cli_writes_plot_table_and_raw_results(cli, study_file, tmp_path):
    # The patient pruner is experimental in Optuna: its warning, once per run, filled the
    # terminal from the spawned workers (the command's own filter did not reach them).
    path = study_file(study={"sampler": "tpe", "pruner": "patient"},
                      sampler={"n_startup_trials": 2})
    proc = cli("compare", str(path),
               "--samplers", "random,tpe", "--repeats", "2", "--n-trials", "3", "-o", "out",
               "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    out = tmp_path / "out"
    assert (out / "best.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = json.loads((out / "results.json").read_text())
    assert [(r["sampler"], r["seed"]) for r in raw["runs"]] == [
        ("random", 0), ("random", 1), ("tpe", 0), ("tpe", 1)]
    assert all(len(r["values"]) == 3 and len(r["best"]) == 3 for r in raw["runs"])
    assert [s["sampler"] for s in raw["summary"]] == ["random", "tpe"]
    assert "| random | 2 |" in (out / "table.md").read_text()
    assert "| tpe | 2 |" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--samplers", "random,nope"], "unknown sampler 'nope'"),
     (["--repeats", "0"], "--repeats"), (["--target-share", "2"], "--target-share"),
     (["--samplers", "random,grid"], "grid sampler needs a finite set of values"),  # one line
     (["-o", "{tmp}/no/such/out"], "folder {tmp}/no/such does not exist")],
)
def test_compare_cli_bad_input(capsys, study_file, tmp_path, args, message):
    from tuner.cli import main  # in process: the entry point's own error handling

    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["compare", str(study_file()), "-o", str(tmp_path / "out"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    message = message.replace("{tmp}", str(tmp_path))
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "out").exists() and not (tmp_path / "no").exists()


def test_data_that_does_not_fit_is_one_line_naming_the_file_before_any_run(capsys, study_file,
                                                                            tmp_path):
    from tuner.cli import main

    path = study_file(space={"batch_size": {"low": 16, "high": 512}})  # iris: 112 rows
    assert main(["compare", str(path), "--samplers", "random", "-o", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {path}: [space] batch_size: 512 is larger than the training set "
                     "(112 rows of 'iris'); lower the upper bound"]


def test_an_output_that_is_a_file_fails_before_any_run(capsys, study_file, tmp_path,
                                                       monkeypatch):
    import tuner.run.compare
    from tuner.cli import main

    def no_runs(*args, **kwargs):
        raise AssertionError("a run started")

    monkeypatch.setattr(tuner.run.compare, "run_all", no_runs)
    taken = tmp_path / "taken"
    taken.write_text("a file")
    for out, where in ((taken, "is a file"), (taken / "out", f"is inside {taken}, a file")):
        with pytest.raises(ConfigError, match=f"compare output {out} {where}; give a folder"):
            compare(load_config(study_file()), ["random"], out_dir=out)
    assert main(["compare", str(study_file()), "-o", str(taken)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: compare output {taken} is a file; give a folder"]


def test_write_failures_are_config_errors_and_plot_leaves_matplotlib_alone(tmp_path,
                                                                           monkeypatch):
    import matplotlib

    def no_switch(*args, **kwargs):
        raise AssertionError("a library call switched the matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", no_switch)
    c = _comparison("maximize", {"a": [[0.1, 0.9, 0.9, 0.9]], "b": [[0.5, 0.6, 0.7, 0.8]]})
    c.target = 0.8
    plot(c, tmp_path / "best.png")
    assert (tmp_path / "best.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "out" / "table.md").mkdir(parents=True)  # a folder where a file must go
    with pytest.raises(ConfigError, match=r"cannot write the comparison into .*out: Is a direc"):
        c.write(tmp_path / "out")


def test_results_json_is_strict_json_where_a_sampler_never_reaches_the_target(tmp_path):
    c = _comparison("maximize", {"random": [[0.1, 0.95], [0.95, 0.95]],
                                 "tpe": [[0.1] * 4, [0.95] * 4], "gp": [[0.1] * 4] * 2})
    c.target = 0.9
    for r in c.runs:
        r.to_target = trials_to_target(r.best, c.target, maximize=True)
    c.write(tmp_path / "out")

    def no_constants(name):
        raise AssertionError(f"{name} in results.json")

    raw = json.loads((tmp_path / "out" / "results.json").read_text(), parse_constant=no_constants)
    random, tpe, gp = raw["summary"]
    assert random["expected_trials_to_target"] == 1.5 and tpe["expected_trials_to_target"] == 5
    # paired resamples: seed 1 twice gives 1 / 1, seeds 0 and 1 give 5 / 1.5, seed 0 twice inf
    assert tpe["vs_random"] == pytest.approx(5 / 1.5)
    assert tpe["vs_random_interval"] == [1.0, None]
    assert gp["expected_trials_to_target"] is None and gp["median_trials_to_target"] is None
    assert (gp["vs_random"], gp["vs_random_bound"], gp["vs_random_interval"]) == (
        pytest.approx(8 / 1.5), ">", None)  # 8 trials spent, no run at the target
    table = c.table()
    assert "| tpe | 2 | 1/2 | > 4 | 5.0 | 3.33x [1.00, ∞] |" in table
    assert "| gp | 2 | 0/2 | > 4 | never reached | > 5.33x |" in table


def _live(pid: int) -> tuple[str, int] | None:
    """A process's state and parent (from /proc), ``None`` once it is gone or a zombie."""
    try:
        state, ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
    except OSError:
        return None
    return None if state == "Z" else (state, int(ppid))


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    return [int(d.name) for d in Path("/proc").iterdir()
            if d.name.isdigit() and (s := _live(int(d.name))) and s[1] == pid]


def _ignores_ctrl_c(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    return bool(ignored & (1 << (signal.SIGINT - 1)))


@pytest.mark.parametrize("how", ["SIGTERM to the command", "Ctrl-C in its terminal"])
def test_a_stopped_comparison_ends_now_and_leaves_no_worker(study_file, tmp_path, how):
    """Leaving the process pool's ``with`` block waited for every run: a SIGTERM or Ctrl-C
    to a 200-seed comparison went on for its remaining minutes. The workers ignore Ctrl-C (a
    terminal signals the whole group): one caught between runs, or still importing, printed a
    traceback of its own before the command ended it (seen in CI, under load)."""
    path = study_file(study={"n_trials": 10}, objective={"dataset": "digits", "epochs": 20},
                      space={"batch_size": 16})  # ~20 runs of several seconds each
    proc = subprocess.Popen([TUNER, "compare", str(path), "--samplers", "random", "--repeats",
                             "20", "--jobs", "2", "-o", "out"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while len(workers := _children(proc.pid)) < 3 and time.monotonic() < deadline:  # 2 + tracker
        time.sleep(0.2)
    pool = [w for w in workers if b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()]
    assert len(pool) == 2 and all(map(_ignores_ctrl_c, pool))  # from their start: inherited
    time.sleep(2)  # the runs are under way
    stopped = time.monotonic()
    if how.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)  # the terminal signals the whole group
    _, stderr = proc.communicate(timeout=120)
    assert time.monotonic() - stopped < 10, "it waited for the remaining runs"
    assert proc.returncode == 130, stderr
    assert re.search(r"interrupted: \d+ of 20 runs done; nothing written to out$", stderr.strip())
    assert "Traceback" not in stderr, stderr
    assert not (tmp_path / "out" / "results.json").exists()
    time.sleep(0.5)
    assert not [w for w in workers if _live(w)]


def _ragged_comparison() -> Comparison:
    """Runs of a 4-trial budget as failed and pruned trials leave them: failed trials are
    extra (the budget counts complete and pruned ones), and tpe's second seed completed none."""
    done = [("random", 0, [0.2, None, 0.5, 0.4, None, 0.9], ["COMPLETE", "FAIL", "COMPLETE",
                                                             "COMPLETE", "FAIL", "COMPLETE"]),
            ("random", 1, [0.3, 0.6, 0.6, 0.7], ["COMPLETE"] * 4),
            ("tpe", 0, [None, 0.8, None, 0.8, 0.95], ["PRUNED", "COMPLETE", "FAIL", "COMPLETE",
                                                     "COMPLETE"]),
            ("tpe", 1, [None] * 5, ["PRUNED", "FAIL", "PRUNED", "PRUNED", "PRUNED"])]
    runs = [Run(s, seed, values=v, states=st, elapsed_s=1.0, best=best_so_far(v, True))
            for s, seed, v, st in done]
    return Comparison("s", "m", "maximize", 4, ["random", "tpe"], runs, math.nan, 0.5)


def test_failed_trials_count_as_spent_and_ragged_runs_are_written(tmp_path):
    """A run with a failed trial is longer than the budget, and one may complete no trial at
    all: the plot raised "inhomogeneous shape" (or "x and y must have same first dimension")
    after every run had finished, and nothing was written."""
    c = _ragged_comparison()
    assert c.runs[0].best == [0.2, 0.2, 0.5, 0.5, 0.5, 0.9]  # a failed trial carries the best
    assert c.runs[3].best == [None] * 5  # an entry per trial spent, none reached yet
    c.target = _default_target(c)  # finals 0.9, 0.7, 0.95: half of the four runs reach 0.9
    assert c.target == 0.9
    for r in c.runs:
        r.to_target = trials_to_target(r.best, c.target, maximize=True)
    assert [r.to_target for r in c.runs] == [6, None, 5, None]  # failed trials counted
    paths = c.write(tmp_path / "out")
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    raw = json.loads(paths["results"].read_text())
    assert [len(r["best"]) for r in raw["runs"]] == [6, 4, 5, 5]
    random, tpe = raw["summary"]
    assert random["expected_trials_to_target"] == 10.0  # (6 + 4) / 1
    assert tpe["expected_trials_to_target"] == 10.0 and tpe["final_best_median"] == 0.95
    table = paths["table"].read_text()
    assert "| tpe | 2 | 1/2 | > 4 | 10.0 | 1.00x [" in table
    assert "failed trials (counted as trials spent): random 2 of 10, tpe 2 of 10" in table


def test_a_sampler_whose_runs_complete_no_trial_is_never_reached(tmp_path):
    c = _ragged_comparison()
    c.runs = [c.runs[0], c.runs[1], c.runs[3], c.runs[3]]  # tpe: only pruned and failed trials
    c.target = _default_target(c)
    for r in c.runs:
        r.to_target = trials_to_target(r.best, c.target, maximize=True)
    paths = c.write(tmp_path / "out")
    tpe = json.loads(paths["results"].read_text())["summary"][1]
    assert tpe["reached"] == 0 and tpe["final_best_median"] is None
    assert "| tpe | 2 | 0/2 | > 4 | never reached | > 2.00x | — |" in paths["table"].read_text()
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_no_run_completing_a_trial_still_writes_the_comparison(tmp_path):
    c = _ragged_comparison()
    nothing = c.runs[3]
    c.runs = [dataclasses.replace(nothing, sampler=s, seed=seed) for s in c.samplers
              for seed in (0, 1)]
    c.target = _default_target(c)
    assert math.isnan(c.target)
    for r in c.runs:
        r.to_target = trials_to_target(r.best, c.target, maximize=True)
    paths = c.write(tmp_path / "out")
    raw = json.loads(paths["results"].read_text(), parse_constant=lambda n: pytest.fail(n))
    assert raw["target"] is None
    table = paths["table"].read_text()
    assert "no target: no run completed a trial" in table.splitlines()[0]
    assert "| random | 2 | 0/2 | > 4 | never reached | — | — |" in table
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


FAILING_OBJECTIVE = '''
import optuna

def objective(trial, ctx):
    hp = ctx.suggest(trial)
    if trial.study.study_name.endswith("-tpe-1"):  # one run that completes no trial
        raise optuna.TrialPruned("never good enough")
    if trial.study.study_name.endswith("-random-1"):  # one the loop gives up on
        raise RuntimeError("always")
    if trial.number % 3 == 1:
        raise RuntimeError("boom")
    return hp["x"]
'''


def test_compare_with_failed_trials_and_a_pruned_only_run_writes_its_results(
        tmp_path, monkeypatch):
    """The issue's study: a user objective that raises in some trials, one run whose trials
    are all pruned, and one that fails in every trial (the loop stops it after three: the
    other runs go on)."""
    (tmp_path / "compare_failing_obj.py").write_text(FAILING_OBJECTIVE)
    monkeypatch.chdir(tmp_path)  # where a `module:function` objective is imported from
    path = tmp_path / "fails.toml"
    path.write_text(to_toml({
        "study": {"name": "fails", "sampler": "random", "pruner": "none", "n_trials": 4,
                  "seed": 0, "direction": "maximize"},
        "objective": {"name": "compare_failing_obj:objective"},
        "space": {"x": {"low": 0.0, "high": 1.0}}}))
    c = compare(load_config(path), ["random", "tpe"], repeats=2, jobs=2, out_dir=tmp_path / "o")
    lengths = {(r.sampler, r.seed): (len(r.values), len(r.best), r.states.count("FAIL"))
               for r in c.runs}
    assert lengths[("random", 0)] == (6, 6, 2)  # 4 finished + 2 failed: trials 1 and 4
    assert lengths[("tpe", 1)] == (4, 4, 0)
    assert lengths[("random", 1)] == (3, 3, 3) and c.runs[1].stopped == (
        "the objective failed in 3 trials in a row; last error: RuntimeError: always "
        "(at compare_failing_obj.py:9 in objective)")
    assert c.runs[3].best == [None] * 4 and c.runs[3].to_target is None
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "best.png", "results.json", "table.md"]
    table = (tmp_path / "o" / "table.md").read_text()
    assert "| tpe | 2 | " in table and "random seed 1 stopped after 3 trials: " in table
