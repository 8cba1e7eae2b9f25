"""The real ``tuner`` entry point, end to end, in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import TINY, TUNER, merged, to_toml
from tuner.store.storage import open_storage

pytestmark = pytest.mark.slow


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_lists_the_commands(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("run", "resume", "list", "show", "export", "delete"):
        assert command in proc.stdout
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("tuner ")
    run_help = cli("run", "--help").stdout
    assert "--storage" in run_help and "--n-trials" in run_help and "--sampler" in run_help


def test_command_help_paragraphs_wrap_to_the_terminal_not_the_source(cli):
    from tuner.cli import app

    for info in app.registered_commands:
        assert info.help and "\n" not in info.help.replace("\n\n", ""), info.callback.__name__
    text = cli("worker", "--help", env={"COLUMNS": "200"}).stdout
    assert "the budget counts finished trials of all workers together. Start as many workers" \
        in text  # one line at 200 columns: the docstring's line breaks are gone
    # TOML table names are text, not rich markup (which dropped them)
    assert "(overrides [objective] device)" in cli("run", "--help", env={"COLUMNS": "200"}).stdout
    assert '[space] init = "pretrained" and [objective] checkpoint' in \
        cli("pretrain", "--help", env={"COLUMNS": "200"}).stdout


def test_help_groups_the_commands_in_the_order_of_work_and_flags_take_no_value(cli):
    text = cli("--help", env={"COLUMNS": "120"}).stdout
    headings = [h for h in ("Run studies", "Share a service", "Look at stored studies",
                            "See them", "Init science and samplers") if h in text]
    assert len(headings) == 5 and sorted(headings, key=text.index) == headings
    commands = re.findall(r"^│ (\w+)\s{2,}", text, flags=re.MULTILINE)
    assert commands == ["run", "resume", "worker", "serve", "submit", "queue", "pause",
                        "unpause", "cancel", "list", "show", "export", "delete",
                        "dashboard", "report", "diagnose", "pretrain", "compare"]
    run_help = cli("run", "--help", env={"COLUMNS": "120"}).stdout
    assert "<bool>" not in text + run_help
    assert re.search(r"--quiet\s+-q\s+No progress output", run_help)
    assert "<int range>" in run_help  # options that take a value still say which


@pytest.mark.parametrize("after_s", [0.15, 0.4, 0.8])
def test_ctrl_c_while_the_command_still_imports_is_no_traceback(after_s, study_file):
    # the console script imports Typer, Optuna and torch first; Ctrl-C then printed ~50 lines.
    # `run` of a good file imports Optuna and torch (over 1 s) once it has read the file; a
    # missing file, or `list`, may be done in 0.4 s.
    path = study_file()
    proc = subprocess.Popen([TUNER, "run", str(path)], cwd=path.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode in (130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr


def test_run_resume_show_export_and_optunas_own_cli(cli, study_file, tmp_path):
    path = study_file(study={"n_trials": 4})
    proc = cli("run", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "best trial #" in proc.stdout and "batch_size = " in proc.stdout
    assert "[4/4] trial 3" in proc.stderr, "one progress line per trial when not on a terminal"
    assert (tmp_path / "tuner.db").is_file(), "the default storage is ./tuner.db"

    proc = cli("resume", "tiny", "--n-trials", "2")
    assert proc.returncode == 0, proc.stderr
    assert "2 trials this run" in proc.stdout

    show = json.loads(cli("show", "tiny", "--json").stdout)
    assert show["states"] == {"COMPLETE": 6} and show["budget"] == 6
    assert set(show["best"]["params"]) == {"lr", "batch_size", "init"}
    assert "tiny" in cli("show", "tiny").stdout

    listed = json.loads(cli("list", "--json").stdout)
    assert [r["name"] for r in listed] == ["tiny"] and listed[0]["n_trials"] == 6

    rows = list(csv.DictReader(io.StringIO(cli("export", "tiny").stdout)))
    assert len(rows) == 6 and {r["param_batch_size"] for r in rows} <= {"16", "32"}
    out = tmp_path / "t.json"
    assert cli("export", "tiny", "--format", "json", "-o", str(out)).returncode == 0
    assert len(json.loads(out.read_text())["trials"]) == 6
    dash = cli("export", "tiny", "--format", "json", "-o", "-")  # '-' is standard output
    assert dash.returncode == 0 and len(json.loads(dash.stdout)["trials"]) == 6
    assert not (tmp_path / "-").exists()

    optuna_cli = str(Path(sys.executable).parent / "optuna")
    studies = subprocess.run([optuna_cli, "studies", "--storage", "sqlite:///tuner.db", "-f",
                              "json"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert studies.returncode == 0, studies.stderr
    assert json.loads(studies.stdout)[0]["name"] == "tiny"


def test_storage_from_environment_and_flag(cli, study_file, tmp_path):
    path = study_file(study={"n_trials": 1})
    env_db, flag_db = tmp_path / "env.db", tmp_path / "flag.db"
    assert cli("run", str(path), env={"TUNER_STORAGE": f"sqlite:///{env_db}"}).returncode == 0
    assert env_db.is_file() and not (tmp_path / "tuner.db").exists()
    proc = cli("run", str(path), "--storage", f"sqlite:///{flag_db}",
               env={"TUNER_STORAGE": f"sqlite:///{env_db}"})
    assert proc.returncode == 0 and flag_db.is_file()


def test_an_output_file_that_is_the_storage_is_refused(cli, study_file, tmp_path):
    assert cli("run", str(study_file(study={"n_trials": 2}))).returncode == 0
    for args in (["export", "tiny", "-o", "tuner.db"], ["export", "tiny", "-o", "tuner.db-wal"],
                 ["report", "tiny", "-o", "tuner.db"],
                 ["report", "tiny", "-o", str(tmp_path / "tuner.db")]):
        assert "refusing to write" in _one_error_line(cli(*args)), args
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    assert len(study.trials) == 2  # the database is intact
    journal = f"journal:{tmp_path / 'j.log'}"
    assert cli("run", str(study_file(study={"n_trials": 1})), "--storage", journal).returncode == 0
    line = _one_error_line(cli("export", "tiny", "--storage", journal, "-o", "j.log"))
    assert "refusing to write j.log: it is the storage journal:" in line
    assert cli("show", "tiny", "--storage", journal).returncode == 0


BAD_CLI = [
    (["run", "nope.toml"], "study file nope.toml does not exist"),
    (["run", "{file}", "--sampler", "bayes"], "error: --sampler: unknown sampler 'bayes'"),
    (["run", "{file}", "--n-trials", "0"], "Invalid value for '--n-trials'"),
    (["run", "{file}", "--storage", "foo://x"], "unknown database dialect 'foo'"),
    (["run", "{file}", "--storage", "not a url"], "malformed storage URL"),
    (["run", "{file}", "--storage", ""], "--storage is empty"),  # not the default database
    (["run", "{file}", "--storage", "sqlite://"], "is an in-memory SQLite database"),
    (["run", "{file}", "--storage", "sqlite:///:memory:"], "is an in-memory SQLite database"),
    (["run", "{file}", "--bogus"], "No such option: --bogus"),
    (["run"], "Missing argument 'study_file'"),
    (["resume", "ghost"], "no storage at sqlite:///tuner.db"),
    (["show", "ghost"], "no storage at sqlite:///tuner.db"),
    (["export", "ghost", "--format", "xml"], "Invalid value for '--format'"),
    (["fly"], "No such command 'fly'"),
]


@pytest.mark.parametrize(("args", "match"), BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_bad_input_is_one_error_line_exit_2_and_writes_nothing(cli, study_file, tmp_path, args,
                                                                match):
    path = study_file()
    line = _one_error_line(cli(*[a.replace("{file}", str(path)) for a in args]))
    assert match in line
    assert not (tmp_path / "tuner.db").exists(), "bad input must not create a storage"


def test_bad_study_file_via_cli(cli, tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text(to_toml(merged(TINY, study={"n_trails": 3})))
    line = _one_error_line(cli("run", str(path)))
    assert f"{path}: [study] unknown key(s) n_trails; did you mean 'n_trials'?" in line
    path.write_text("[study\n")
    assert "invalid TOML" in _one_error_line(cli("run", str(path)))


def test_unknown_study_in_an_existing_storage(cli, study_file):
    assert cli("run", str(study_file(study={"n_trials": 1}))).returncode == 0
    for command in (["resume", "ghost"], ["show", "ghost"], ["export", "ghost"],
                    ["delete", "ghost", "--yes"]):
        assert "no study named 'ghost' in this storage; stored studies: tiny" in _one_error_line(cli(*command))


def test_passwords_never_reach_the_terminal(cli, study_file):
    url = "postgresql://alice:s3cr3t-pw@127.0.0.1:1/tuner"
    proc = cli("run", str(study_file()), "--storage", url)
    line = _one_error_line(proc)
    assert "s3cr3t-pw" not in proc.stderr + proc.stdout
    assert "alice:***@127.0.0.1" in line


def test_delete_asks_unless_yes_and_takes_the_trials_pictures_along(cli, study_file, tmp_path,
                                                                    monkeypatch, capsys):
    from tuner.cli import main

    assert cli("run", str(study_file(study={"n_trials": 1}))).returncode == 0
    assert cli("run", str(study_file(study={"n_trials": 1, "name": "other"}))).returncode == 0
    pictures = tmp_path / "tuner-artifacts"
    assert len(list(pictures.iterdir())) == 4  # two per trial
    assert "without confirmation; pass --yes" in _one_error_line(cli("delete", "tiny"))

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["delete", "tiny"]) == 1  # a "no" is not an interrupt (130)
    assert "not deleted" in capsys.readouterr().err
    proc = cli("delete", "tiny", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert f"deleted study 'tiny' (1 trials) and 2 trial pictures from {pictures}" in proc.stdout
    assert [s["name"] for s in json.loads(cli("list", "--json").stdout)] == ["other"]
    assert len(list(pictures.iterdir())) == 2  # the other study's stay
    assert cli("report", "other", "-o", "other.html").returncode == 0


def test_ctrl_c_leaves_nothing_running_and_resume_completes(study_file, tmp_path):
    path = study_file(study={"n_trials": 40}, objective={"dataset": "digits", "epochs": 30},
                      space={"batch_size": 16})
    db = tmp_path / "tuner.db"
    proc = subprocess.Popen([TUNER, "run", str(path)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    storage_url = f"sqlite:///{db}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if db.exists():
            try:  # tuner's open: it may be creating the tables right now (and retries)
                study = optuna.load_study(study_name="tiny", storage=open_storage(storage_url))
            except KeyError:
                continue
            got = {t.state for t in study.trials}
            if {TrialState.COMPLETE, TrialState.RUNNING} <= got:  # Ctrl-C lands in a trial
                break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "tuner resume tiny" in stderr
    study = optuna.load_study(study_name="tiny", storage=storage_url)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states
    assert TrialState.FAIL in states, "the interrupted trial is marked failed"
    assert {t.user_attrs.get("fail_reason") for t in study.trials
            if t.state == TrialState.FAIL} == {"interrupted"}
    done = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    assert 0 < done < 40
    # resume finishes the budget (quickly: a smaller per-trial cost is not needed, just run)
    resumed = subprocess.run([TUNER, "resume", "tiny", "--n-trials", "1"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="tiny", storage=storage_url)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) >= done + 1 - \
        sum(t.state == TrialState.PRUNED for t in study.trials)


OBJECTIVE_MODULE = '''
import sys


def objective(trial, ctx):
    hp = ctx.suggest(trial)
    trial.set_user_attr("scale", ctx.settings["scale"])
    return ctx.settings["scale"] * (hp["x"] - 2) ** 2 + hp["y"]


def odd_fail(trial, ctx):
    hp = ctx.suggest(trial)
    if trial.number % 2:
        raise ValueError("odd trial\\nsecond line")
    return hp["x"] ** 2


def exits(trial, ctx):
    ctx.suggest(trial)
    sys.exit(3)


def nan(trial, ctx):
    ctx.suggest(trial)
    return float("nan")


def text(trial, ctx):
    ctx.suggest(trial)
    return "hello"


def onearg(trial):
    return 1.0
'''


def _custom_study(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(to_toml({
        "study": {"name": "custom", "direction": "minimize", "n_trials": 5, "pruner": "none"},
        "objective": {"name": name, "scale": 3},
        "space": {"x": {"low": -5.0, "high": 5.0}, "y": [0, 1]},
    }))
    return path


def test_pluggable_objective_from_a_module(cli, tmp_path):
    (tmp_path / "myobj.py").write_text(OBJECTIVE_MODULE)
    proc = cli("run", str(_custom_study(tmp_path, "myobj:objective")))
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="custom", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    for t in study.trials:
        assert t.value == pytest.approx(3 * (t.params["x"] - 2) ** 2 + t.params["y"])
        assert t.user_attrs["scale"] == 3
    assert cli("resume", "custom", "--n-trials", "1").returncode == 0


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_failed_trials_do_not_count_toward_the_budget(cli, tmp_path, jobs):
    (tmp_path / "myobj.py").write_text(OBJECTIVE_MODULE)
    proc = cli("run", str(_custom_study(tmp_path, "myobj:odd_fail")), *jobs)
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="custom", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 5 and TrialState.RUNNING not in states
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    # The reason names the line of the user's code that raised (myobj.py:14, in odd_fail).
    assert failed and all(t.user_attrs["fail_reason"] == "ValueError: odd trial / second line "
                          "(at myobj.py:14 in odd_fail)" for t in failed)


OWN_NAME_MODULE = '''
from tuner.objectives import ObjectiveSpec
from tuner.search.space import ParamRule


def objective(trial, ctx):
    return float(ctx.suggest(trial)["batch_sise"])


SPEC = ObjectiveSpec("own", objective, param_rules={"batch_sise": ParamRule(integer=True)})
'''


def test_a_typo_of_batch_size_is_an_error_for_any_objective_and_stores_nothing(cli, tmp_path,
                                                                             study_file):
    """``batch_sise`` was a custom objective's own integer range, and the study was stored."""
    (tmp_path / "myobj.py").write_text(OBJECTIVE_MODULE)
    custom = _custom_study(tmp_path, "myobj:objective")
    custom.write_text(custom.read_text() + "batch_sise = {low = 16, high = 256}\n")
    classifier = study_file(space={"batch_size": None, "batch_sise": {"low": 16, "high": 256}})
    for path in (custom, classifier):
        line = _one_error_line(cli("run", str(path)))
        assert line.startswith(f"error: {path}: [space] batch_sise = {{ low = 16, high = 256 }}: "
                               "unknown parameter 'batch_sise'; did you mean 'batch_size'?"), line
        assert not (tmp_path / "tuner.db").exists()
    # an objective whose own parameter it is says so in its param_rules
    (tmp_path / "ownobj.py").write_text(OWN_NAME_MODULE)
    path = tmp_path / "own.toml"
    path.write_text(to_toml({"study": {"name": "own", "n_trials": 2, "pruner": "none",
                                       "direction": "maximize"},
                             "objective": {"name": "ownobj:SPEC"},
                             "space": {"batch_sise": {"low": 16, "high": 256}}}))
    proc = cli("run", str(path), "-q")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="own", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    assert all(16 <= t.value <= 256 for t in study.trials) and len(study.trials) == 2


@pytest.mark.parametrize(("name", "reason"), [
    ("exits", "the objective called sys.exit(3)"),
    ("nan", "the objective returned nan, not a finite number"),
    ("text", "the objective returned 'hello', not a number"),
])
def test_an_objective_that_keeps_failing_is_one_error_line_with_its_reason(cli, tmp_path, name,
                                                                          reason):
    (tmp_path / "myobj.py").write_text(OBJECTIVE_MODULE)
    line = _one_error_line(cli("run", str(_custom_study(tmp_path, f"myobj:{name}")), "-q"))
    assert line == f"error: the objective failed in 3 trials in a row; last error: {reason}"
    study = optuna.load_study(study_name="custom", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3  # none left RUNNING
    assert {t.user_attrs["fail_reason"] for t in study.trials} == {reason}


def test_pluggable_objective_from_an_entry_point(cli, tmp_path):
    site = tmp_path / "site"
    (site / "plugpkg").mkdir(parents=True)
    (site / "plugpkg" / "__init__.py").write_text(OBJECTIVE_MODULE)
    dist = site / "plugpkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugpkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tuner.objectives]\nparabola = plugpkg:objective\n")
    proc = cli("run", str(_custom_study(tmp_path, "parabola")), env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("myobj_missing:objective", "cannot import module 'myobj_missing'"),
        ("myobj:nothing", "module 'myobj' has no attribute 'nothing'"),
        ("parabola", "unknown objective 'parabola'"),
        ("myobj:onearg", "objective 'myobj:onearg' must take (trial, ctx); it takes (trial)"),
    ],
)
def test_missing_objective_is_an_error_at_load_time(cli, tmp_path, name, match):
    (tmp_path / "myobj.py").write_text(OBJECTIVE_MODULE)
    assert match in _one_error_line(cli("run", str(_custom_study(tmp_path, name))))
    assert not (tmp_path / "tuner.db").exists()


def test_a_sampler_warning_is_said_once(cli, study_file):
    proc = cli("run", str(study_file(study={"sampler": "cmaes", "n_trials": 2})))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("cmaes sampler cannot model categorical parameters") == 1


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_bad_thread_setting_fails_before_any_trial(cli, study_file, tmp_path, value):
    line = _one_error_line(cli("run", str(study_file()), env={"TUNER_CPU_THREADS": value}))
    assert f"$TUNER_CPU_THREADS must be a whole number >= 1, got '{value}'" in line
    assert not (tmp_path / "tuner.db").exists()


def test_progress_lines_show_reasons_verbatim_and_the_stored_metric(cli, tmp_path, study_file):
    (tmp_path / "flaky.py").write_text(
        "def objective(trial, ctx):\n"
        "    hp = ctx.suggest(trial)\n"
        "    if trial.number == 0:\n"
        "        raise ValueError('range [0, inf] is not finite')\n"
        "    return hp['x']\n")
    proc = cli("run", str(_custom_study(tmp_path, "flaky:objective")))
    assert proc.returncode == 0, proc.stderr
    assert "ValueError: range [0, inf] is not finite" in proc.stderr
    assert cli("run", str(study_file(study={"n_trials": 1}))).returncode == 0
    resumed = cli("resume", "tiny", "--n-trials", "1")
    assert " val_accuracy=" in resumed.stderr, "resume names the stored metric, not 'value'"


def test_run_jobs_device_is_the_runs_own(cli, study_file, tmp_path):
    proc = cli("run", str(study_file(study={"n_trials": 2})), "--jobs", "1", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 2
    assert study.user_attrs["tuner:config"]["objective"]["device"] == "auto"
