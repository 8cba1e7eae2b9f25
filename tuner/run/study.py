"""Run, resume and inspect studies: the library behind ``tuner run`` / ``resume``.

A study written by tuner is an ordinary Optuna study; tuner adds two study user attributes:
``tuner:config`` (the validated study file, so a resume needs only the name) and
``tuner:version``. Trial budgets count *finished* trials (complete or pruned), across every
process working on the study.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import ConfigError, ObjectiveError, StudyNotFoundError, TunerError
from tuner.core.failures import FAIL_REASON, fail_reason, log_failure
from tuner.core.version import __version__
from tuner.nn.device import config_on_device, with_device
from tuner.objectives.context import ObjectiveContext
from tuner.run.config import StudyConfig, config_from_dict, fingerprint_of
from tuner.search.pruners import build_pruner
from tuner.search.samplers import build_sampler
from tuner.store.rdb import reraise_lost
from tuner.store.storage import open_storage

CONFIG_ATTR = "tuner:config"
VERSION_ATTR = "tuner:version"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 3
log = logging.getLogger("tuner")


class DivergedError(TunerError):
    """Every trial of a run diverged: the learning-rate range is too high."""


class ObjectiveFailed(TunerError):
    """The objective failed in several trials in a row: a bug in it, not a hyperparameter
    (exit status 2, like any other input the study cannot use)."""


class ProgressHook(Protocol):
    """Receives progress from :func:`optimize` (the CLI draws a progress bar with it)."""

    def start(self, study: optuna.Study, total: int | None, timeout: float | None) -> None: ...
    def trial_finished(self, trial: FrozenTrial, best: float | None) -> None: ...
    def stop(self) -> None: ...


@dataclass
class RunResult:
    """What a run did: the study (reloaded from storage) and this run's own trial numbers."""

    study: optuna.Study
    trial_numbers: list[int] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def best_trial(self) -> FrozenTrial | None:
        return best_trial(self.study)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or ``None`` when no trial has completed."""
    try:
        return study.best_trial
    except ValueError:
        return None


def count_states(trials: list[FrozenTrial]) -> dict[str, int]:
    return dict(Counter(t.state.name for t in trials))


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


# --------------------------------------------------------------------------- finding studies
def study_names(storage: BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def load_existing(name: str, storage: BaseStorage, *, any_objectives: bool = False) -> optuna.Study:
    """Load study ``name`` or raise :class:`StudyNotFoundError` listing the stored names.

    A multi-objective study (another Optuna user's, in a shared storage) is refused unless
    ``any_objectives`` (deleting it is fine; tuning, showing or exporting it is not).
    """
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        hint = f"stored studies: {', '.join(names)}" if names else "the storage has no studies"
        raise StudyNotFoundError(f"no study named {name!r} in this storage; {hint}") from None
    if not any_objectives:
        _check_single_objective(study)
    return study


def _check_single_objective(study: optuna.Study) -> None:
    if len(study.directions) > 1:
        raise ConfigError(
            f"study {study.study_name!r} has {len(study.directions)} objectives; tuner works "
            "with single-objective studies"
        )


def stored_config(study: optuna.Study, device: str | None = None) -> StudyConfig | None:
    """The config a study was created with (``None`` for a study tuner did not create), to run
    on ``device`` when given (before validation: the stored device may not exist here)."""
    raw = study.user_attrs.get(CONFIG_ATTR)
    if raw is None:
        return None
    return config_from_dict(with_device(raw, device), f"<stored study {study.study_name!r}>")


def study_metric(study: optuna.Study) -> str:
    """The name of what the study optimises (``value`` for a study tuner did not create)."""
    return study.user_attrs.get(CONFIG_ATTR, {}).get("study", {}).get("metric", "value")


def _store_config(study: optuna.Study, config: StudyConfig) -> None:
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    study.set_user_attr(VERSION_ATTR, __version__)


def _grow_budget(study: optuna.Study, n_trials: int) -> None:
    """Raise the stored budget and nothing else (a run's --pack/--device stay its own)."""
    raw = copy.deepcopy(study.user_attrs[CONFIG_ATTR])
    raw["study"]["n_trials"] = n_trials
    study.set_user_attr(CONFIG_ATTR, raw)


def prepare_study(config: StudyConfig, storage: BaseStorage) -> optuna.Study:
    """Create the study, or join the stored one of that name if it is the same study.

    Refuses (ConfigError) a stored study whose direction, metric, objective or space differ.
    A study made by plain Optuna is adopted when its direction matches.
    """
    study = optuna.create_study(
        storage=storage, study_name=config.name, direction=config.direction, load_if_exists=True
    )
    _check_single_objective(study)
    stored_direction = study.direction.name.lower()
    if stored_direction != config.direction:
        raise ConfigError(
            f"study {config.name!r} already exists and is to {stored_direction}, but "
            f"{config.source} says {config.direction}; choose another --name"
        )
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        _check_adoptable(study, config)
    if stored is not None and fingerprint_of(stored) != config.fingerprint():
        differs = _differences(stored, config.to_dict())
        raise ConfigError(
            f"study {config.name!r} already exists with a different {', '.join(differs)}; "
            "refusing to mix the two: choose another --name or delete the stored study"
        )
    _store_config(study, config)  # the file's settings (budget, sampler …) are the latest word
    return study


def _check_adoptable(study: optuna.Study, config: StudyConfig) -> None:
    """Refuse to adopt a plain Optuna study whose trials searched parameters the study file
    does not: its trials and the new ones would be mixed in one study (and one "best")."""
    searched = {p.optuna_name for p in config.space.searched()}
    stored = {name for t in study.get_trials(deepcopy=False) for name in t.distributions}
    foreign = sorted(stored - searched)
    if foreign:
        raise ConfigError(
            f"study {config.name!r} was not created by tuner, and its trials search "
            f"{', '.join(foreign)}, which {config.source}'s [space] does not "
            f"({', '.join(sorted(searched))}): it does not describe this study; choose "
            "another --name"
        )


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = [f"[{s}]" for s in ("objective", "space") if a.get(s) != b.get(s)]
    out += [k for k in ("direction", "metric") if a["study"].get(k) != b["study"].get(k)]
    return out or ["configuration"]


# --------------------------------------------------------------------------- running
def run(
    config: StudyConfig,
    storage_url: str | None = None,
    *,
    progress: ProgressHook | None = None,
    device: str | None = None,
) -> RunResult:
    """Run ``config`` until its study has ``config.n_trials`` finished trials (or the timeout).

    Re-running a stored study continues it toward its budget. ``device`` is where this run
    trains; the study keeps the file's own device setting.
    """
    storage = open_storage(storage_url)
    study = prepare_study(config, storage)
    config = config_on_device(config, device)
    remaining = config.n_trials - n_finished(study)
    return optimize(study, config, n_trials=max(remaining, 0), budget=config.n_trials,
                    timeout=config.timeout, progress=progress)


def resume(
    name: str,
    storage_url: str | None = None,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    progress: ProgressHook | None = None,
    config: StudyConfig | None = None,
    pack: int | None = None,
    device: str | None = None,
) -> RunResult:
    """Continue a stored study with the sampler, pruner and objective stored with it.

    ``n_trials``: run exactly this many more trials (the stored budget grows to match);
    without it, run until the stored budget is reached. ``config`` adopts a study that plain
    Optuna created (it has no stored config). ``pack`` and ``device`` apply to this run only.
    """
    storage = open_storage(storage_url, must_exist=True)
    study = load_existing(name, storage)
    if config is not None:
        config = config.with_overrides(name=name)
        study = prepare_study(config, storage)
        config = config_on_device(config, device)
    else:
        config = stored_config(study, device)
        if config is None:
            raise ConfigError(
                f"study {name!r} was not created by tuner (it stores no study file); resume it "
                "with --config STUDY_FILE to say which objective and space to use"
            )
    if pack is not None:
        config = replace(config, pack=pack)
    done = n_finished(study)
    if n_trials is not None:
        if done + n_trials > config.n_trials:
            config = replace(config, n_trials=done + n_trials)
            _grow_budget(study, config.n_trials)
        return optimize(study, config, n_trials=n_trials, budget=None,
                        timeout=timeout or config.timeout, progress=progress)
    return optimize(study, config, n_trials=max(config.n_trials - done, 0),
                    budget=config.n_trials, timeout=timeout or config.timeout, progress=progress)


def sampler_seed(seed: int, n_existing: int, salt: int = 0) -> int:
    """The sampler seed of one run: the study seed for a fresh study's first process, else a
    value derived from it, so a resumed or parallel run does not replay the same samples."""
    if n_existing == 0 and salt == 0:
        return seed
    return (seed * 2_654_435_761 + n_existing * 40_503 + salt * 9_973 + 1) % (2**32 - 1)


def start_run(study: optuna.Study, config: StudyConfig, seed_salt: int = 0) -> ObjectiveContext:
    """Give ``study`` this process's sampler (seeded by :func:`sampler_seed`) and pruner, and
    return the objective's context: what every process running trials (``optimize``, a
    worker) does first."""
    n_existing = len(study.get_trials(deepcopy=False))
    study.sampler = build_sampler(config.sampler, config.sampler_options,
                                  sampler_seed(config.seed, n_existing, seed_salt), config.space)
    study.pruner = build_pruner(
        config.pruner, config.pruner_options, config.objective_settings.get("epochs", 1)
    )
    assert config.spec is not None
    if config.pack > 1 and config.spec.pack is None:
        log.warning("objective %r cannot be packed; its trials run one at a time",
                    config.objective)
    return ObjectiveContext(settings=config.objective_settings, space=config.space,
                            seed=config.seed, metric=config.metric, pruner=config.pruner)


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
    return _a_number(value, trial)


def failing_streak(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The study's latest trials (by number) that the objective failed in a row. Running and
    waiting trials are skipped, and so are trials failed by an interrupt or a dead worker
    (no ``fail_reason`` of the objective's): they say nothing about the objective."""
    streak: list[FrozenTrial] = []
    for t in sorted(trials, key=lambda t: t.number, reverse=True):
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        if t.state != TrialState.FAIL:
            break
        if t.user_attrs.get(FAIL_REASON, "interrupted") != "interrupted":
            streak.append(t)
    return streak[::-1]


def _a_number(value: Any, trial: optuna.Trial) -> float:
    """``value`` as a finite float, or the trial fails with the reason stored (Optuna would
    fail NaN and a string without one, and store ±inf as a complete value no plot can use)."""
    try:
        number = None if isinstance(value, str | bytes) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        what = "not a number" if number is None else "not a finite number"
        reason = f"the objective returned {shown}, {what}"
        trial.set_user_attr(FAIL_REASON, reason)
        raise ObjectiveError(reason)
    return number


def optimize(
    study: optuna.Study,
    config: StudyConfig,
    *,
    n_trials: int | None,
    budget: int | None,
    timeout: float | None = None,
    progress: ProgressHook | None = None,
    seed_salt: int = 0,
) -> RunResult:
    """Run ``n_trials`` trials in this process; stop early once the study as a whole has
    ``budget`` finished trials. With a ``budget``, a failed trial does not count: more trials
    run until the budget is reached (or the objective fails
    :data:`MAX_CONSECUTIVE_FAILURES` times in a row, or ``timeout`` seconds pass). Ctrl-C
    ends the run with ``interrupted=True`` and no trial of this process left RUNNING.
    """
    started = time.monotonic()
    result = RunResult(study)
    if n_trials == 0:
        return result
    ctx = start_run(study, config, seed_salt)
    running: dict[int, int] = {}  # trial number -> storage trial id, for this process

    def begin(trial: optuna.Trial) -> None:
        running[trial.number] = trial._trial_id
        result.trial_numbers.append(trial.number)

    def objective(trial: optuna.Trial) -> float:
        begin(trial)
        return call_objective(config, ctx, trial)

    failures: list[FrozenTrial] = []
    failed_in_round = [0]

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        running.pop(trial.number, None)
        failures[:] = [*failures, trial] if trial.state == TrialState.FAIL else []
        failed_in_round[0] += trial.state == TrialState.FAIL
        # One read of the (cached) trials serves both the progress line and the budget.
        trials = study.get_trials(deepcopy=False)
        if progress is not None:
            progress.trial_finished(trial, _best_value(study, trials))
        if len(failures) >= MAX_CONSECUTIVE_FAILURES:
            study.stop()
        if budget is not None and sum(t.state in FINISHED for t in trials) >= budget:
            study.stop()

    if progress is not None:
        progress.start(study, n_trials, timeout)
    def one_round(n: int | None, seconds: float | None) -> None:
        if config.pack > 1:  # several trials as one vectorised population: tuner.run.packed
            from tuner.run.packed import optimize_packed

            optimize_packed(study, config.spec.pack,
                            lambda trial, ctx: call_objective(config, ctx, trial), ctx,
                            config.pack, n_trials=n, timeout=seconds, begin=begin,
                            callbacks=[after_trial])
        else:
            study.optimize(objective, n_trials=n, timeout=seconds, callbacks=[after_trial],
                           catch=(Exception,), gc_after_trial=False)

    try:
        with reraise_lost(study._storage):  # not Optuna's clean-up error hiding it
            remaining = n_trials
            while True:
                seconds = None if timeout is None else timeout - (time.monotonic() - started)
                if seconds is not None and seconds <= 0:
                    break
                failed_in_round[0] = 0
                one_round(remaining, seconds)
                if budget is None or remaining is None or not failed_in_round[0] \
                        or len(failures) >= MAX_CONSECUTIVE_FAILURES:
                    break
                remaining = budget - n_finished(study)  # failed trials are run again
                if remaining <= 0:
                    break
    except KeyboardInterrupt:
        result.interrupted = True
        _fail_running(study, running, "interrupted")
    finally:
        if progress is not None:
            progress.stop()
    result.elapsed_s = time.monotonic() - started
    _raise_if_hopeless(study, result, failures)
    return result


def _best_value(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> float | None:
    """The best complete value, from ``trials`` when the caller has read them already."""
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not values:
        return None
    return max(values) if study.direction == optuna.study.StudyDirection.MAXIMIZE else min(values)


def _fail_running(study: optuna.Study, running: dict[int, int], reason: str) -> None:
    """Mark this process's still-RUNNING trials FAIL, so nothing stays RUNNING after Ctrl-C."""
    storage = study._storage
    for trial_id in running.values():
        if storage.get_trial(trial_id).state == TrialState.RUNNING:
            storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)


def _raise_if_hopeless(study: optuna.Study, result: RunResult, failures: list) -> None:
    if len(failures) >= MAX_CONSECUTIVE_FAILURES:
        reasons = [t.user_attrs.get(FAIL_REASON, "?") for t in failures]
        raise ObjectiveFailed(
            f"the objective failed in {len(failures)} trials in a row; last error: {reasons[-1]}"
        )
    numbers = set(result.trial_numbers)
    mine = [t for t in study.get_trials(deepcopy=False) if t.number in numbers]
    diverged = [t for t in mine if "diverged" in str(t.user_attrs.get("prune_reason", ""))]
    if mine and len(diverged) == len(mine) and not result.interrupted:
        raise DivergedError(
            f"all {len(mine)} trials of this run diverged (loss became NaN/inf); the learning "
            "rate is too high: lower the upper bound of [space] lr"
        )


def open_study(name: str, storage_url: str | None = None) -> optuna.Study:
    """Load a stored study for reading (the storage must exist)."""
    return load_existing(name, open_storage(storage_url, must_exist=True))


