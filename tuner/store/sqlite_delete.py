"""``tuner delete`` of a study in a plain SQLite file, with the standard library's ``sqlite3``:
no Optuna or SQLAlchemy import (0.25 s of the command's 0.5 s).

It stands in for ``optuna.delete_study`` only where :mod:`tuner.store.sqlite_reader` stands in
for Optuna's reader: a plain ``sqlite:///FILE`` holding exactly Optuna's tables at the schema
revision the reader knows, the installed Optuna's too. There it removes, in one transaction, the
rows Optuna's cascade removes (the study, its directions and attributes, its trials and every
row of theirs); ``tests/unit/store/test_sqlite_delete.py`` compares the file left behind with
Optuna's. Anywhere else (``None``) the command goes through Optuna as before.
"""

from __future__ import annotations

import json
import sqlite3

from tuner.store.snapshot import not_found
from tuner.store.sqlite_reader import stand_in

_TRIAL_TABLES = ("trial_params", "trial_values", "trial_intermediate_values",
                 "trial_user_attributes", "trial_system_attributes", "trial_heartbeats")
_STUDY_TABLES = ("study_directions", "study_user_attributes", "study_system_attributes")
_ARTIFACT_PREFIX = "artifacts:"  # Optuna's system-attribute key of an uploaded artifact


def count_trials(url: str, name: str) -> int | None:
    """How many trials study ``name`` has (``StudyNotFoundError`` when it has none such), or
    ``None`` where this module does not stand in for Optuna."""
    def count(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT COUNT(*) FROM trials WHERE study_id = ?",
                            (_study_id(conn, name),)).fetchone()[0]

    return stand_in(url, count)


def delete_study(url: str, name: str) -> list[str] | None:
    """Delete study ``name`` and all its trials in one transaction; return the artifact ids
    its trials had (their files are the caller's to remove). ``None``: not done here, where
    this module does not stand in for Optuna."""
    return stand_in(url, lambda conn: _delete(conn, name), write=True)


def _delete(conn: sqlite3.Connection, name: str) -> list[str]:
    study_id = _study_id(conn, name)
    trials = "trial_id IN (SELECT trial_id FROM trials WHERE study_id = ?)"
    # the attribute is Optuna's ArtifactMeta as JSON text (get_all_artifact_meta)
    ids = [json.loads(json.loads(v))["artifact_id"] for (v,) in conn.execute(
        f'SELECT value_json FROM trial_system_attributes WHERE {trials} AND "key" LIKE ?',
        (study_id, _ARTIFACT_PREFIX + "%"))]
    for table in _TRIAL_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE {trials}", (study_id,))
    conn.execute("DELETE FROM trials WHERE study_id = ?", (study_id,))
    for table in _STUDY_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE study_id = ?", (study_id,))
    conn.execute("DELETE FROM studies WHERE study_id = ?", (study_id,))
    return ids


def _study_id(conn: sqlite3.Connection, name: str) -> int:
    rows = dict(conn.execute("SELECT study_name, study_id FROM studies").fetchall())
    if name not in rows:
        raise not_found(name, list(rows))
    return rows[name]
