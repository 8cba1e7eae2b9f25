"""Stored studies as tuner reads them through Optuna: find one by name, its best trial, its
running trials, a :class:`~tuner.store.snapshot.StudySnapshot` of it. Nothing here runs a trial
or binds an objective, so every view can use it. The rules that need no Optuna (counting states,
the metric's name, what a running trial's heartbeat means) live in :mod:`tuner.store.snapshot`,
which reads a plain SQLite file without Optuna.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core.keys import CONFIG_ATTR, FAIL_REASON, RESERVED_PREFIX, WARM_START
from tuner.store.rdb import ResilientRDBStorage, uncached
from tuner.store.snapshot import (  # noqa: F401  (count_states, study_metric(s): re-exported)
    StudySnapshot,
    count_states,
    not_found,
    pareto_front,
    running_entries,
    study_metric,
    study_metrics,
)
from tuner.store.snapshot import check_single_objective as _check_objectives
from tuner.store.storage import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what a study's budget counts


def in_budget(trial: FrozenTrial) -> bool:
    """Whether ``trial`` counts in the study's budget: finished, and the study's own (a
    warm start's prior observations, user attribute ``warm_start``, do not)."""
    return trial.state in FINISHED and WARM_START not in trial.user_attrs


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial of the study's own (a warm start's prior observations are
    not), or ``None`` when none has completed."""
    if len(study.directions) > 1:  # several metrics: pareto_set, not one best
        return None
    own = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
           if t.value is not None and WARM_START not in t.user_attrs]
    if not own:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(own, key=lambda t: t.value)


def pareto_set(study: optuna.Study) -> list[FrozenTrial]:
    """The study's own complete trials that no other dominates (with ``[study] constraints``:
    among the feasible ones, when there are any), in number order."""
    return pareto_front(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                        [d.name for d in study.directions])


def fail_trials(storage: BaseStorage, trial_ids: list[int], reason: str) -> None:
    """Mark the trials ``trial_ids`` FAIL with ``reason``, those still RUNNING (another process
    may have ended one meanwhile: the read or the write says so, and it is left as it is)."""
    for trial_id in trial_ids:
        with contextlib.suppress(UpdateFinishedTrialError):
            if storage.get_trial(trial_id).state == TrialState.RUNNING:
                storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)
                storage.set_trial_state_values(trial_id, TrialState.FAIL)


def grow_budget(study: optuna.Study, n_trials: int) -> None:
    """Raise the stored budget (``[study] n_trials`` of the stored study file) and nothing
    else (a run's --pack/--device stay its own)."""
    raw = copy.deepcopy(study.user_attrs[CONFIG_ATTR])
    raw["study"]["n_trials"] = n_trials
    study.set_user_attr(CONFIG_ATTR, raw)


def n_finished(study: optuna.Study) -> int:
    """The study's finished trials that count in its budget (:func:`in_budget`)."""
    return sum(in_budget(t) for t in study.get_trials(deepcopy=False, states=FINISHED))


# --------------------------------------------------------------------------- finding studies
def study_names(storage: BaseStorage) -> list[str]:
    """The names of the studies in ``storage``, leaving out tuner's own (the pool's record)."""
    return sorted(s.study_name for s in storage.get_all_studies()
                  if not s.study_name.startswith(RESERVED_PREFIX))


def load_existing(name: str, storage: BaseStorage, *, any_objectives: bool = False) -> optuna.Study:
    """Load study ``name`` or raise :class:`StudyNotFoundError` listing the stored names.

    A multi-objective study (another Optuna user's, in a shared storage) is refused unless
    ``any_objectives`` (deleting it is fine; tuning, showing or exporting it is not).
    """
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise not_found(name, study_names(storage)) from None
    if not any_objectives:
        check_single_objective(study)
    return study


def check_single_objective(study: optuna.Study) -> None:
    _check_objectives(study.study_name, len(study.directions), study.user_attrs)


def open_study(name: str, storage_url: str | None = None) -> optuna.Study:
    """Load a stored study for reading (the storage must exist)."""
    return load_existing(name, open_storage(storage_url, must_exist=True))


def running_trials(storage: BaseStorage, study_id: int,
                   trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """:func:`~tuner.store.snapshot.running_entries` of the RUNNING ``trials`` of a study, by
    the heartbeats in ``storage`` (a storage without heartbeats: nothing is stale)."""
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if not running:
        return []
    backend = uncached(storage)
    if not (isinstance(backend, ResilientRDBStorage) and backend.heartbeat_interval):
        return running_entries(running, None, 0.0)
    return running_entries(running, backend.heartbeat_ages(study_id), backend.grace_s)


def snapshot_of(study: optuna.Study) -> StudySnapshot:
    """``study`` as :mod:`tuner.store.snapshot` gives it, read through Optuna (its trials are
    Optuna's FrozenTrials)."""
    trials = study.get_trials(deepcopy=False)
    return StudySnapshot(study.study_name, [d.name for d in study.directions],
                         study.user_attrs, trials,
                         running_trials(study._storage, study._study_id, trials))


def snapshots(storage: BaseStorage, name: str | None = None) -> list[StudySnapshot]:
    """Every study in ``storage`` (or only ``name``: see :func:`load_existing`), by name."""
    if name is not None:
        return [snapshot_of(load_existing(name, storage))]
    return [snapshot_of(optuna.load_study(study_name=n, storage=storage))
            for n in study_names(storage)]
