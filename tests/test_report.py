"""``tuner report``: one self-contained HTML file, checked as text and in a real browser."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests._browser import dump_dom, ink, screenshot
from tests.conftest import TINY, merged, run_tuner, to_toml
from tuner.core.errors import ConfigError
from tuner.views.report import build_report, write_report

# Init scheme and activation both searched, so the report compares both.
STUDY = merged(TINY, study={"n_trials": 5, "sampler": "random", "seed": 3},
               space={"activation": ["relu", "tanh"]})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tuner study (5 trials) plus one pruned and one failed trial, and an empty study."""
    folder = tmp_path_factory.mktemp("report")
    (folder / "study.toml").write_text(to_toml(STUDY))
    proc = run_tuner("run", "study.toml", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    storage = f"sqlite:///{folder / 'tuner.db'}"
    study = optuna.load_study(study_name="tiny", storage=storage)
    pruned = study.ask()
    pruned.report(0.25, 1)
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask()
    failed.set_user_attr("fail_reason", "RuntimeError: out of memory")
    study.tell(failed, state=TrialState.FAIL)
    optuna.create_study(study_name="empty", storage=storage)
    only_failed = optuna.create_study(study_name="only-failed", storage=storage)
    only_failed.tell(only_failed.ask(), state=TrialState.FAIL)
    return folder


def _script_sources(html: str) -> list[str]:
    """The ``src`` of every ``<script>`` tag (a parser, so text inside scripts is not a tag)."""
    sources: list[str] = []

    class Scripts(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            sources.extend(v or "" for k, v in attrs if tag == "script" and k == "src")

    Scripts().feed(html)
    return sources


def _study(folder: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'tuner.db'}")


@pytest.mark.slow
def test_report_has_every_section_and_embeds_plotly_once(folder, tmp_path):
    path = write_report(_study(folder), tmp_path / "r.html")
    html = path.read_text()
    for title in ("Optimisation history", "Init schemes compared", "Activations compared",
                  "Parameter importance", "Slice plots", "Parallel coordinates",
                  "Learning curves", "Top 5 trials", "Pruned and failed trials",
                  "Settings (the stored study file)"):
        assert f"<h2>{title}</h2>" in html, title
    assert len(re.findall(r"\* plotly\.js v\d", html)) == 1, "plotly.js embedded exactly once"
    assert _script_sources(html) == [], "opens offline: no script is loaded from elsewhere"
    assert "best so far" in html and "pruned (last reported)" in html
    assert "trial 6 failed: RuntimeError: out of memory" in html
    assert "batch_size_log2" not in html, "the real batch size, never its exponent"
    assert re.search(r"<td class='l'>(16|32)</td>", html), "top table shows real batch sizes"
    assert "[objective]" in html and 'dataset = "iris"' in html
    assert "data:image/svg+xml;base64," in html, "the best trial's pictures are embedded"
    assert "<h2>Initial networks per init scheme</h2>" in html
    assert html.count("alt='kaiming_normal: trial") == 1 and html.count("alt='xavier_uniform:") == 1


def test_too_few_trials_are_said_plainly_and_plain_optuna_studies_work(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", direction="minimize")
    study.optimize(lambda t: (t.suggest_float("lr", 1e-4, 1.0, log=True) - 0.01) ** 2,
                   n_trials=1)
    html = build_report(study)
    assert "Not shown: parameter importance needs at least 2 complete trials; this study has 1." \
        in html
    assert "Not shown: the parallel-coordinates plot needs at least 2 complete trials" in html
    assert "created outside tuner" in html
    assert "Init schemes compared" not in html, "init is not searched"


@pytest.mark.slow
def test_cli_writes_the_report(folder, tmp_path):
    proc = run_tuner("report", "tiny", "-o", str(tmp_path / "out.html"), cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and (tmp_path / "out.html").stat().st_size > 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["nope"], "no study named 'nope'"),
    (["empty"], "study 'empty' has no finished trial yet (none); nothing to report"),
    (["only-failed"], "has no finished trial yet (1 fail)"),
    (["tiny", "-o", "{tmp}/missing/r.html"], "folder {tmp}/missing does not exist"),
    (["tiny", "-o", "{tmp}"], "it is a folder"),
    (["tiny", "-o", "{tmp}/a-file/r.html"], "does not exist"),
    (["tiny", "--storage", "sqlite:///{tmp}/none.db"], "no storage at"),
    (["tiny", "--storage", "postgresql://u@127.0.0.1:1/x"], "cannot open storage"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(folder, tmp_path, args, message):
    (tmp_path / "a-file").write_text("x")
    args = [a.format(tmp=tmp_path) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "r.html")]
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_tuner("report", *args, cwd=folder)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message.format(tmp=tmp_path) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing written"


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import tuner.views.report._build as build

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "build_report", lambda study, artifact_dir=None: "<html>")
    monkeypatch.setattr(build.os, "replace", full_disk)
    with pytest.raises(ConfigError, match=r"cannot write report .*r.html: No space left"):
        write_report(optuna.create_study(), tmp_path / "r.html")
    assert list(tmp_path.iterdir()) == []


def test_library_refuses_a_study_without_complete_trials(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'e.db'}", study_name="e")
    with pytest.raises(ConfigError, match="no finished trial yet"):
        write_report(study, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_offline_in_chromium(folder, tmp_path):
    path = write_report(_study(folder), tmp_path / "report.html")
    dom = dump_dom(path.as_uri())
    assert "Study tiny" in dom
    assert dom.count("class=\"main-svg\"") >= 8, "plotly drew the figures (history, boxes, …)"
    assert "Parameter importance (fANOVA" in dom and "val_accuracy per init" in dom
    png = screenshot(path.as_uri(), "report.png", size=(1400, 5200))
    assert ink(png) > 0.05, f"{png} looks blank"


def test_a_study_whose_trials_were_all_pruned_gets_a_report(tmp_path):
    # every init is dead: each trial is pruned before its first epoch; the report says why
    (tmp_path / "dead.toml").write_text(to_toml(merged(
        TINY, study={"name": "dead", "n_trials": 3}, space={"init": ["zeros", "constant"]})))
    assert run_tuner("run", "dead.toml", cwd=tmp_path).returncode == 0
    proc = run_tuner("report", "dead", "-o", "dead.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "dead.html").read_text()
    assert "No trial completed: every finished trial was pruned." in html
    assert "3 pruned: dead init (symmetric)" in html
    assert "Traceback" not in html and "Top " not in html
