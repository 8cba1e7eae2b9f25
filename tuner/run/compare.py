"""Compare samplers on one study: each sampler × N seeds, the repeats in parallel processes.

``compare(config, ["random", "tpe", "gp"], repeats=5, n_trials=30)`` runs the study once per
(sampler, seed) in a fresh in-memory storage (seeds ``config.seed + r``: every sampler gets the
same seeds, so data splits and trial seeds pair up), and returns a :class:`Comparison`:
``.summary()`` per sampler, ``.write(DIR)`` for ``best.png`` (best-so-far vs trials, median and
interquartile band per sampler), ``table.md`` and ``results.json`` (every run's raw values);
``compare(..., out_dir=DIR)`` checks ``DIR`` before the first run and writes them at the end.

Target: ``target`` if given, else the value that a share ``target_share`` of all runs reach by
their last trial (0.5: the median final best). "Trials to target" counts the trials spent
(complete, pruned and failed) until the best value first reaches it; a run that never does
counts as not reached (the median is then reported as ``> n_trials``). "Expected trials to
target" is COCO's expected running time: all trials spent, to the target or to the end, over
the runs that reached it (:func:`tuner.search.best_so_far.expected_trials`); with ``random``
among the samplers, each sampler's is also given as a ratio to random's.

A model-based sampler draws its first ``n_startup_trials`` at random (Optuna's default 10 for
tpe and gp): where that is half the budget or more, it can barely differ from random search, and
:func:`random_start_notes` says so (the command's first lines, ``table.md``, ``results.json``).

A failed trial is a trial spent: the best-so-far curve has an entry for it (the best before
it, or none yet), so a run with failed trials is longer than ``n_trials`` (the budget counts
complete and pruned trials). A run that completes no trial never reaches the target; when no
run completes one, there is no default target (``nan``, ``null`` in ``results.json``) and the
comparison is still written. A run the loop gives up on (the objective failed in several
trials in a row, every trial diverged) keeps the trials it spent and says why in ``stopped``;
the other runs go on.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuner.core.errors import ConfigError
from tuner.run.compare_plot import plot
from tuner.run.config import StudyConfig, config_from_dict
from tuner.run.loop import run_trials
from tuner.run.outcome import DivergedError, ObjectiveFailed
from tuner.run.process_pool import run_all
from tuner.run.study import prepare_study
from tuner.search.best_so_far import (
    best_so_far,
    expected_trials,
    ratio_interval,
    ratio_of_expected,
    trials_to_target,
)
from tuner.search.samplers import SAMPLERS, build_sampler, options_for


@dataclass
class Run:
    """One study run: ``values[i]`` is trial ``i``'s value (``None`` unless complete), over
    every finished trial (complete, pruned, failed) in trial order."""

    sampler: str
    seed: int
    values: list[float | None]
    states: list[str]
    elapsed_s: float
    best: list[float | None] = field(default_factory=list)  # best so far after each trial
    to_target: int | None = None  # trials until the best reached the target
    stopped: str | None = None  # why the run ended before its budget (the loop gave up)


@dataclass
class Comparison:
    """All runs of a comparison and the target they are measured against."""

    study: str
    metric: str
    direction: str
    n_trials: int
    samplers: list[str]
    runs: list[Run]
    target: float
    target_share: float
    warnings: list[str] = field(default_factory=list)  # random_start_notes
    files: dict[str, Path] = field(default_factory=dict)  # what write() wrote

    def summary(self) -> list[dict[str, Any]]:
        """Per sampler: runs, how many reached the target, median and expected trials to it
        (and the latter's ratio to random's, ``vs_random``: with ``vs_random_bound`` ``"<"`` or
        ``">"`` when it is a bound, else ``vs_random_interval``, its 90% bootstrap interval
        over the seeds), final best (median and quartiles), mean seconds per run."""
        spent = {s: [(r.to_target, len(r.best)) for r in self.runs if r.sampler == s]
                 for s in self.samplers}
        ert = {s: expected_trials(spent[s]) for s in self.samplers}
        rows = []
        for sampler in self.samplers:
            runs = [r for r in self.runs if r.sampler == sampler]
            steps = sorted(r.to_target if r.to_target is not None else math.inf for r in runs)
            ratio, bound = (None, "") if "random" not in ert else ratio_of_expected(
                ert[sampler], ert["random"], sum(n for _, n in spent["random"]),
                sum(n for _, n in spent[sampler]))
            interval = None if ratio is None or bound or sampler == "random" else \
                ratio_interval(spent[sampler], spent["random"])
            finals = [r.best[-1] for r in runs if r.best and r.best[-1] is not None]
            q = statistics.quantiles(finals, n=4, method="inclusive") if len(finals) > 1 \
                else finals * 3
            rows.append({
                "sampler": sampler, "runs": len(runs),
                "reached": sum(r.to_target is not None for r in runs),
                "median_trials_to_target": statistics.median(steps) if steps else math.inf,
                "expected_trials_to_target": ert[sampler],
                "vs_random": ratio, "vs_random_bound": bound, "vs_random_interval": interval,
                "final_best_median": statistics.median(finals) if finals else None,
                "final_best_q25": q[0] if finals else None,
                "final_best_q75": q[2] if finals else None,
                "mean_seconds": statistics.fmean(r.elapsed_s for r in runs) if runs else 0.0,
            })
        return rows

    def table(self, rows: list[dict[str, Any]] | None = None) -> str:
        """The summary (``rows``, if already computed) as a Markdown table, with a line each
        for failed trials and for runs stopped early, when there are any."""
        target = f"target {self.target:.4g}" if math.isfinite(self.target) else \
            "no target: no run completed a trial"
        lines = [
            f"{self.study}: {self.metric} ({self.direction}), {self.n_trials} trials per run, "
            f"{target}",
            "",
            "| sampler | runs | reached target | median trials to target | expected trials to "
            "target | vs random [90% interval] | final best: median [q25, q75] | s/run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in self.summary() if rows is None else rows:
            med = row["median_trials_to_target"]
            med_s = f"> {self.n_trials}" if math.isinf(med) else f"{med:g}"
            ert = row["expected_trials_to_target"]
            ert_s = "never reached" if math.isinf(ert) else f"{ert:.1f}"
            vs = "—" if row["vs_random"] is None else \
                f"{row['vs_random_bound']} {row['vs_random']:.2f}x".lstrip()
            if row["vs_random_interval"] is not None:
                vs += " [{}, {}]".format(*(f"{x:.2f}" if math.isfinite(x) else "∞"
                                           for x in row["vs_random_interval"]))
            best = "—" if row["final_best_median"] is None else (
                f"{row['final_best_median']:.4g} [{row['final_best_q25']:.4g}, "
                f"{row['final_best_q75']:.4g}]")
            lines.append(f"| {row['sampler']} | {row['runs']} | {row['reached']}/{row['runs']} "
                         f"| {med_s} | {ert_s} | {vs} | {best} | {row['mean_seconds']:.1f} |")
        lines += self._notes()
        return "\n".join(lines) + "\n"

    def _notes(self) -> list[str]:
        """The table's notes: samplers that are mostly random search at this budget, failed
        trials per sampler, the runs stopped early."""
        failed = {s: [(r.states.count("FAIL"), len(r.states)) for r in self.runs
                      if r.sampler == s] for s in self.samplers}
        notes = [f"warning: {w}" for w in self.warnings]
        if any(n for per in failed.values() for n, _ in per):
            notes.append("failed trials (counted as trials spent): " + ", ".join(
                f"{s} {sum(n for n, _ in per)} of {sum(m for _, m in per)}"
                for s, per in failed.items()))
        notes += [f"{r.sampler} seed {r.seed} stopped after {len(r.best)} trials: {r.stopped}"
                  for r in self.runs if r.stopped]
        return ["", *notes] if notes else []

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``best.png``, ``table.md`` and ``results.json`` into ``out_dir`` (created if
        missing); returns their paths, also kept in ``files``. Raises ConfigError when they
        cannot be written."""
        out = check_output(out_dir)
        paths = {"plot": out / "best.png", "table": out / "table.md",
                 "results": out / "results.json"}
        raw = {k: _finite_or_none(v) for k, v in asdict(self).items()
               if k not in ("runs", "files")}  # target: nan when no run completed a trial
        rows = self.summary()  # once: its bootstrap intervals take a while over many seeds
        raw["summary"] = [{k: _finite_or_none(v) for k, v in row.items()}
                          for row in rows]  # JSON has no infinity
        raw["runs"] = [asdict(r) for r in self.runs]
        try:  # the plot last: the raw results and the table are there whatever it does
            out.mkdir(exist_ok=True)
            paths["results"].write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
            paths["table"].write_text(self.table(rows), encoding="utf-8")
            plot(self, paths["plot"])
        except OSError as e:
            raise ConfigError(f"cannot write the comparison into {out}: "
                              f"{e.strerror or e} ({e.filename or out})") from None
        self.files = paths
        return paths


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_finite_or_none(x) for x in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


def check_output(out_dir: str | Path) -> Path:
    """``out_dir`` as a path, or ConfigError when a comparison cannot be written there: it is a
    file, its parent folder does not exist (it is created, its parents are not: a typo does not
    grow a tree), or the folder is not writable. Creates nothing."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"compare output {out} is a file; give a folder")
    folder = out if out.exists() else out.parent
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"compare output {out} is inside {folder}, a file; give a folder")
    if not folder.is_dir():
        raise ConfigError(f"compare output {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"compare output {out}: permission denied in {folder}")
    return out


def compare(
    config: StudyConfig,
    samplers: list[str],
    *,
    repeats: int = 5,
    n_trials: int | None = None,
    jobs: int | None = None,
    target: float | None = None,
    target_share: float = 0.5,
    on_run: Callable[[Run], None] | None = None,
    out_dir: str | Path | None = None,
) -> Comparison:
    """Run ``config`` under each of ``samplers`` with ``repeats`` seeds (see the module doc);
    ``jobs`` worker processes (default: one per CPU core, at most one per run). With
    ``out_dir``, write the results there (:meth:`Comparison.write`), checked before any run."""
    check_samplers(samplers, config)
    if out_dir is not None:
        check_output(out_dir)
    if repeats < 1 or (n_trials is not None and n_trials < 1):
        raise ConfigError("repeats and n_trials must be >= 1")
    if not 0 < target_share <= 1:
        raise ConfigError(f"target share must be in (0, 1], got {target_share}")
    if target is not None and not math.isfinite(target):
        raise ConfigError(f"the target must be a finite metric value, got {target}")
    n_trials = n_trials or config.n_trials
    tasks = [(_run_config(config, s, config.seed + r, n_trials), s, config.seed + r)
             for s in samplers for r in range(repeats)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    runs: list[Run] = []

    def finished(run: Run) -> None:
        runs.append(run)
        if on_run is not None:
            on_run(run)

    run_all(_one_run, tasks, jobs, finished)  # stopped at once by Ctrl-C, SIGTERM, a failure
    runs.sort(key=lambda r: (samplers.index(r.sampler), r.seed))
    result = Comparison(config.name, config.metric, config.direction, n_trials, list(samplers),
                        runs, math.nan, target_share,
                        warnings=random_start_notes(config, samplers, n_trials))
    result.target = target if target is not None else _default_target(result)
    for r in runs:
        r.to_target = trials_to_target(r.best, result.target, config.direction == "maximize")
    if out_dir is not None:
        result.write(out_dir)
    return result


def check_samplers(samplers: list[str], config: StudyConfig | None = None) -> None:
    """Raise :class:`ConfigError` for an empty list, a name listed twice or an unknown name
    (listing the valid); with ``config``, also for a sampler that cannot search its space (grid
    over a continuous range), and for what binding ``config`` finds (its data, device,
    checkpoint: named by the study file), before any run starts."""
    if not samplers:
        raise ConfigError("compare needs at least one sampler")
    for name in samplers:
        SAMPLERS.get(name)
        if samplers.count(name) > 1:
            raise ConfigError(f"compare: sampler {name!r} is listed twice")
    if config is not None and config.multi:
        raise ConfigError(
            f"{config.source}: tuner compare counts trials to a target of one metric, and this "
            f"study has {len(config.metrics)} ({', '.join(config.metrics)}); compare its "
            "samplers on one of them ([study] metric), or by hypervolume in tuner report")
    if config is not None:
        config.bind()
    for name in samplers if config is not None else ():
        where = f"{config.source} (compared with sampler {name})"
        config_from_dict(_run_config(config, name, config.seed, 1, f"{where}: [sampler]"), where)


def random_start_notes(config: StudyConfig, samplers: list[str], n_trials: int) -> list[str]:
    """A line for the ``samplers`` whose random start-up (``n_startup_trials``: the study
    file's ``[sampler]`` value, else the Optuna class's default) is at least half of
    ``n_trials``: so many of their trials are random search's that the comparison can barely
    tell them apart (with TPE's default 10 and 15 trials, only 5 can differ). One line for
    all those with the same start-up (tpe and gp: 10 by default)."""
    by_startup: dict[int, list[str]] = {}
    for name in samplers:
        options = options_for(name, config.to_dict()["sampler"], config.space)
        default = inspect.signature(type(build_sampler(name, {}, 0, config.space))).parameters \
            .get("n_startup_trials")
        startup = options.get("n_startup_trials", default.default if default else None)
        if isinstance(startup, int) and startup >= 1 and 2 * startup >= n_trials:
            by_startup.setdefault(startup, []).append(name)
    notes = []
    for startup, names in by_startup.items():
        its = "its" if len(names) == 1 else "their"
        first = f"{' and '.join(names)}: {its} first {startup} trials are random (n_startup_trials)"
        if startup >= n_trials:
            notes.append(f"{first}; with {n_trials} trials none can differ from random search")
        else:
            notes.append(f"{first}; with {n_trials} trials only {n_trials - startup} can "
                         "differ from random search")
    return notes


def _run_config(config: StudyConfig, sampler: str, seed: int, n_trials: int,
                where: str = "[sampler]") -> dict[str, Any]:
    """The study file of one run, with the sampler options this sampler accepts."""
    raw = config.to_dict()
    raw["sampler"] = options_for(sampler, raw["sampler"], config.space, where)
    raw["study"].update(sampler=sampler, seed=seed, n_trials=n_trials,
                        name=f"{config.name}-{sampler}-{seed}")
    return raw


def _one_run(raw: dict[str, Any], sampler: str, seed: int) -> Run:
    """In a worker process: one study run in memory."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # as the command does in its own process (tuner.cli): a spawned worker starts without it
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    config = config_from_dict(raw, f"<compare {sampler} seed {seed}>")
    study = prepare_study(config, optuna.storages.InMemoryStorage())
    started = time.monotonic()
    stopped = None
    try:
        run_trials(study, config, budget=config.n_trials)
    except (ObjectiveFailed, DivergedError) as e:  # this run is over; the others go on
        stopped = str(e)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    values = [t.value if t.state.name == "COMPLETE" else None for t in trials]
    return Run(sampler, seed, values=values, states=[t.state.name for t in trials],
               elapsed_s=time.monotonic() - started,
               best=best_so_far(values, config.direction == "maximize"), stopped=stopped)


def _default_target(c: Comparison) -> float:
    """The final best value that ``target_share`` of all runs reach (an achieved value);
    ``nan`` when no run completed a trial (every run then counts as not reached)."""
    finals = sorted((r.best[-1] for r in c.runs if r.best and r.best[-1] is not None),
                    reverse=c.direction == "maximize")  # best first
    if not finals:
        return math.nan
    must_reach = max(math.ceil(c.target_share * len(c.runs)), 1)  # runs, of all
    return finals[min(must_reach, len(finals)) - 1]
