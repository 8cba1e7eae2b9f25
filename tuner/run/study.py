"""Create, adopt, run and resume studies: the library behind ``tuner run`` / ``resume``.

A study written by tuner is an ordinary Optuna study; tuner adds two study user attributes:
``tuner:config`` (the validated study file, so a resume needs only the name) and
``tuner:version``. Trial budgets count *finished* trials (complete or pruned), across every
process working on the study.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import ConfigError
from tuner.core.keys import CONFIG_ATTR, VERSION_ATTR
from tuner.core.version import __version__
from tuner.run.config import (
    StudyConfig,
    config_from_dict,
    config_on_device,
    fingerprint_of,
    with_device,
)
from tuner.run.outcome import (
    MAX_CONSECUTIVE_FAILURES,
    ProgressHook,
    RunResult,
    best_value,
    call_objective,
    fail_running,
    raise_if_hopeless,
    start_run,
)
from tuner.run.packed import optimize_packed
from tuner.store.rdb import reraise_lost
from tuner.store.storage import open_storage
from tuner.store.studies import (
    FINISHED,
    check_single_objective,
    load_existing,
    n_finished,
)

log = logging.getLogger("tuner")

def stored_config(study: optuna.Study, device: str | None = None) -> StudyConfig | None:
    """The config a study was created with (``None`` for a study tuner did not create), to run
    on ``device`` when given (before validation: the stored device may not exist here)."""
    raw = study.user_attrs.get(CONFIG_ATTR)
    if raw is None:
        return None
    return config_from_dict(with_device(raw, device), f"<stored study {study.study_name!r}>")


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
    check_single_objective(study)
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
            progress.trial_finished(trial, best_value(study, trials))
        if len(failures) >= MAX_CONSECUTIVE_FAILURES:
            study.stop()
        if budget is not None and sum(t.state in FINISHED for t in trials) >= budget:
            study.stop()

    if progress is not None:
        progress.start(study, n_trials, timeout)
    def one_round(n: int | None, seconds: float | None) -> None:
        if config.pack > 1:  # several trials as one vectorised population: tuner.run.packed
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
        fail_running(study, running, "interrupted")
    finally:
        if progress is not None:
            progress.stop()
    result.elapsed_s = time.monotonic() - started
    raise_if_hopeless(study, result, failures)
    return result


