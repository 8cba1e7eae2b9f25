"""What a new user tripped over (issue 31), through the real ``tuner`` command in subprocesses
on a real SQLite file: tables cut at 80 columns, the export's ``value`` column, ``last_step``
one short, a slow refusal of a broken study file, an Optuna warning from the dashboard, a
comparison that was random search in disguise, and Ctrl-C without a word."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import urllib.request
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial

from tests.conftest import TINY, TUNER, merged, run_tuner, to_toml

pytestmark = pytest.mark.slow

EPOCHS = 12
STUDY = merged(TINY, study={"name": "first", "pruner": "median", "n_trials": 4},
               objective={"epochs": EPOCHS},
               space={"lr": {"low": 1e-4, "high": 2e-4, "log": True},  # lr 0.000123…
                      "weight_decay": {"low": 1e-6, "high": 1e-5, "log": True},
                      "optimizer": ["sgd", "adam"]})  # a table over 80 columns


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose ``tuner.db`` holds study ``first``: metric val_accuracy, 4 complete
    trials of 12 epochs under the median pruner, learning rates like 0.0001234, and a table
    of its top trials about 95 columns wide."""
    folder = tmp_path_factory.mktemp("first")
    (folder / "first.toml").write_text(to_toml(STUDY))
    proc = run_tuner("run", "first.toml", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "COLUMNS"}, **extra}


def _shown_values(folder: Path) -> list[str]:
    """What ``show`` must print whole: the metric's name and each top trial's lr as shown."""
    summary = json.loads(run_tuner("show", "first", "--json", cwd=folder).stdout)
    assert summary["metric"] == "val_accuracy" and len(summary["top"]) == 4
    return ["val_accuracy", *(f"{t['params']['lr']:.4g}" for t in summary["top"])]


def _on_a_terminal(args: list[str], cwd: Path, columns: int) -> str:
    """The output of ``tuner ARGS`` on a pseudo-terminal ``columns`` wide."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen([TUNER, *args], cwd=cwd, env=_env(), stdin=follower,
                            stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode()
    return re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [None, "60", "200"])
def test_show_never_cuts_a_name_or_a_value_when_piped(stored, columns):
    env = _env(**({"COLUMNS": columns} if columns else {}))
    proc = run_tuner("show", "first", cwd=stored, env=env)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout[proc.stdout.index("top 4 trials"):]
    assert "…" not in table, table
    for shown in _shown_values(stored):
        assert shown in table, table
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert len(rows) == 4, "one line per trial: widened, not wrapped"


def test_show_on_a_narrow_terminal_wraps_rows_instead_of_cutting_them(stored):
    text = _on_a_terminal(["show", "first"], stored, columns=60)
    table = text[text.index("top 4 trials"):]
    assert "…" not in table, table
    for shown in _shown_values(stored):
        assert shown in table, table
    assert re.search(r"^  #\d+ · val_accuracy \d", table, re.M), table


def test_show_on_a_wide_terminal_is_a_table(stored):
    text = _on_a_terminal(["show", "first"], stored, columns=200)
    table = text[text.index("top 4 trials"):]
    assert "…" not in table and "┃ val_accuracy ┃" in table, table


def test_export_names_the_value_column_after_the_metric(stored):
    proc = run_tuner("export", "first", "--format", "csv", cwd=stored)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert proc.stdout.split("\n")[0].split(",")[:4] == [
        "number", "state", "val_accuracy", "datetime_start"]
    assert all(float(r["val_accuracy"]) >= 0 for r in rows) and "value" not in rows[0]
    as_json = json.loads(run_tuner("export", "first", "--format", "json", cwd=stored).stdout)
    assert as_json["metric"] == "val_accuracy" and as_json["direction"] == "maximize"
    assert [t["value"] for t in as_json["trials"]] == [float(r["val_accuracy"]) for r in rows]
    help_text = " ".join(run_tuner("export", "--help", cwd=stored,
                                   env=_env(COLUMNS="200")).stdout.split())
    assert "named after the study's metric" in help_text


def test_a_complete_trial_of_12_epochs_reached_step_12(stored):
    rows = list(csv.DictReader(io.StringIO(run_tuner("export", "first", cwd=stored).stdout)))
    assert [(r["state"], r["last_step"]) for r in rows] == [("COMPLETE", str(EPOCHS))] * 4
    shown = json.loads(run_tuner("show", "first", "--json", cwd=stored).stdout)
    assert {t["last_step"] for t in shown["top"]} == {EPOCHS}
    # what Optuna stores: the median pruner hears epochs 1..11 only (the last is left out)
    study = optuna.load_study(study_name="first", storage=f"sqlite:///{stored / 'tuner.db'}")
    assert {t.last_step for t in study.trials} == {EPOCHS - 1}


def _seconds(*args: str, cwd: Path) -> float:
    started = time.perf_counter()
    run_tuner(*args, cwd=cwd)
    return time.perf_counter() - started


def test_a_study_file_that_is_not_toml_is_refused_about_as_fast_as_help(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[study]\nname = "x\nn_trials = 3\n')  # an unclosed string
    proc = run_tuner("run", "bad.toml", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: bad.toml: invalid TOML"), \
        proc.stderr
    # Best of five each, taken in turns: a busy machine slows both alike. Before: ~2 s against
    # --help's 0.3 s (Optuna and torch were imported first).
    help_s, bad_s = [], []
    for _ in range(5):
        help_s.append(_seconds("--help", cwd=tmp_path))
        bad_s.append(_seconds("run", "bad.toml", cwd=tmp_path))
    assert min(bad_s) < 2.5 * min(help_s), (bad_s, help_s)
    imports = subprocess.run([sys.executable, "-X", "importtime", "-m", "tuner", "run", "bad.toml"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60).stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in imports.splitlines()
              if line.startswith("import time:")}
    assert not {"torch", "optuna", "sqlalchemy"} & loaded


def test_compare_says_when_a_sampler_is_mostly_random_search(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(to_toml(merged(TINY, study={"name": "c", "sampler": "tpe"},
                                   objective={"epochs": 1})))
    proc = run_tuner("compare", "c.toml", "--samplers", "random,tpe", "--repeats", "1",
                     "--n-trials", "15", "--jobs", "1", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = ("warning: tpe: its first 10 trials are random (n_startup_trials); with 15 trials "
            "only 5 can differ from random search")
    lines = proc.stderr.splitlines()
    assert lines[1] == line and [x for x in lines if "warning" in x] == [line], proc.stderr
    assert line in (tmp_path / "out" / "table.md").read_text()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["warnings"] == [
        line.removeprefix("warning: ")]


def _momentum_study(folder: Path) -> None:
    """Plain Optuna trials where only one of four drew momentum (it is sgd's alone): too few
    for PED-ANOVA's regime of that parameter, so Optuna warns at each importance request."""
    study = optuna.create_study(study_name="m", storage=f"sqlite:///{folder / 'tuner.db'}",
                                direction="maximize")
    dists = {"optimizer": CategoricalDistribution(["sgd", "adam"]),
             "lr": FloatDistribution(1e-4, 1e-1, log=True)}
    for i, (optimizer, value) in enumerate([("sgd", 0.5), ("adam", 0.7), ("adam", 0.9),
                                            ("adam", 0.6)]):
        params = {"optimizer": optimizer, "lr": 10.0 ** -(1 + i)}
        extra = {"momentum": FloatDistribution(0.5, 0.99)} if optimizer == "sgd" else {}
        study.add_trial(create_trial(params={**params, **({"momentum": 0.9} if extra else {})},
                                     distributions={**dists, **extra}, value=value))


def test_the_dashboard_keeps_optunas_importance_warnings_off_the_terminal(tmp_path):
    _momentum_study(tmp_path)
    study = optuna.load_study(study_name="m", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    with warnings.catch_warnings(record=True) as caught:  # what the dashboard's request does
        warnings.simplefilter("always")
        optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    assert any("parameter `momentum`" in str(w.message) for w in caught)

    proc = subprocess.Popen([TUNER, "dashboard", "--port", "0"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 60)[0], "the dashboard did not start"
        base = re.search(r"dashboard on (http://\S+)/dashboard/", proc.stdout.readline())[1]
        with urllib.request.urlopen(f"{base}/api/studies/1/param_importances", timeout=60) as r:
            shown = json.loads(r.read())["param_importances"][0]
        assert {p["name"] for p in shown} == {"optimizer", "lr", "momentum"}
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "dashboard stopped" in stderr, stderr
    assert "Warning" not in stderr and "momentum" not in stderr, stderr


def _has_loaded_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _interrupt_once_busy(args: list[str], cwd: Path) -> tuple[int, str]:
    """``tuner ARGS``, sent SIGINT once the command is at work (torch loaded, then 1 s)."""
    proc = subprocess.Popen([TUNER, *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _has_loaded_torch(proc.pid) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    time.sleep(1)
    assert proc.poll() is None, "it ended before the interrupt"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr


def test_ctrl_c_in_diagnose_says_what_was_kept(tmp_path):
    code, stderr = _interrupt_once_busy(
        ["diagnose", "--init", "all", "--activation", "tanh,relu", "--png", "inits.png"],
        tmp_path)  # ~20 s of work
    assert code == 130
    assert stderr.splitlines() == [
        "interrupted: tuner diagnose (it runs in memory); nothing is kept"], stderr
    assert not (tmp_path / "inits.png").exists()


def test_ctrl_c_in_a_waiting_worker_says_what_was_kept(tmp_path):
    code, stderr = _interrupt_once_busy(["worker", "later", "--wait", "120"], tmp_path)
    assert code == 130
    assert stderr.splitlines() == [
        "interrupted: tuner worker while no trial was running; every trial that finished is "
        "stored"], stderr


def test_every_command_has_its_interrupted_line():
    from tuner.cli._app import INTERRUPTED, _command_name, app

    assert {_command_name(info) for info in app.registered_commands} == set(INTERRUPTED)
