"""Assemble the study report: one HTML file with plotly.js embedded once (opens offline)."""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import ConfigError
from tuner.core.keys import CONFIG_ATTR, CURVE, FAIL_REASON, PRUNE_REASON
from tuner.core.paths import replaced_on_write
from tuner.core.toml_text import dump_toml
from tuner.core.version import __version__
from tuner.store.studies import count_states, pareto_set, study_metric
from tuner.views.real_params import real_params
from tuner.views.report import _figures as figs
from tuner.views.report import _pareto as mo
from tuner.views.report._curves import learning_curves
from tuner.views.report._gallery import Gallery
from tuner.views.report._importance import importances

TOP = 10
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
# .row: side-by-side figures in columns whose width depends on the page only (auto-fill), not on
# how many figures the row holds yet: plotly sizes each figure once, when its own script runs,
# before the next one is parsed (a flex row first gave the lone first figure the full width).
CSS = """
body{font-family:system-ui,'DejaVu Sans',Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:0 24px 48px;color:#222}
h1{margin:24px 0 4px}h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666}.note{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px}
table{border-collapse:collapse;font-size:14px}td,th{border-bottom:1px solid #e5e5e5;
padding:4px 10px;text-align:right}th{background:#f5f5f5}td.l,th.l{text-align:left}
pre{background:#f7f7f7;padding:12px;white-space:pre-wrap}
.row{display:grid;gap:12px;grid-template-columns:repeat(auto-fill,minmax(min(560px,100%),1fr))}
.row>div{min-width:0}img.pic{max-width:100%;border:1px solid #ddd}
"""


def write_report(study: optuna.Study, path: str | Path, *,
                 artifact_dir: str | Path | None = None) -> Path:
    """Write the HTML report of ``study`` to ``path`` and return it.

    Raises ConfigError (nothing written) when the study has no complete trial or ``path``
    cannot be written. ``artifact_dir``: where its trial pictures live (default: beside the
    storage, see :mod:`tuner.store.artifacts`); without them the report just leaves them out.
    """
    path = Path(path)
    _check_writable(path)
    html = build_report(study, artifact_dir=artifact_dir)
    tmp: str | None = None
    try:
        if not replaced_on_write(path):  # /dev/null, a FIFO: written into, never replaced
            with path.open("w", encoding="utf-8") as f:
                f.write(html)
            return path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a report is not
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write report {path}: {e.strerror or e}") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"cannot write report {path}: it is a folder")
    if not parent.is_dir():
        raise ConfigError(f"cannot write report {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write report {path}: permission denied")


def build_report(study: optuna.Study, *, artifact_dir: str | Path | None = None) -> str:
    """The report of ``study`` as one HTML string (see :func:`write_report`)."""
    trials = study.get_trials(deepcopy=False)
    if len(study.directions) > 1:
        return _multi_report(study, trials, artifact_dir)
    done = figs.complete(trials)
    if not done and not any(t.state == TrialState.PRUNED for t in trials):
        raise ConfigError(
            f"study {study.study_name!r} has no finished trial yet ({_states(trials) or 'none'}); "
            "nothing to report"
        )
    config = study.user_attrs.get(CONFIG_ATTR) or {}
    metric = study_metric(study)
    maximize = study.direction.name == "MAXIMIZE"
    top = sorted(done, key=lambda t: t.value, reverse=maximize)[:TOP]
    searched = sorted({figs.param_label(p) for t in trials for p in t.params})
    page = _Page()

    gallery = Gallery(study, artifact_dir)

    page.add(_header(study, trials, top[0] if top else None, metric))
    page.section("Optimisation history", figs.history(trials, metric, maximize))
    for param, title in (("init", "Init schemes compared"), ("activation", "Activations compared")):
        if param in searched:
            page.section(title, figs.by_category(trials, param, metric, maximize))
        if param == "init" and param in searched:
            page.add(gallery.per_init(trials, maximize))
    page.section("Parameter importance", importances(study, trials))
    numeric = [p for p in ("lr", "batch_size", *searched) if p in searched
               and all(isinstance(real_params(t).get(p, 0), int | float) for t in done)]
    page.section("Slice plots", *[figs.slice_plot(trials, p, metric)
                                  for p in dict.fromkeys(numeric)])
    page.section("Parallel coordinates", figs.parallel(trials, metric))
    page.section("Learning curves", learning_curves(top[:5], metric))
    if top:  # a study whose trials were all pruned (dead inits …) has no best to show
        page.add(gallery.best(top[0]))
        page.add(_top_table(top, metric))
    page.add(_failures(trials))
    page.add(_settings(config))
    return page.html(study)


def _multi_report(study: optuna.Study, trials: list[FrozenTrial],
                  artifact_dir: str | Path | None) -> str:
    """The report of a study with several objectives (:mod:`tuner.views.report._pareto`): its
    Pareto front, hypervolume and metric histories instead of one value's history and best
    trials; the plots of one value show the first metric and say so in their titles."""
    if not any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        raise ConfigError(
            f"study {study.study_name!r} has no finished trial yet ({_states(trials) or 'none'}); "
            "nothing to report"
        )
    obj = mo.objectives_of(study, trials)
    front = mo.sort_front(pareto_set(study), obj)
    first = mo.first_metric(trials)  # whose value is the first metric, for the plots of one
    name, maximize = obj.names[0], obj.maximize[0]
    by = f"{name}, the first metric"
    searched = sorted({figs.param_label(p) for t in trials for p in t.params})
    page = _Page()
    gallery = Gallery(study, artifact_dir)

    page.add(_multi_header(study, trials, front, obj))
    page.section("Pareto front", *mo.pareto_figures(trials, front, obj))
    page.add(_front_words(trials, front, obj))
    volume, words = mo.hypervolume_plot(trials, obj)
    page.section("Hypervolume", volume)
    if words:
        page.add(f"<p class='sub'>{escape(words)}</p>")
    page.section("Each metric over trials", *mo.metric_histories(trials, front, obj))
    for param, title in (("init", "Init schemes compared"), ("activation", "Activations compared")):
        if param in searched:
            page.section(f"{title} (by {by})", figs.by_category(first, param, name, maximize))
        if param == "init" and param in searched:
            page.add(gallery.per_init(first, maximize, by=f"by {by}"))
    n = len(figs.complete(first))
    page.section("Parameter importance, per metric",
                 *([importances(study, first, target=mo.importance_target(obj, i), metric=m)
                    for i, m in enumerate(obj.names)] if n >= 2
                   else [figs.too_few(n, 2, "parameter importance")]))
    numeric = [p for p in ("lr", "batch_size", *searched) if p in searched
               and all(isinstance(real_params(t).get(p, 0), int | float) for t in trials
                       if mo.scored(t, obj))]
    page.section(f"Slice plots ({by})", *[figs.slice_plot(first, p, name)
                                           for p in dict.fromkeys(numeric)])
    page.section("Parallel coordinates", mo.parallel_metrics(trials, obj))
    page.section("Learning curves", learning_curves(first_of(first, front[:5]), name,
                                                    which="{n} Pareto-optimal",
                                                    role="the first metric"))
    if front:
        page.add(gallery.best(front[0], f"Pareto-optimal trial #{front[0].number} (the best "
                                        f"{name} of the Pareto set): its pictures"))
        page.add(_pareto_table(front, obj))
    page.add(_failures(trials))
    page.add(_settings(study.user_attrs.get(CONFIG_ATTR) or {}))
    return page.html(study)


def first_of(first: list[FrozenTrial], chosen: list[FrozenTrial]) -> list[FrozenTrial]:
    """The copies among ``first`` (:func:`_pareto.first_metric`) of the ``chosen`` trials."""
    by_number = {t.number: t for t in first}
    return [by_number[t.number] for t in chosen]



class _Page:
    """HTML parts in order; the first plotly figure carries plotly.js, the rest refer to it."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._js = False

    def add(self, html: str) -> None:
        self.parts.append(html)

    def figure(self, fig: figs.Figure) -> str:
        if isinstance(fig, str):
            return f"<p class='note'>{escape(fig)}</p>"
        html = fig.to_html(full_html=False, include_plotlyjs=not self._js, config=PLOTLY_CONFIG)
        self._js = True
        return f"<div>{html}</div>"

    def section(self, title: str, *figures: figs.Figure) -> None:
        inner = "".join(self.figure(f) for f in figures)
        wrap = "<div class='row'>" if len(figures) > 1 else "<div>"
        self.add(f"<h2>{escape(title)}</h2>{wrap}{inner}</div>")

    def html(self, study: optuna.Study) -> str:
        title = f"tuner report · {escape(study.study_name)}"
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}"
                f"</title><style>{CSS}</style></head><body>{''.join(self.parts)}</body></html>\n")


def _states(trials: list[FrozenTrial]) -> str:
    return ", ".join(f"{n} {s.lower()}" for s, n in sorted(count_states(trials).items()))


def _v(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else escape(str(x))


def _header(study: optuna.Study, trials: list[FrozenTrial], best: FrozenTrial | None,
            metric: str) -> str:
    when = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    head = (f"<h1>Study {escape(study.study_name)}</h1>"
            f"<p class='sub'>{study.direction.name.lower()} {escape(metric)} · "
            f"{len(trials)} trials ({_states(trials)}) · report by tuner {__version__}, {when}</p>")
    if best is None:
        return head + ("<p><b>No trial completed: every finished trial was pruned.</b> The "
                       "plots that need complete trials say so; the initial networks (when "
                       "stored) and the list of pruned trials at the end show why they "
                       "stopped.</p>")
    params = ", ".join(f"{k} = {_v(v)}" for k, v in real_params(best).items())
    return head + (f"<p><b>Best trial #{best.number}: {escape(metric)} = {_v(best.value)}</b>"
                   f" — {params}</p>")


def _multi_header(study: optuna.Study, trials: list[FrozenTrial], front: list[FrozenTrial],
                  obj: mo.Objectives) -> str:
    when = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    goals = ", ".join(f"{obj.direction(i)} {escape(n)}" for i, n in enumerate(obj.names))
    limits = (f" · constraints: {escape(', '.join(obj.constraints))}" if obj.constraints
              else "")
    head = (f"<h1>Study {escape(study.study_name)}</h1>"
            f"<p class='sub'>{len(obj.names)} objectives: {goals}{limits} · "
            f"{len(trials)} trials ({_states(trials)}) · report by tuner {__version__}, {when}"
            "</p>")
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return head + ("<p><b>No trial completed: every finished trial was pruned.</b> The "
                       "plots that need complete trials say so; the initial networks (when "
                       "stored) and the list of pruned trials at the end show why they "
                       "stopped.</p>")
    if not front:
        return head + "<p><b>No Pareto set: none of the study's own trials completed.</b></p>"
    numbers = ", ".join(f"#{t.number}" for t in front[:20]) + (
        f" and {len(front) - 20} more" if len(front) > 20 else "")
    infeasible = obj.constrained and not any(mo.is_feasible(t) for t in front)
    note = (" <b>None of them is feasible</b>: no trial satisfies the constraints, so this is "
            "the front of the infeasible ones." if infeasible else "")
    return head + (f"<p><b>Pareto set: {len(front)} trial{'s' if len(front) != 1 else ''} "
                   f"({numbers})</b> — no other{' feasible' if obj.constrained else ''} trial "
                   f"of the study is as good in every metric and better in one.{note}</p>")


def _front_words(trials: list[FrozenTrial], front: list[FrozenTrial], obj: mo.Objectives) -> str:
    """What the Pareto plot shows, in words (which trials are left out of the front)."""
    if not any(mo.scored(t, obj) for t in trials):
        return ""
    parts = [f"Red diamonds: the Pareto set ({len(front)} trials)"
             + (", connected as the staircase it dominates" if len(obj.names) == 2 else
                f"; one plot per pair of the {len(obj.names)} metrics, the front of all of "
                "them not connected: its projection on two metrics is no staircase")]
    if obj.constrained:
        parts.append("orange squares: infeasible trials (never in the Pareto set"
                     + (" unless none is feasible" if not any(mo.is_feasible(t) for t in front)
                        else "") + ")")
    if any(not mo.is_own(t) for t in trials):
        parts.append("hollow markers: a warm start's prior observations (another study's "
                     "trials; counted in neither the front nor the hypervolume)")
    left = sum(t.state == TrialState.COMPLETE and not mo.scored(t, obj) for t in trials)
    if left:
        parts.append(f"{left} complete trial{'s' if left != 1 else ''} with a non-finite value "
                     "not drawn")
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    if pruned:
        parts.append(f"{pruned} pruned trial{'s' if pruned != 1 else ''} (no values) not drawn")
    return f"<p class='sub'>{escape('; '.join(parts))}.</p>"


def _pareto_table(front: list[FrozenTrial], obj: mo.Objectives) -> str:
    params = sorted({k for t in front for k in real_params(t)})
    head = "".join(f"<th>{escape(n)} ({'max' if m else 'min'})</th>"
                   for n, m in zip(obj.names, obj.maximize, strict=True))
    head += "".join(f"<th class='l'>{escape(p)}</th>" for p in params)
    rows = []
    for t in front:
        p = real_params(t)
        values = "".join(f"<td>{_v(v)}</td>" for v in t.values)
        cells = "".join(f"<td class='l'>{_v(p.get(k, '—'))}</td>" for k in params)
        secs = t.duration.total_seconds() if t.duration else None
        rows.append(f"<tr data-trial='{t.number}'><td>{t.number}</td>{values}{cells}"
                    f"<td>{_epochs(t)}</td>"
                    f"<td>{'—' if secs is None else f'{secs:.2f}'}</td></tr>")
    which = "feasible, " if obj.constrained and any(mo.is_feasible(t) for t in front) else ""
    return (f"<h2>Pareto set ({len(front)} trials)</h2><p class='sub'>The study's own "
            f"{which}complete trials that no other beats in every metric, best "
            f"{escape(obj.names[0])} first.</p><table class='pareto'><tr><th>trial</th>{head}"
            f"<th>epochs</th><th>seconds</th></tr>{''.join(rows)}</table>")


def _top_table(top: list[FrozenTrial], metric: str) -> str:
    params = sorted({k for t in top for k in real_params(t)})
    head = "".join(f"<th class='l'>{escape(p)}</th>" for p in params)
    rows = []
    for rank, t in enumerate(top, start=1):
        p = real_params(t)
        cells = "".join(f"<td class='l'>{_v(p.get(k, '—'))}</td>" for k in params)
        secs = t.duration.total_seconds() if t.duration else None
        rows.append(f"<tr><td>{rank}</td><td>{t.number}</td><td>{_v(t.value)}</td>{cells}"
                    f"<td>{_epochs(t)}</td>"
                    f"<td>{'—' if secs is None else f'{secs:.2f}'}</td></tr>")
    return (f"<h2>Top {len(top)} trials</h2><table><tr><th>rank</th><th>trial</th>"
            f"<th>{escape(metric)}</th>{head}<th>epochs</th><th>seconds</th></tr>"
            f"{''.join(rows)}</table>")


def _epochs(t: FrozenTrial) -> str:
    curve = t.user_attrs.get(CURVE)
    lengths = [len(v) for v in curve.values() if isinstance(v, list)] if isinstance(
        curve, dict) else []
    if any(lengths):  # whatever names the objective reported
        return str(max(lengths))
    return "—" if t.last_step is None else str(t.last_step)


def _failures(trials: list[FrozenTrial]) -> str:
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if not pruned and not failed:
        return ""
    lines = [f"<li>trial {t.number} failed: {escape(str(t.user_attrs.get(FAIL_REASON, '?')))}"
             "</li>" for t in failed[:20]]
    # a trial pruned before its first report (diverged in epoch 1, …) has no point to draw
    blank = {t.number for t in pruned if figs.last_reported(t) is None}
    reasons = Counter(_prune_reason(t) for t in pruned)
    for reason, n in reasons.most_common(8):
        k = sum(t.number in blank for t in pruned if _prune_reason(t) == reason)
        note = "" if not k else " — not plotted: no value reported" if k == n else \
            f" — {k} not plotted: no value reported"
        lines.append(f"<li>{n} pruned: {escape(reason)}{note}</li>")
    shown = ("shown as grey × at their last reported value" if not blank else
             "none plotted: they reported no value" if len(blank) == len(pruned) else
             f"{len(pruned) - len(blank)} shown as grey × at their last reported value, "
             f"{len(blank)} not plotted: they reported no value")
    return (f"<h2>Pruned and failed trials</h2><p>{len(pruned)} pruned ({shown}), "
            f"{len(failed)} failed (not plotted).</p><ul>{''.join(lines)}</ul>")


def _prune_reason(trial: FrozenTrial) -> str:
    """Why a trial was pruned, without its numbers ("dead init (vanishing): …" stays)."""
    reason = str(trial.user_attrs.get(PRUNE_REASON, "by the pruner"))
    return reason.split(":")[0] if reason.startswith("dead init") else re.sub(r"\d+", "N", reason)


def _settings(config: dict[str, Any]) -> str:
    if not config:
        return ("<h2>Settings</h2><p class='note'>This study was created outside tuner: it "
                "stores no study file.</p>")
    text = escape(dump_toml(config), quote=False)
    return f"<h2>Settings (the stored study file)</h2><pre>{text}</pre>"
