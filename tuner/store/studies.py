"""Stored studies as tuner reads them: find one by name, count its trials, its best trial and
metric. Nothing here runs a trial or binds an objective, so every view can use it.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import ConfigError, StudyNotFoundError
from tuner.core.keys import CONFIG_ATTR
from tuner.store.rdb import ResilientRDBStorage, uncached
from tuner.store.storage import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what a study's budget counts


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
        check_single_objective(study)
    return study


def check_single_objective(study: optuna.Study) -> None:
    if len(study.directions) > 1:
        raise ConfigError(
            f"study {study.study_name!r} has {len(study.directions)} objectives; tuner works "
            "with single-objective studies"
        )


def study_metric(study: optuna.Study) -> str:
    """The name of what the study optimises (``value`` for a study tuner did not create)."""
    return study.user_attrs.get(CONFIG_ATTR, {}).get("study", {}).get("metric", "value")


def open_study(name: str, storage_url: str | None = None) -> optuna.Study:
    """Load a stored study for reading (the storage must exist)."""
    return load_existing(name, open_storage(storage_url, must_exist=True))


def running_trials(storage: BaseStorage, study_id: int,
                   trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """The RUNNING ``trials`` of a study: ``number``, ``heartbeat_age_s`` (seconds since the
    last heartbeat; ``None`` without heartbeats) and ``stale``. A stale trial's process is gone
    (killed, machine lost): its heartbeat is older than the grace period (the next run or
    worker fails it and queues a retry), or it never sent one and started longer ago than that
    (a process without heartbeats: nothing will ever retry it, ``retried`` is False)."""
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if not running:
        return []
    backend = uncached(storage)
    monitored = isinstance(backend, ResilientRDBStorage) and backend.heartbeat_interval
    ages = backend.heartbeat_ages(study_id) if monitored else {}
    now = datetime.now()  # FrozenTrial times are naive local times
    out = []
    for t in running:
        age = ages.get(t._trial_id)
        started = (now - t.datetime_start).total_seconds() if t.datetime_start else None
        if not monitored:
            stale = False
        elif age is not None:
            stale = age > backend.grace_s
        else:  # the rule nobody waits for in a claim (ResilientRDBStorage.unmonitored)
            stale = backend.started_before_grace(t)
        out.append({"number": t.number, "heartbeat_age_s": age, "started_s_ago": started,
                    "stale": bool(stale), "retried": bool(stale and age is not None)})
    return out

