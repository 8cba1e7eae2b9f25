"""A running trial's unwritten values (:class:`Pending`) and the transactions that write them,
for :class:`tuner.store.buffered.BufferedRDBStorage` (see that module)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
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
        updatable_trial(storage, session, trial_id)
        pending_without_commit(storage, session, trial_id, pending)


def finish_with_pending(storage: RDBStorage, trial_id: int, pending: Pending,
                        state: TrialState, values: Any) -> datetime | None:
    """One transaction: every unwritten value of one trial, its values, its final state and
    its end time, which it returns as stored (``None``: not done, as Optuna's ``False``). On
    SQLite and PostgreSQL that is six statements: the trial's row, one upsert per kind of
    value, and the trial's update (Optuna's own write of the state and values, after the
    buffered values, made ten: it reads the trial again, each value's row, and tuner the end
    time). Elsewhere Optuna's own writes, in the same transaction."""
    import sqlalchemy.exc
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    if _upsert_dialect(storage) is None:
        return _finish_as_optuna(storage, trial_id, pending, state, values)
    try:
        with _create_scoped_session(storage.scoped_session) as session:
            trial = updatable_trial(storage, session, trial_id)
            pending_without_commit(storage, session, trial_id, pending)
            if values is not None:
                kind = models.TrialValueModel
                rows = []
                for objective, value in enumerate(values):
                    stored, value_type = kind.value_to_stored_repr(float(value))
                    rows.append({"trial_id": trial_id, "objective": objective,
                                 "value": stored, "value_type": value_type})
                _upsert(storage, session, kind, rows, [kind.trial_id, kind.objective],
                        ["value", "value_type"])
            trial.state = state
            trial.datetime_complete = datetime.now()
            ended = trial.datetime_complete  # as read back: stored in UTC, naive local here
    except sqlalchemy.exc.IntegrityError:
        return None
    return ended


def _finish_as_optuna(storage: RDBStorage, trial_id: int, pending: Pending,
                      state: TrialState, values: Any) -> datetime | None:
    """:func:`finish_with_pending` on a database with no upsert tuner knows: the unwritten
    values, then Optuna's own ``set_trial_state_values`` (in the same thread's session, so one
    transaction), then the end time read back."""
    session = storage.scoped_session()
    try:
        updatable_trial(storage, session, trial_id)
        pending_without_commit(storage, session, trial_id, pending)
    except BaseException:
        session.rollback()
        session.close()
        raise
    if not RDBStorage.set_trial_state_values(storage, trial_id, state, values):
        return None
    return completed_at(storage, trial_id)


def updatable_trial(storage: RDBStorage, session: Any, trial_id: int) -> Any:
    """The trial's row, locked for this transaction where the database can, if the trial may
    still be written (Optuna's ``UpdateFinishedTrialError`` if not)."""
    from optuna.storages._rdb import models

    trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
    storage.check_trial_is_updatable(trial_id, trial.state)
    return trial


def pending_without_commit(storage: RDBStorage, session: Any, trial_id: int,
                            pending: Pending) -> None:
    """Every unwritten value of one trial, in ``session``'s transaction. On SQLite and
    PostgreSQL one multi-row upsert per table (the statements Optuna makes per value, made
    once); elsewhere Optuna's per-value writes."""
    from optuna.storages._rdb import models

    if _upsert_dialect(storage) is None:
        _write_one_by_one(storage, session, trial_id, pending)
        return
    for model, attrs in ((models.TrialUserAttributeModel, pending.user),
                         (models.TrialSystemAttributeModel, pending.system)):
        if attrs:
            _upsert(storage, session, model, [{"trial_id": trial_id, "key": k,
                                               "value_json": json.dumps(v)}
                                              for k, v in attrs.items()],
                    [model.trial_id, model.key], ["value_json"])
    if pending.intermediate:
        values = models.TrialIntermediateValueModel
        rows = []
        for step, value in sorted(pending.intermediate.items()):
            stored, kind = values.intermediate_value_to_stored_repr(value)
            rows.append({"trial_id": trial_id, "step": step, "intermediate_value": stored,
                         "intermediate_value_type": kind})
        _upsert(storage, session, values, rows, [values.trial_id, values.step],
                ["intermediate_value", "intermediate_value_type"])


def _upsert(storage: RDBStorage, session: Any, model: Any, rows: list[dict[str, Any]],
            keys: list[Any], columns: list[str]) -> None:
    """Insert ``rows``, or update ``columns`` of those whose ``keys`` exist: one statement per
    table and database, built once and run for all the rows (a statement with the rows in it
    would be compiled again for every new number of rows: ~1 ms each)."""
    statement = _UPSERTS.get((storage.engine.name, model))
    if statement is None:
        stmt = _upsert_dialect(storage)(model)
        statement = _UPSERTS[(storage.engine.name, model)] = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: getattr(stmt.excluded, c) for c in columns})
    # (SQLAlchemy groups the rows by which values are None, as an inf or nan value is stored:
    # such a row, which is rare, goes in a statement of its own)
    session.execute(statement, rows)


_UPSERTS: dict[tuple[str, Any], Any] = {}


def completed_at(storage: RDBStorage, trial_id: int) -> Any:
    """The stored end time of a finished trial."""
    from optuna.storages._rdb import models

    with storage.scoped_session() as session:
        return models.TrialModel.find_or_raise_by_id(trial_id, session).datetime_complete


def as_ended(trial: FrozenTrial, state: TrialState, values: Any, ended: datetime) -> None:
    """Make ``trial`` what Optuna reads back after its end: ``state``, ``values`` as stored,
    and ``ended``, its stored end time."""
    from optuna.storages._rdb import models

    kind = models.TrialValueModel
    trial.state = state
    trial.values = None if values is None else [
        kind.stored_repr_to_value(*kind.value_to_stored_repr(float(v))) for v in values]
    trial.datetime_complete = ended


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
