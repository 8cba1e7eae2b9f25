"""Create, adopt, run and resume studies: the library behind ``tuner run`` / ``resume``.

A study written by tuner is an ordinary Optuna study; tuner adds two study user attributes:
``tuner:config`` (the validated study file, so a resume needs only the name) and
``tuner:version``. Trial budgets count *finished* trials (complete or pruned), across every
process working on the study.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import optuna
from optuna.storages import BaseStorage

from tuner.core.errors import ConfigError
from tuner.core.keys import CONFIG_ATTR, TASK_ATTR, VERSION_ATTR
from tuner.core.version import __version__
from tuner.run.claim import claim_lock
from tuner.run.config import (
    StudyConfig,
    config_from_dict,
    config_on_device,
    fingerprint_of,
    with_device,
)
from tuner.run.loop import run_trials
from tuner.run.outcome import Deadline, ProgressHook, RunResult
from tuner.run.warm_start import add_warm_start, read_warm_start, warm_start_line
from tuner.store.storage import open_storage, resolve_url
from tuner.store.studies import grow_budget, load_existing, n_finished

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
    task = config.task()
    if task is not None and study.user_attrs.get(TASK_ATTR) != task:
        study.set_user_attr(TASK_ATTR, task)


def prepare_study(config: StudyConfig, storage: BaseStorage) -> optuna.Study:
    """Create the study, or join the stored one of that name if it is the same study.

    Refuses (ConfigError) a stored study whose direction, metric, objective or space differ.
    A study made by plain Optuna is adopted when its direction matches.
    """
    directions = list(config.directions or (config.direction,))
    study = optuna.create_study(
        storage=storage, study_name=config.name, directions=directions, load_if_exists=True
    )
    stored_directions = [d.name.lower() for d in study.directions]
    if stored_directions != directions:
        said = " and ".join(stored_directions)
        raise ConfigError(
            f"study {config.name!r} already exists and is to {said}, but "
            f"{config.source} says {' and '.join(directions)}; choose another --name"
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


def prepare_and_warm_start(config: StudyConfig, url: str,
                           warm_start_storage: str | None = None) -> optuna.Study:
    """:func:`prepare_study`, and its warm start (:mod:`tuner.run.warm_start`: read and
    checked before anything is written, copied under the study's claim lock)."""
    warm = read_warm_start(config, url, warm_start_storage, config.warm_start_top)
    storage = open_storage(url)
    study = prepare_study(config, storage)  # the study keeps the file's own device setting
    if warm is not None:
        lock = claim_lock(url, storage, config.name)
        lock.acquire()
        try:
            added = add_warm_start(study, warm)
        finally:
            lock.release()
        log.info("%s", warm_start_line(warm, added))
    return study


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
    timeout: float | None = None,
    create_only: bool = False,
    warm_start_storage: str | None = None,
) -> RunResult:
    """Run ``config`` until its study has ``config.n_trials`` finished trials.

    Re-running a stored study continues it toward its budget. ``device`` is where this run
    trains (the study keeps the file's own device setting); ``timeout`` is this run's own
    limit in seconds, never stored: it replaces the study's ``[study] timeout`` for this run.
    ``create_only``: create (or update) the stored study and run no trial.
    ``warm_start_storage``: where ``[study] warm_start`` is read (default: this storage).
    """
    url = resolve_url(storage_url)
    bound = config_on_device(config, device).bind()  # bad data, device …: nothing is written
    study = prepare_and_warm_start(config, url, warm_start_storage)
    if create_only:
        return RunResult(study, stopped_by="created")
    config = bound
    return run_trials(study, config, budget=config.n_trials, follow_stored_budget=True,
                      lock=claim_lock(url, study._storage, config.name), timeout=timeout,
                      deadline=None if timeout else Deadline.of(study, config.timeout),
                      progress=progress)


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

    ``n_trials``: run until the study has this many more finished trials than now (the stored
    budget grows to match); without it, until the stored budget is reached. Either that or
    ``timeout`` (this run's own seconds) lifts the study's stored ``[study] timeout`` for this
    run. ``config`` adopts a study that plain Optuna created (it has no stored config).
    ``pack`` and ``device`` apply to this run only.
    """
    url = resolve_url(storage_url)
    storage = open_storage(url, must_exist=True)
    study = load_existing(name, storage)
    if config is not None:
        config = config.with_overrides(name=name)
        bound = config_on_device(config, device).bind()  # before the study is written
        study = prepare_study(config, storage)
        config = bound
    else:
        config = stored_config(study, device)
        if config is None:
            raise ConfigError(
                f"study {name!r} was not created by tuner (it stores no study file); resume it "
                "with --config STUDY_FILE to say which objective and space to use"
            )
        config = config.bind()
    if pack is not None:
        config = replace(config, pack=pack)
    budget = config.n_trials
    if n_trials is not None:
        budget = n_finished(study) + n_trials
        if budget > config.n_trials:
            config = replace(config, n_trials=budget)
            grow_budget(study, budget)
    own_limit = n_trials is not None or timeout is not None
    return run_trials(study, config, budget=budget, follow_stored_budget=n_trials is None,
                      lock=claim_lock(url, storage, name), timeout=timeout,
                      deadline=None if own_limit else Deadline.of(study, config.timeout),
                      progress=progress)
