"""Stored studies as tuner reads them: find one by name, count its trials, its best trial and
metric. Nothing here runs a trial or binds an objective, so every view can use it.
"""

from __future__ import annotations

from collections import Counter

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import ConfigError, StudyNotFoundError
from tuner.core.keys import CONFIG_ATTR
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
