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
tpe and gp; nsga2 its first generation, ``population_size``, 50 by default): where that is half
the budget or more, it can barely differ from random search, and :func:`random_start_notes`
says so (the command's first lines, ``table.md``, ``results.json``).

A failed trial is a trial spent: the best-so-far curve has an entry for it (the best before
it, or none yet), so a run with failed trials is longer than ``n_trials`` (the budget counts
complete and pruned trials). A run that completes no trial never reaches the target; when no
run completes one, there is no default target (``nan``, ``null`` in ``results.json``) and the
comparison is still written. A run the loop gives up on (the objective failed in several
trials in a row, every trial diverged) keeps the trials it spent and says why in ``stopped``;
the other runs go on.

A study with several metrics (``[study] metrics``) is compared by **hypervolume**
(:mod:`tuner.search.hypervolume`, the report's computation): one reference point for all runs,
each metric's worst value among every run's complete feasible trials pushed out by 10% of its
range; a run's ``best`` is then its hypervolume so far, trial by trial, of its feasible
complete trials (``None`` before the first; failed, pruned and infeasible trials are trials
spent that add nothing), computed once every run has finished (:func:`score_by_hypervolume`);
the plot and the final hypervolumes read it as 0 before the first feasible trial. A run's
``values`` are then one list per complete trial, and its ``feasible`` says which satisfy
``[study] constraints``. The target is a hypervolume (default: the median final one of all
runs), and everything else (trials to target, expected trials, the ratio to random's) is as
above.
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

import numpy as np

from tuner.core.errors import ConfigError
from tuner.core.keys import FEASIBLE
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
from tuner.search.hypervolume import (
    from_losses,
    hypervolume_so_far,
    losses,
    needs_wfg,
    reference_losses,
)
from tuner.search.samplers import SAMPLERS, build_sampler, options_for


@dataclass
class Run:
    """One study run: ``values[i]`` is trial ``i``'s value (``None`` unless complete), over
    every finished trial (complete, pruned, failed) in trial order. With several metrics,
    ``values[i]`` is the list of them, ``feasible[i]`` whether they satisfy the study's
    constraints, and ``best`` the hypervolume so far."""

    sampler: str
    seed: int
    values: list[Any]  # float | None; with several metrics list[float] | None
    states: list[str]
    elapsed_s: float
    best: list[float | None] = field(default_factory=list)  # best so far after each trial
    to_target: int | None = None  # trials until the best reached the target
    stopped: str | None = None  # why the run ended before its budget (the loop gave up)
    feasible: list[bool] = field(default_factory=list)  # several metrics only

    def outcome(self) -> str:
        """What the run found, for the command's line per run: its best value (several
        metrics: its complete and feasible trials; the hypervolume needs every run)."""
        if self.feasible:
            complete = sum(v is not None for v in self.values)
            ok = sum(f for v, f in zip(self.values, self.feasible, strict=True)
                     if v is not None)
            return f"{complete} complete trials, {ok} feasible"
        best = self.best[-1] if self.best else None
        return "no complete trial" if best is None else f"best {best:.4g}"


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
    # several metrics (metric "hypervolume", direction "maximize"): theirs, the constraints,
    # and the reference point (the metrics' values; None when no run has a feasible trial),
    # taken from reference_points complete feasible trials, out by 10% of each range (of the
    # value where all are equal: reference_flat)
    metrics: list[str] = field(default_factory=list)
    directions: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    reference: list[float] | None = None
    reference_points: int = 0
    reference_flat: list[str] = field(default_factory=list)

    @property
    def multi(self) -> bool:
        """Whether the runs are compared by hypervolume (a study with several metrics)."""
        return bool(self.metrics)

    def curve(self, run: Run) -> list[float | None]:
        """A run's best so far as the plot and the final values read it: ``run.best``, and by
        hypervolume 0 before the first feasible trial (``None`` in ``run.best``: no point yet,
        and never at a target), unless no run has one (no reference point: none at all)."""
        if not self.multi or self.reference is None:
            return run.best
        return [0.0 if b is None else b for b in run.best]

    def objectives(self) -> str:
        """The metrics and their directions, as words: "a (maximize) and b (minimize)"."""
        parts = [f"{m} ({d})" for m, d in zip(self.metrics, self.directions, strict=True)]
        return ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else "".join(parts)

    def reference_words(self) -> str:
        """The reference point and how it was chosen, as a sentence."""
        if self.reference is None:
            return "no reference point: no run completed a feasible trial"
        point = ", ".join(f"{m} = {v:.4g}" for m, v in zip(self.metrics, self.reference,
                                                             strict=True))
        flat = (f" ({', '.join(self.reference_flat)}: all equal, out by 10% of the value)"
                if self.reference_flat else "")
        feasible = " feasible" if self.constraints else ""
        return (f"reference point {point}: each metric's worst among the "
                f"{self.reference_points} complete{feasible} trials of all runs, pushed out "
                f"by 10% of its range{flat}")

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
            finals = [b[-1] for b in map(self.curve, runs) if b and b[-1] is not None]
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
        final = "final best"
        head = [f"{self.study}: {self.metric} ({self.direction}), {self.n_trials} trials per "
                f"run, {target}"]
        if self.multi:
            final = "final hypervolume"
            target = f"target hypervolume {self.target:.4g}" if math.isfinite(self.target) \
                else "no target: no run completed a feasible trial"
            counted = "feasible trials only" + (
                f" ({', '.join(self.constraints)})" if self.constraints else "")
            head = [f"{self.study}: hypervolume of {self.objectives()}, {self.n_trials} trials "
                    f"per run, {target}", "", f"{self.reference_words()}; {counted}"]
        lines = [
            *head,
            "",
            "| sampler | runs | reached target | median trials to target | expected trials to "
            f"target | vs random [90% interval] | {final}: median [q25, q75] | s/run |",
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
        if self.multi and self.constraints:
            infeasible = {s: [(sum(v is not None and not f for v, f in
                                   zip(r.values, r.feasible, strict=True)),
                               sum(v is not None for v in r.values))
                              for r in self.runs if r.sampler == s] for s in self.samplers}
            if any(n for per in infeasible.values() for n, _ in per):
                notes.append("infeasible trials (spent, not in the hypervolume): " + ", ".join(
                    f"{s} {sum(n for n, _ in per)} of {sum(m for _, m in per)} complete"
                    for s, per in infeasible.items()))
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
        multi_only = () if self.multi else (*_MULTI_FIELDS, "feasible")
        raw = {k: _finite_or_none(v) for k, v in asdict(self).items()
               if k not in ("runs", "files", *multi_only)}  # target: nan if no run completed
        rows = self.summary()  # once: its bootstrap intervals take a while over many seeds
        raw["summary"] = [{k: _finite_or_none(v) for k, v in row.items()}
                          for row in rows]  # JSON has no infinity
        raw["runs"] = [{k: v for k, v in asdict(r).items() if k not in multi_only}
                       for r in self.runs]
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


_MULTI_FIELDS = ("metrics", "directions", "constraints", "reference", "reference_points",
                 "reference_flat")  # in results.json only with several metrics


def score_by_hypervolume(c: Comparison) -> None:
    """Fill the runs' ``best`` with their hypervolume so far (a comparison of several metrics),
    against one reference point for all runs (``c.reference``: each metric's worst among the
    complete feasible trials of every run, out by 10% of its range). Without a feasible trial
    in any run, there is no reference point and every curve is ``None`` throughout."""
    maximize = [d == "maximize" for d in c.directions]
    points = [[losses(v, maximize) if v is not None and f and all(map(math.isfinite, v))
               else None for v, f in zip(r.values, r.feasible, strict=True)] for r in c.runs]
    every = [p for per in points for p in per if p is not None]
    if not every:
        c.reference, c.reference_points, c.reference_flat = None, 0, []
        for r in c.runs:
            r.best = [None] * len(r.values)
        return
    ref, flat = reference_losses(np.array(every, dtype=float))
    c.reference = list(from_losses(ref, maximize))
    c.reference_points = len(every)
    c.reference_flat = [m for m, f in zip(c.metrics, flat, strict=True) if f]
    for r, per in zip(c.runs, points, strict=True):
        r.best = hypervolume_so_far(per, ref)


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
        what = "hypervolume" if config.multi else "metric value"
        raise ConfigError(f"the target must be a finite {what}, got {target}")
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
    notes = random_start_notes(config, samplers, n_trials)
    if config.multi:  # by hypervolume: higher is better
        result = Comparison(
            config.name, "hypervolume", "maximize", n_trials, list(samplers), runs, math.nan,
            target_share, warnings=notes, metrics=list(config.metrics),
            directions=list(config.directions),
            constraints=[f"{m} {op} {b:g}" for m, op, b in config.constraints])
        score_by_hypervolume(result)
    else:
        result = Comparison(config.name, config.metric, config.direction, n_trials,
                            list(samplers), runs, math.nan, target_share, warnings=notes)
    result.target = target if target is not None else _default_target(result)
    for r in runs:
        r.to_target = trials_to_target(r.best, result.target, result.direction == "maximize")
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
    if config is not None and config.multi and needs_wfg(len(config.metrics)):
        raise ConfigError(  # pragma: no cover - Optuna 5.1 has it
            f"{config.source}: tuner compare measures {len(config.metrics)} metrics by "
            "hypervolume, and this Optuna has no optuna._hypervolume.compute_hypervolume")
    if config is not None:
        config.bind()
    for name in samplers if config is not None else ():
        where = f"{config.source} (compared with sampler {name})"
        config_from_dict(_run_config(config, name, config.seed, 1, f"{where}: [sampler]"), where)


# The option that sets a sampler's random start-up: NSGA-II draws its first generation
# (population_size, 50 by default) at random, the model-based samplers n_startup_trials.
STARTUP_OPTION = {"nsga2": "population_size"}


def random_start_notes(config: StudyConfig, samplers: list[str], n_trials: int) -> list[str]:
    """A line for the ``samplers`` whose random start-up (``n_startup_trials``, for nsga2 its
    first generation, ``population_size``: the study file's ``[sampler]`` value, else the
    Optuna class's default) is at least half of ``n_trials``: so many of their trials are
    random search's that the comparison can barely tell them apart (with TPE's default 10 and
    15 trials, only 5 can differ). One line for all those with the same start-up (tpe and gp:
    10 by default)."""
    by_startup: dict[tuple[int, str], list[str]] = {}
    for name in samplers:
        option = STARTUP_OPTION.get(name, "n_startup_trials")
        options = options_for(name, config.to_dict()["sampler"], config.space)
        default = inspect.signature(type(build_sampler(name, {}, 0, config.space))).parameters \
            .get(option)
        startup = options.get(option, default.default if default else None)
        if isinstance(startup, int) and startup >= 1 and 2 * startup >= n_trials:
            by_startup.setdefault((startup, option), []).append(name)
    notes = []
    for (startup, option), names in by_startup.items():
        its = "its" if len(names) == 1 else "their"
        first = f"{' and '.join(names)}: {its} first {startup} trials are random ({option})"
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
    states = [t.state.name for t in trials]
    elapsed = time.monotonic() - started
    if config.multi:  # the hypervolume needs every run's trials: score_by_hypervolume
        return Run(sampler, seed, values=[list(t.values) if t.state.name == "COMPLETE" else None
                                          for t in trials], states=states, elapsed_s=elapsed,
                   stopped=stopped, feasible=[bool(t.user_attrs.get(FEASIBLE, True))
                                              for t in trials])
    values = [t.value if t.state.name == "COMPLETE" else None for t in trials]
    return Run(sampler, seed, values=values, states=states, elapsed_s=elapsed,
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
