"""Stored studies read from a plain SQLite file with the standard library's ``sqlite3``, without
Optuna or SQLAlchemy (see :mod:`tuner.store.snapshot`)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from tuner.core.keys import RESERVED_PREFIX, WARM_START
from tuner.store.settings import heartbeat_settings
from tuner.store.snapshot import (
    Distribution,
    State,
    StudySnapshot,
    TrialSnapshot,
    check_single_objective,
    head_revision,
    not_found,
    running_entries,
)
from tuner.store.urls import SQLITE_TIMEOUT_S, plain_sqlite_path

# The schema revision this reader was written for (Optuna's alembic revision since Optuna 3.2).
READ_REVISION = "v3.2.0.a"
T = TypeVar("T")


class _Unreadable(Exception):
    """Something :func:`read_sqlite` does not know how Optuna would read."""


# Optuna's tables at READ_REVISION: a file with any other set is left to Optuna
KNOWN_TABLES = frozenset({
    "studies", "version_info", "study_directions", "study_user_attributes",
    "study_system_attributes", "trials", "trial_user_attributes", "trial_system_attributes",
    "trial_params", "trial_values", "trial_intermediate_values", "trial_heartbeats",
    "alembic_version"})
# what may go wrong in reading a file this module is not sure of: Optuna's reader then answers
_UNSURE = (sqlite3.Error, _Unreadable, ValueError, KeyError, IndexError, TypeError)


def _connect(url: str, *, write: bool = False) -> sqlite3.Connection | None:
    """A connection to the plain ``sqlite:///FILE`` at ``url`` (read-only unless ``write``)
    when this module can stand in for Optuna there, else ``None``."""
    path = plain_sqlite_path(url)
    if path is None or not path.is_file() or head_revision() != READ_REVISION:
        return None
    mode = "rw" if write else "ro"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True,
                               timeout=SQLITE_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error:
        return None
    return conn


def _check_schema(conn: sqlite3.Connection) -> None:
    """Raise :class:`_Unreadable` unless the open transaction sees Optuna's tables at
    :data:`READ_REVISION`."""
    (revision,), = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if revision != READ_REVISION or tables != KNOWN_TABLES:
        raise _Unreadable(revision)


def stand_in(url: str, work: Callable[[sqlite3.Connection], T], *,
             write: bool = False) -> T | None:
    """``work(conn)`` in one transaction on the file at ``url`` (read-only unless ``write``:
    then it takes the write lock first and commits), where this module can stand in for Optuna;
    ``None`` where it cannot, or where ``work`` met something it is not sure of (:data:`_UNSURE`):
    nothing is written then, and Optuna gives today's answer, or its error. Any other error
    (a missing study …) rolls back and is raised."""
    conn = _connect(url, write=write)
    if conn is None:
        return None
    try:
        # one consistent view of the file, as a writer goes on; a writer locks first, so
        # that nobody adds a trial meanwhile
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        _check_schema(conn)
        result = work(conn)
        if write:
            conn.execute("COMMIT")
        return result
    except BaseException as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(e, _UNSURE):
            return None
        raise
    finally:
        conn.close()


def read_sqlite(url: str, name: str | None = None, *,
                details: bool = True) -> list[StudySnapshot] | None:
    """The studies stored at ``url`` (only study ``name`` when given: a missing one raises
    :class:`StudyNotFoundError`, a multi-objective one ``ConfigError``), read without Optuna;
    ``None`` when this reader cannot stand in for Optuna's (see the module's text).

    ``details=False`` leaves out what ``list`` does not show: trials then carry their number,
    state, values and times, not their params, user attributes or last step."""
    return stand_in(url, lambda conn: _read(conn, name, details))


def _read(conn: sqlite3.Connection, name: str | None,
          details: bool) -> list[StudySnapshot]:
    studies = conn.execute("SELECT study_id, study_name FROM studies ORDER BY study_name")
    ids = {study_name: study_id for study_id, study_name in studies.fetchall()
           if not study_name.startswith(RESERVED_PREFIX)}  # tuner's own (the pool's record)
    if name is not None:
        if name not in ids:
            raise not_found(name, list(ids))
        ids = {name: ids[name]}
    grace = heartbeat_settings()[1]
    now = _time(conn.execute("SELECT CURRENT_TIMESTAMP").fetchone()[0])
    out = []
    for study_name, study_id in ids.items():
        directions = [d for (d,) in conn.execute(
            "SELECT direction FROM study_directions WHERE study_id = ? ORDER BY objective",
            (study_id,))]
        attrs = _attrs(conn, "study_user_attributes", "study_id", study_id)
        if name is not None:
            check_single_objective(study_name, len(directions), attrs)
        trials = _trials(conn, study_id, details)
        running = [t for t in trials if t.state is State.RUNNING]
        ages = _heartbeat_ages(conn, study_id, now) if running else {}
        out.append(StudySnapshot(study_name, directions, attrs, trials,
                                 running_entries(running, ages, grace)))
    return out


def _attrs(conn: sqlite3.Connection, table: str, column: str, key: int) -> dict[str, Any]:
    rows = conn.execute(f'SELECT "key", value_json FROM {table} WHERE {column} = ?', (key,))
    return {k: json.loads(v) for k, v in rows}


_INF = {"FINITE": None, "INF_POS": math.inf, "INF_NEG": -math.inf}


def _trials(conn: sqlite3.Connection, study_id: int, details: bool) -> list[TrialSnapshot]:
    trials: dict[int, TrialSnapshot] = {}
    for trial_id, number, state, start, complete in conn.execute(
            "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
            "WHERE study_id = ? ORDER BY number", (study_id,)):
        trials[trial_id] = TrialSnapshot(trial_id, number, State[state], None, _time(start),
                                         _time(complete))
    where = "trial_id IN (SELECT trial_id FROM trials WHERE study_id = ?)"
    for trial_id, value, kind in conn.execute(
            f"SELECT trial_id, value, value_type FROM trial_values WHERE {where} "
            "ORDER BY trial_id, objective", (study_id,)):
        special = _INF[kind]
        trial = trials[trial_id]
        trial.values = [*(trial.values or []), float(value) if special is None else special]
    if not details:  # but which trials are a warm start's: they are never the study's best
        for (trial_id,) in conn.execute(
                f'SELECT trial_id FROM trial_user_attributes WHERE {where} AND "key" = ?',
                (study_id, WARM_START)):
            trials[trial_id].user_attrs[WARM_START] = True
        return list(trials.values())
    for trial_id, pname, internal, dist_json in conn.execute(
            f"SELECT trial_id, param_name, param_value, distribution_json FROM trial_params "
            f"WHERE {where} ORDER BY param_id", (study_id,)):
        dist = _distribution(dist_json)
        trials[trial_id].params[pname] = dist.external(internal)
        trials[trial_id].distributions[pname] = dist
    for trial_id, key, value in conn.execute(
            f'SELECT trial_id, "key", value_json FROM trial_user_attributes WHERE {where} '
            "ORDER BY trial_user_attribute_id", (study_id,)):
        trials[trial_id].user_attrs[key] = json.loads(value)
    for trial_id, step in conn.execute(
            f"SELECT trial_id, MAX(step) FROM trial_intermediate_values WHERE {where} "
            "GROUP BY trial_id", (study_id,)):
        trials[trial_id].last_step = step
    return list(trials.values())


# Optuna's distribution names (its json_to_distribution), the legacy ones included
_KINDS = {"IntDistribution": "int", "IntUniformDistribution": "int",
          "IntLogUniformDistribution": "int", "FloatDistribution": "float",
          "UniformDistribution": "float", "LogUniformDistribution": "float",
          "DiscreteUniformDistribution": "float", "CategoricalDistribution": "categorical"}


def _distribution(text: str) -> Distribution:
    stored = json.loads(text)
    kind = _KINDS.get(stored["name"])
    if kind is None:
        raise _Unreadable(stored["name"])
    a = stored["attributes"]
    if kind == "categorical":
        return Distribution(kind, choices=tuple(a["choices"]))
    log = a.get("log", stored["name"].endswith("LogUniformDistribution"))
    step = a.get("step", a.get("q", 1 if kind == "int" else None))
    return Distribution(kind, a["low"], a["high"], bool(log), step)


def _time(text: str | None) -> datetime | None:
    """A DATETIME as SQLAlchemy stores it in SQLite, naive: a trial's local start or end time,
    or a heartbeat's UTC time (``CURRENT_TIMESTAMP``)."""
    return datetime.fromisoformat(text) if text else None


def _heartbeat_ages(conn: sqlite3.Connection, study_id: int,
                    now: datetime | None) -> dict[int, float | None]:
    """Seconds since each RUNNING trial's last heartbeat, by the database's clock (as
    ``HeartbeatChecks.heartbeat_ages``); ``None``: never sent one."""
    rows = conn.execute(
        "SELECT t.trial_id, h.heartbeat FROM trials t LEFT JOIN trial_heartbeats h "
        "ON h.trial_id = t.trial_id WHERE t.study_id = ? AND t.state = 'RUNNING'", (study_id,))
    return {trial_id: None if beat is None else max(0.0, (now - _time(beat)).total_seconds())
            for trial_id, beat in rows}
