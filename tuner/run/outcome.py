"""One trial's path from the sampler to its stored outcome, the same for every loop.

``start_run`` gives a process its sampler and pruner and the objective's context;
``call_objective`` runs the objective on one trial and stores why it was pruned or failed;
the rest judges a run: a study failing in a row, every trial diverging, the best value so far.
The trial loop (``tuner.run.loop``) and the packed rounds (``tuner.run.packed``) go through
here.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import Diverged, ObjectiveError, TunerError
from tuner.core.failures import fail_reason, log_failure
from tuner.core.keys import CONSTRAINT_VALUES, FAIL_REASON, FEASIBLE, PRUNE_REASON, WARM_START
from tuner.objectives.context import ObjectiveContext
from tuner.run.config import StudyConfig
from tuner.search.constraints import Constraints
from tuner.search.pruners import build_pruner
from tuner.search.samplers import build_sampler
from tuner.store.studies import best_trial, fail_trials

log = logging.getLogger("tuner")
MAX_CONSECUTIVE_FAILURES = 3


class DivergedError(TunerError):
    """Every trial of a run diverged: the learning-rate range is too high."""


class ObjectiveFailed(TunerError):
    """The objective failed in several trials in a row: a bug in it, not a hyperparameter
    (exit status 2, like any other input the study cannot use)."""


class ProgressHook(Protocol):
    """Receives progress from the trial loop (:func:`tuner.run.loop.run_trials`); the CLI
    draws a progress bar with it."""

    def start(self, study: optuna.Study, total: int | None, timeout: float | None) -> None: ...
    def retotal(self, total: int | None) -> None: ...  # the study's budget grew meanwhile
    def trial_finished(self, trial: FrozenTrial, best: float | None) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class Deadline:
    """The study's stored ``[study] timeout``: ``seconds`` from its first trial's start
    (``since``; now, for a study with no trial yet). Optuna stores local naive times."""

    seconds: float
    since: datetime

    @classmethod
    def of(cls, study: optuna.Study, seconds: float | None) -> Deadline | None:
        if seconds is None:
            return None
        starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
        return cls(seconds, min(starts, default=datetime.now()))

    @property
    def at(self) -> datetime:
        return self.since + timedelta(seconds=self.seconds)

    def left_s(self) -> float:
        return max((self.at - datetime.now()).total_seconds(), 0.0)

    def passed(self) -> bool:
        return datetime.now() >= self.at


@dataclass
class RunResult:
    """What a run did: the study (reloaded from storage), this run's own trial numbers and
    why it stopped (``stopped_by``: see :mod:`tuner.run.loop`; ``created`` for a study
    created without running a trial)."""

    study: optuna.Study
    trial_numbers: list[int] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0
    stopped_by: str | None = None
    deadline: Deadline | None = None

    @property
    def best_trial(self) -> FrozenTrial | None:
        return best_trial(self.study)


def sampler_seed(seed: int, n_existing: int, salt: int = 0) -> int:
    """The sampler seed of one run: the study seed for a fresh study's first process, else a
    value derived from it, so a resumed or parallel run does not replay the same samples."""
    if n_existing == 0 and salt == 0:
        return seed
    return (seed * 2_654_435_761 + n_existing * 40_503 + salt * 9_973 + 1) % (2**32 - 1)


def start_run(study: optuna.Study, config: StudyConfig, seed_salt: int = 0) -> ObjectiveContext:
    """Give ``study`` this process's sampler (seeded by :func:`sampler_seed`) and pruner, and
    return the objective's context: what every process running trials (``run``, ``resume``, a
    worker) does first."""
    n_existing = len(study.get_trials(deepcopy=False))
    with warnings.catch_warnings():  # metric names are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        metrics = list(config.metrics or (config.metric,))
        if study.metric_names != metrics:  # the dashboard's axes, not "Objective 0"
            study.set_metric_names(metrics)
    study.sampler = build_sampler(config.sampler, config.sampler_options,
                                  sampler_seed(config.seed, n_existing, seed_salt), config.space,
                                  n_objectives=len(metrics),
                                  constraints_func=constraints_of(config))
    study.pruner = build_pruner(
        config.pruner, config.pruner_options, config.objective_settings.get("epochs", 1)
    )
    assert config.spec is not None
    if config.pack > 1 and config.spec.pack is None:
        log.warning("objective %r cannot be packed; its trials run one at a time",
                    config.objective)
    return ObjectiveContext(settings=config.objective_settings, space=config.space,
                            seed=config.seed, metric=config.metric, pruner=config.pruner,
                            metrics=tuple(metrics))


def constraints_of(config: StudyConfig) -> Constraints | None:
    """The study's ``[study] constraints`` as Optuna's ``constraints_func`` (``None``: none)."""
    if not config.constraints:
        return None
    return Constraints(list(config.metrics or (config.metric,)), config.constraints)


def call_objective(config: StudyConfig, ctx: ObjectiveContext, trial: optuna.Trial) -> float:
    """The study's objective on ``trial``, and the trial's last writes (``ctx.finish_trial``:
    learning curve, pictures, ``prune_reason``). A :class:`optuna.TrialPruned` keeps its
    message as the ``prune_reason``; a failure stores ``fail_reason`` first
    (:func:`tuner.core.failures.fail_reason`: the report, ``tuner show`` and the hopeless-run check
    read it)."""
    prune_reason = None
    try:
        value = config.spec.fn(trial, ctx)
    except optuna.TrialPruned as e:
        prune_reason = str(e) or "pruned by the objective (it gave no reason)"
        raise
    except Diverged as e:  # train() of an objective that does not catch it: pruned, not failed
        prune_reason = str(e)
        raise optuna.TrialPruned(prune_reason) from None
    except KeyboardInterrupt:
        trial.set_user_attr(FAIL_REASON, "interrupted")
        raise
    except SystemExit as e:  # not the end of the study: one failed trial
        reason = f"the objective called sys.exit({e.code!r})"
        trial.set_user_attr(FAIL_REASON, reason)
        raise ObjectiveError(reason) from None
    except Exception as e:
        trial.set_user_attr(FAIL_REASON, fail_reason(e))
        log_failure(trial.number, e)
        raise
    finally:
        ctx.finish_trial(trial, prune_reason)
    if not config.multi:
        return _a_number(value if not _one_named(value, config) else value[config.metric], trial)
    values = _values(value, config, trial)
    if config.constraints:  # Optuna's constraints_func reads the first (Constraints.__call__)
        constraints = constraints_of(config)
        trial.set_user_attr(CONSTRAINT_VALUES, constraints.of(values))
        trial.set_user_attr(FEASIBLE, constraints.feasible(values))
    return values


def _one_named(value: Any, config: StudyConfig) -> bool:
    """A dict with the study's one metric (``{"val_mse": 12.3}``): its value is the trial's."""
    return isinstance(value, dict) and set(value) == {config.metric}


def _values(value: Any, config: StudyConfig, trial: optuna.Trial) -> list[float]:
    """A several-objective trial's values in the order of ``[study] metrics``: from a dict by
    name or a tuple/list in that order; anything else fails the trial with the reason."""
    metrics = config.metrics

    def fail(reason: str) -> ObjectiveError:
        trial.set_user_attr(FAIL_REASON, reason)
        return ObjectiveError(reason)

    if isinstance(value, dict):
        unknown = sorted(set(value) - set(metrics), key=str)
        missing = [m for m in metrics if m not in value]
        if unknown or missing:
            raise fail(f"the objective returned {sorted(value, key=str)}; the study's metrics "
                       f"are {list(metrics)}"
                       f"{f' (not one of them: {unknown})' if unknown else ''}"
                       f"{f' (missing: {missing})' if missing else ''}")
        raw = [value[m] for m in metrics]
    elif isinstance(value, tuple | list):
        if len(value) != len(metrics):
            raise fail(f"the objective returned {len(value)} values; the study has "
                       f"{len(metrics)} metrics {list(metrics)}")
        raw = list(value)
    else:
        raise fail(f"the objective returned {_shown(value)}; with metrics {list(metrics)} it "
                   "returns a dict by name or a tuple in that order")
    out = []
    for name, v in zip(metrics, raw, strict=True):
        number = None if isinstance(v, bool) else _as_float(v)
        if number is None or not math.isfinite(number):
            raise fail(f"the objective returned {name} = {_shown(v)}, not a finite number")
        out.append(number)
    return out


def _as_float(value: Any) -> float | None:
    """``value`` as a float (NaN and ±inf too), or ``None`` for text or what is no number."""
    try:
        return None if isinstance(value, str | bytes) else float(value)
    except (TypeError, ValueError):
        return None


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def failing_streak(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The study's latest trials (by number) that the objective failed in a row. Running and
    waiting trials are skipped, and so are trials failed by an interrupt or a dead worker
    (no ``fail_reason`` of the objective's) or that never started (a retry not needed): they
    say nothing about the objective."""
    streak: list[FrozenTrial] = []
    for t in sorted(trials, key=lambda t: t.number, reverse=True):
        if t.state in (TrialState.RUNNING, TrialState.WAITING) or t.datetime_start is None:
            continue
        if t.state != TrialState.FAIL:
            break
        if t.user_attrs.get(FAIL_REASON, "interrupted") != "interrupted":
            streak.append(t)
    return streak[::-1]


def _a_number(value: Any, trial: optuna.Trial) -> float:
    """``value`` as a finite float, or the trial fails with the reason stored (Optuna would
    fail NaN and a string without one, and store ±inf as a complete value no plot can use)."""
    number = _as_float(value)
    if number is None or not math.isfinite(number):
        what = "not a number" if number is None else "not a finite number"
        reason = f"the objective returned {_shown(value)}, {what}"
        trial.set_user_attr(FAIL_REASON, reason)
        raise ObjectiveError(reason)
    return number


def best_value(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> float | None:
    """The best complete value, from ``trials`` when the caller has read them already."""
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    if len(study.directions) > 1:  # several metrics: a Pareto set, no one best value
        return None
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None
              and WARM_START not in t.user_attrs]  # a warm start's observations are not ours
    if not values:
        return None
    return max(values) if study.direction == optuna.study.StudyDirection.MAXIMIZE else min(values)


def finished_by(trials: list[FrozenTrial], trial: FrozenTrial) -> list[FrozenTrial]:
    """Those of ``trials`` that had finished when ``trial`` did, ``trial`` included: what its
    progress line may count as the best so far (:func:`best_value`). One read of the study can
    hold trials that finished after it: another worker's, a pack-mate's."""
    end = trial.datetime_complete
    if end is None:
        return trials
    return [t for t in trials if t.number == trial.number
            or (t.datetime_complete is not None and t.datetime_complete <= end)]


def fail_running(study: optuna.Study, running: dict[int, int], reason: str) -> None:
    """Mark this process's still-RUNNING trials FAIL, so nothing stays RUNNING after Ctrl-C."""
    fail_trials(study._storage, list(running.values()), reason)


def raise_if_hopeless(study: optuna.Study, result: RunResult, failures: list) -> None:
    if len(failures) >= MAX_CONSECUTIVE_FAILURES:
        reasons = [t.user_attrs.get(FAIL_REASON, "?") for t in failures]
        raise ObjectiveFailed(
            f"the objective failed in {len(failures)} trials in a row; last error: {reasons[-1]}"
        )
    numbers = set(result.trial_numbers)
    mine = [t for t in study.get_trials(deepcopy=False) if t.number in numbers]
    diverged = [t for t in mine if "diverged" in str(t.user_attrs.get(PRUNE_REASON, ""))]
    if mine and len(diverged) == len(mine) and not result.interrupted:
        raise DivergedError(
            f"all {len(mine)} trials of this run diverged (loss became NaN/inf); the learning "
            "rate is too high: lower the upper bound of [space] lr"
        )
