"""``tuner report``: one self-contained HTML file, checked as text and in a real browser."""

from __future__ import annotations

import itertools
import math
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests._browser import dump_dom, ink, screenshot
from tests.conftest import TINY, merged, run_tuner, to_toml
from tuner.core.errors import ConfigError
from tuner.views.report import _figures as figs
from tuner.views.report import _importance as importance
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
    assert "Parameter importance (PED-ANOVA" in dom and "val_accuracy per init" in dom
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


# --- importance (issue 12, item 8) and the readability of the plots (item 10) -----------------
# Studies built with Optuna directly, named as tuner names them: lr (log), batch_size_log2 with
# the real batch_size as a user attribute, init; maximised, like val_accuracy.


def _tuner_like_study(n: int, seed: int = 0, lr: tuple[float, float] = (1e-4, 0.3),
                      plain_batch: bool = False, storage: str | None = None) -> optuna.Study:
    study = optuna.create_study(direction="maximize", storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=seed))

    def objective(t: optuna.Trial) -> float:
        x = t.suggest_float("lr", *lr, log=True)
        if plain_batch:  # a plain integer, searched as itself (a study made outside tuner)
            b = t.suggest_int("batch_size", 16, 256)
        else:
            b = 2 ** t.suggest_int("batch_size_log2", 4, 8)
            t.set_user_attr("batch_size", b)
        init = t.suggest_categorical("init", ["xavier_uniform", "kaiming_normal", "orthogonal"])
        return (1 - abs(math.log10(x) + 2) / 4 - b / 2000
                + (0.05 if init == "orthogonal" else 0.0))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n)
    return study


def _dashboard_ranking(study: optuna.Study) -> list[tuple[str, float]]:
    """What optuna-dashboard's importance chart shows for ``study`` (its own code path)."""
    from optuna_dashboard import _importance
    from optuna_dashboard._inmemory_cache import InMemoryCache

    _importance.param_importance_cache.clear()  # keyed by study id and trial count only
    rows = _importance.get_param_importance_from_trials_cache(
        InMemoryCache(), study._storage, study._study_id, 0, study.get_trials(deepcopy=False))
    return [(figs.param_label(r["name"]), r["importance"]) for r in rows]


def _bars(fig) -> list[tuple[str, float]]:
    """The importance bars, most important first."""
    bar = fig.data[0]
    return list(zip(bar.y, bar.x, strict=True))[::-1]


@pytest.mark.parametrize("n, warned", [(12, True), (19, True), (20, False), (30, False)])
def test_importance_names_ped_anova_and_says_when_there_are_too_few_trials(n, warned):
    study = _tuner_like_study(n)
    fig = importance.importances(study, study.trials)
    assert "PED-ANOVA" in fig.layout.title.text and "dashboard" in fig.layout.title.text
    assert f"{n} complete trials" in fig.layout.title.text
    notes = [a.text for a in fig.layout.annotations]
    if warned:
        assert len(notes) == 1 and notes[0].startswith(
            f"Only {n} complete trials: this ranking means little before about 20"), notes
        assert "here 2 trials" in notes[0], "the best 10% of 11 to 20 trials is 2 trials"
    else:
        assert notes == [], "no warning from 20 complete trials on"
    assert [name for name, _ in _bars(fig)] and all(
        not name.endswith("_log2") for name, _ in _bars(fig)), "real names: batch_size"


@pytest.mark.parametrize("n, seed", [(12, 1), (25, 0), (40, 2)])
def test_importance_ranking_is_the_one_optuna_dashboard_shows(n, seed):
    study = _tuner_like_study(n, seed=seed, storage="sqlite:///:memory:")
    ours = _bars(importance.importances(study, study.trials))
    theirs = _dashboard_ranking(study)
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    assert [v for _, v in ours] == pytest.approx([v for _, v in theirs])
    assert {name for name, _ in ours} == {"lr", "batch_size", "init"}


def test_importance_emits_none_of_optunas_warnings():
    study = optuna.create_study(direction="maximize")
    for i in range(4):  # tied values and a conditional parameter: PED-ANOVA warns on both
        params = {"lr": 10.0 ** -(i + 1)} | ({"momentum": 0.9} if i == 0 else {})
        dists = {"lr": optuna.distributions.FloatDistribution(1e-5, 1, log=True),
                 "momentum": optuna.distributions.FloatDistribution(0, 1)}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params}, value=0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = importance.importances(study, study.trials)
    assert "PED-ANOVA" in fig.layout.title.text


def _log_range_covers(axis, xs: list[float]) -> None:
    lo, hi = axis.range
    span = math.log10(max(xs)) - math.log10(min(xs))
    assert lo < math.log10(min(xs)) - 0.03 * span and hi > math.log10(max(xs)) + 0.03 * span, \
        "padded: no point sits on (or past) the edge"


@pytest.mark.parametrize("lr", [(1e-4, 0.3), (3e-3, 0.05)])
def test_lr_slice_is_a_padded_log_axis_with_several_readable_ticks(lr):
    study = _tuner_like_study(15, lr=lr)
    fig = figs.slice_plot(study.trials, "lr", "val_accuracy")
    xs = [x for tr in fig.data for x in tr.x]
    axis = fig.layout.xaxis
    assert axis.type == "log"
    _log_range_covers(axis, xs)
    ticks = list(axis.tickvals)
    assert len(ticks) >= 3, ticks
    assert all(axis.range[0] <= math.log10(t) <= axis.range[1] for t in ticks), "all visible"
    assert list(axis.ticktext) == [f"{t:g}" for t in ticks]


def test_batch_size_slice_ticks_are_the_real_powers_of_two():
    study = _tuner_like_study(25)
    fig = figs.slice_plot(study.trials, "batch_size", "val_accuracy")
    xs = [x for tr in fig.data for x in tr.x]
    axis = fig.layout.xaxis
    assert axis.type == "log"
    _log_range_covers(axis, xs)
    low, high = min(xs), max(xs)
    assert list(axis.tickvals) == [2 ** k for k in range(low.bit_length() - 1, high.bit_length())]
    assert list(axis.ticktext) == [str(2 ** k) for k in range(low.bit_length() - 1,
                                                              high.bit_length())]


def test_a_plain_integer_batch_size_gets_few_spaced_ticks_not_one_per_value():
    study = _tuner_like_study(30, plain_batch=True)
    fig = figs.slice_plot(study.trials, "batch_size", "val_accuracy")
    axis = fig.layout.xaxis
    ticks = sorted(axis.tickvals or [])
    assert 2 <= len(ticks) <= 9, ticks
    gaps = [math.log10(b) - math.log10(a) for a, b in itertools.pairwise(ticks)]
    assert min(gaps) >= (axis.range[1] - axis.range[0]) / 12, "labels do not overlap"


def test_parallel_axes_end_on_labelled_ticks_and_hold_every_value():
    study = _tuner_like_study(25, lr=(1.5e-4, 0.2))
    fig = figs.parallel(study.trials, "val_accuracy")
    dims = {d.label: d for d in fig.data[0].dimensions}
    assert set(dims) == {"batch_size", "init", "lr", "val_accuracy"}
    for name in ("batch_size", "init", "lr"):
        d = dims[name]
        lo, hi = d.range
        assert all(lo - 1e-9 <= t <= hi + 1e-9 for t in d.tickvals), \
            f"{name}: a tick outside the range stretches the axis into its title"
        assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in d.values), name
        assert (d.tickvals[0], d.tickvals[-1]) == pytest.approx((lo, hi)), name
    assert list(dims["lr"].ticktext) == ["0.0001", "0.001", "0.01", "0.1", "1"]
    assert set(dims["batch_size"].ticktext) <= {"16", "32", "64", "128", "256"}


@pytest.mark.browser
def test_side_by_side_plots_are_drawn_at_the_same_width_in_chromium(tmp_path):
    # plotly sizes a figure once, as its script runs: a flex row gave the first slice plot the
    # whole row (its neighbour was not parsed yet), so half its points fell outside the page
    study = _tuner_like_study(12, storage=f"sqlite:///{tmp_path / 's.db'}")
    dom = dump_dom(write_report(study, tmp_path / "r.html").as_uri())
    widths = {}
    for chunk in dom.split('class="plotly-graph-div')[1:]:
        width = re.search(r'<svg class="main-svg"[^>]*?width="(\d+)"', chunk)
        title = re.search(r'class="gtitle"[^>]*>([^<]*)<', chunk)
        if width and title:
            widths[title.group(1).split(" against ")[-1]] = int(width.group(1))
    lr, batch = widths["lr"], widths["batch_size"]
    history = widths["Optimisation history"]
    assert lr == batch and lr < 0.6 * history, widths
