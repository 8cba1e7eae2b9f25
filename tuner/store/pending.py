"""A running trial's unwritten values (:class:`Pending`) and the transactions that write them,
for :class:`tuner.store.buffered.BufferedRDBStorage` (see that module)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState


@dataclass
class Pending:
    since: float = field(default_factory=time.monotonic)
    user: dict[str, Any] = field(default_factory=dict)
    system: dict[str, Any] = field(default_factory=dict)
    intermediate: dict[int, float] = field(default_factory=dict)

    def overlay(self, trial: FrozenTrial) -> None:
        trial._user_attrs.update(self.user)
        trial._system_attrs.update(self.system)
        trial.intermediate_values.update(self.intermediate)


def write_pending(storage: RDBStorage, trial_id: int, pending: Pending) -> None:
    """One transaction: every unwritten value of one trial."""
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session, True) as session:
        _pending_without_commit(storage, session, trial_id, pending)


def finish_with_pending(storage: RDBStorage, trial_id: int, pending: Pending,
                         state: TrialState, values: Any) -> bool:
    """One transaction: every unwritten value of one trial, then its final state and values
    (Optuna's own ``set_trial_state_values``, which runs in the same thread's session and so
    commits, or rolls back, both). One commit less per trial than a flush and then the state."""
    session = storage.scoped_session()
    try:
        _pending_without_commit(storage, session, trial_id, pending)
    except BaseException:
        session.rollback()
        session.close()
        raise
    return RDBStorage.set_trial_state_values(storage, trial_id, state, values)


def _pending_without_commit(storage: RDBStorage, session: Any, trial_id: int,
                            pending: Pending) -> None:
    """Every unwritten value of one trial, in ``session``'s transaction. On SQLite and
    PostgreSQL one multi-row upsert per table (the statements Optuna makes per value, made
    once); elsewhere Optuna's per-value writes."""
    from optuna.storages._rdb import models

    values = models.TrialIntermediateValueModel
    trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
    storage.check_trial_is_updatable(trial_id, trial.state)
    insert = _upsert_dialect(storage)
    if insert is None:
        _write_one_by_one(storage, session, trial_id, pending)
        return
    for model, attrs in ((models.TrialUserAttributeModel, pending.user),
                         (models.TrialSystemAttributeModel, pending.system)):
        if attrs:
            stmt = insert(model).values([{"trial_id": trial_id, "key": k,
                                          "value_json": json.dumps(v)}
                                         for k, v in attrs.items()])
            session.execute(stmt.on_conflict_do_update(
                index_elements=[model.trial_id, model.key],
                set_={"value_json": stmt.excluded.value_json}))
    if pending.intermediate:
        rows = []
        for step, value in sorted(pending.intermediate.items()):
            stored, kind = values.intermediate_value_to_stored_repr(value)
            rows.append({"trial_id": trial_id, "step": step, "intermediate_value": stored,
                         "intermediate_value_type": kind})
        stmt = insert(values).values(rows)
        session.execute(stmt.on_conflict_do_update(
            index_elements=[values.trial_id, values.step],
            set_={"intermediate_value": stmt.excluded.intermediate_value,
                  "intermediate_value_type": stmt.excluded.intermediate_value_type}))


def completed_at(storage: RDBStorage, trial_id: int) -> Any:
    """The stored end time of a finished trial."""
    from optuna.storages._rdb import models

    with storage.scoped_session() as session:
        return models.TrialModel.find_or_raise_by_id(trial_id, session).datetime_complete


def as_ended(storage: Any, trial: FrozenTrial, state: TrialState, values: Any) -> None:
    """Make ``trial`` what Optuna reads back after its end: ``state``, ``values`` as stored,
    and the stored end time, read back from ``storage`` (a ``ResilientRDBStorage``)."""
    from optuna.storages._rdb import models

    kind = models.TrialValueModel
    trial.state = state
    trial.values = None if values is None else [
        kind.stored_repr_to_value(*kind.value_to_stored_repr(float(v))) for v in values]
    trial.datetime_complete = storage._call_with_retry(completed_at, trial._trial_id)


def _upsert_dialect(storage: RDBStorage) -> Any:
    """The ``insert`` that has ``on_conflict_do_update`` for this database, or ``None``."""
    import sqlite3

    if storage.engine.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
        return insert
    if storage.engine.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects.sqlite import insert
        return insert
    return None


def _write_one_by_one(storage: RDBStorage, session: Any, trial_id: int,
                      pending: Pending) -> None:
    from optuna.storages._rdb import models

    for key, value in pending.user.items():
        RDBStorage._set_trial_attr_without_commit(
            storage, session, models.TrialUserAttributeModel, trial_id, key, value)
    for key, value in pending.system.items():
        RDBStorage._set_trial_attr_without_commit(
            storage, session, models.TrialSystemAttributeModel, trial_id, key, value)
    for step, value in sorted(pending.intermediate.items()):
        RDBStorage._set_trial_intermediate_value_without_commit(
            storage, session, trial_id, step, value)
