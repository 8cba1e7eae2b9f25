"""The queue of studies and the pool's workers, as stored data.

A submitted study carries its place in the queue as a study user attribute
(:data:`~tuner.core.keys.QUEUE_ATTR`): its state, priority, parallel limit and when it was
submitted. The pool workers' heartbeats are user attributes of one hidden study
(:data:`~tuner.core.keys.POOL_STUDY`). Both live in the storage itself (SQLite, PostgreSQL, a
journal file), so ``tuner queue``, a pool worker and the server read the same state without
talking to each other, and it survives every process.

This module reads and writes that data; the rules (which study a free worker serves next,
what ``pause`` or ``cancel`` change) are :mod:`tuner.service.queue`'s.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import optuna
from optuna.storages import BaseStorage

from tuner.core.errors import StudyNotFoundError
from tuner.core.keys import (
    POOL_STUDY,
    POOL_WORKER_PREFIX,
    QUEUE_ATTR,
    RESERVED_PREFIX,
    WARM_START,
    WORKER,
    stored_budget,
)
from tuner.store.rdb import uncached
from tuner.store.snapshot import study_metrics
from tuner.store.studies import load_existing

QUEUED, PAUSED, CANCELLED = "queued", "paused", "cancelled"  # the states a user sets
STATES = (QUEUED, PAUSED, CANCELLED)
BEAT_S = 10.0  # how often a pool worker stores its heartbeat
SEEN_S = 3 * BEAT_S  # a pool worker not heard from for longer is gone


@dataclass(frozen=True)
class QueueEntry:
    """A submitted study's place in the queue. ``max_parallel``: at most this many of its
    trials run at once (``None``: no limit of its own). ``submitted``: seconds since the epoch
    (first in, first served among equals)."""

    state: str = QUEUED
    priority: int = 0
    max_parallel: int | None = None
    submitted: float = field(default_factory=time.time)
    reason: str | None = None  # why the pool paused it (failing in a row, its timeout passed)

    @staticmethod
    def of(user_attrs: dict[str, Any]) -> QueueEntry | None:
        """The entry stored in a study's user attributes; ``None`` for a study never submitted
        (or one whose entry this tuner cannot read)."""
        raw = user_attrs.get(QUEUE_ATTR)
        if not isinstance(raw, dict) or raw.get("state") not in STATES:
            return None
        limit = raw.get("max_parallel")
        return QueueEntry(state=raw["state"], priority=int(raw.get("priority", 0)),
                          max_parallel=limit if isinstance(limit, int) and limit > 0 else None,
                          submitted=float(raw.get("submitted", 0.0)),
                          reason=raw.get("reason") if isinstance(raw.get("reason"), str) else None)

    def store(self, storage: BaseStorage, study_id: int) -> None:
        storage.set_study_user_attr(study_id, QUEUE_ATTR, asdict(self))


@dataclass
class QueuedStudy:
    """A submitted study as the queue sees it: its entry and its trials' counts."""

    name: str
    study_id: int
    entry: QueueEntry
    directions: list[str]
    metrics: list[str]
    budget: int | None
    finished: int
    running: int
    best: float | None
    trial_seconds: float | None  # the mean duration of its finished trials
    workers: list[str] = field(default_factory=list)  # the pool workers running its trials

    @property
    def left(self) -> int | None:
        """Trials still to finish (``None``: no stored budget)."""
        return None if self.budget is None else max(self.budget - self.finished, 0)

    @property
    def done(self) -> bool:
        return self.left == 0

    @property
    def state(self) -> str:
        """What ``tuner queue`` shows: finished, cancelled, paused (pausing while trials still
        run), running or queued."""
        if self.done:
            return "finished"
        if self.entry.state == QUEUED:
            return "running" if self.running else QUEUED
        if self.entry.state == PAUSED and self.running:
            return "pausing"
        return self.entry.state

    def eta_s(self, pool_size: int | None = None) -> float | None:
        """A rough estimate of the seconds until it has its budget: its mean trial time times the
        trials left, over the trials it runs at once (``pool_size`` workers when it runs none
        yet; ``None`` when no trial has finished to time)."""
        if self.left is None or self.trial_seconds is None:
            return None
        width = self.running or min(pool_size or 1, self.entry.max_parallel or math.inf)
        return self.trial_seconds * self.left / max(width, 1)


@dataclass(frozen=True)
class _Trial:
    """What the queue reads of one trial."""

    state: str  # TrialState's name
    start: datetime | None
    complete: datetime | None
    value: float | None  # its first value
    warm: bool  # a warm start's prior observation (not the study's own)
    worker: str | None


def queued_studies(storage: BaseStorage, *, counts_only: bool = False) -> list[QueuedStudy]:
    """Every submitted study in ``storage``, in the order of their submission. On an RDB
    storage a few SQL reads (a pool worker reads this before every claim: through Optuna it
    took 0.5 s for 8 studies of 200 trials on PostgreSQL); on any other storage, through
    Optuna. ``counts_only``: finished and running counts only (what a worker's choice needs;
    no best, times or workers), counted by the database."""
    backend = uncached(storage)
    engine = getattr(backend, "engine", None)
    found = _read_sql(engine, counts_only) if engine is not None else _read_optuna(storage)
    return sorted(found, key=lambda q: (q.entry.submitted, q.name))


def queued_study(storage: BaseStorage, name: str, study_id: int, user_attrs: dict[str, Any],
                 directions: list[str], entry: QueueEntry) -> QueuedStudy:
    """One submitted study, read through Optuna."""
    trials = storage.get_all_trials(study_id, deepcopy=False)
    return _summary(name, study_id, entry, directions, user_attrs, [
        _Trial(t.state.name, t.datetime_start, t.datetime_complete,
               t.values[0] if t.values else None, WARM_START in t.user_attrs,
               t.user_attrs.get(WORKER)) for t in trials])


def _read_optuna(storage: BaseStorage) -> list[QueuedStudy]:
    out = []
    for frozen in storage.get_all_studies():
        entry = QueueEntry.of(frozen.user_attrs)
        if entry is None or frozen.study_name.startswith(RESERVED_PREFIX):
            continue
        out.append(queued_study(storage, frozen.study_name, frozen._study_id,
                                frozen.user_attrs, [d.name for d in frozen.directions], entry))
    return out


_STUDIES = """SELECT s.study_id, s.study_name, a.key, a.value_json FROM studies s
JOIN study_user_attributes a ON a.study_id = s.study_id
WHERE a.key IN ('tuner:queue', 'tuner:config')"""
_DIRECTIONS = """SELECT study_id, direction FROM study_directions WHERE study_id IN :ids
ORDER BY study_id, objective"""
_TRIALS = """SELECT t.study_id, t.state, t.datetime_start, t.datetime_complete,
 (SELECT v.value FROM trial_values v WHERE v.trial_id = t.trial_id AND v.objective = 0) AS value,
 (SELECT COUNT(*) FROM trial_user_attributes a
  WHERE a.trial_id = t.trial_id AND a.key = 'warm_start') AS warm,
 (SELECT a.value_json FROM trial_user_attributes a
  WHERE a.trial_id = t.trial_id AND a.key = 'worker') AS worker
FROM trials t WHERE t.study_id IN :ids"""


_COUNTS = """SELECT t.study_id, t.state, COUNT(*), SUM(CASE WHEN EXISTS (
  SELECT 1 FROM trial_user_attributes a WHERE a.trial_id = t.trial_id AND a.key = 'warm_start')
  THEN 1 ELSE 0 END)
FROM trials t WHERE t.study_id IN :ids GROUP BY t.study_id, t.state"""


def _read_sql(engine: Any, counts_only: bool = False) -> list[QueuedStudy]:
    from sqlalchemy import DateTime, bindparam, text

    with engine.connect() as conn:
        attrs: dict[int, tuple[str, dict[str, Any]]] = {}
        for study_id, name, key, value in conn.execute(text(_STUDIES)):
            if name.startswith(RESERVED_PREFIX):
                continue
            attrs.setdefault(study_id, (name, {}))[1][key] = json.loads(value)
        queued = {i: a for i, a in attrs.items() if QueueEntry.of(a[1]) is not None}
        if not queued:
            return []
        ids = bindparam("ids", expanding=True)
        directions: dict[int, list[str]] = {}
        for study_id, direction in conn.execute(text(_DIRECTIONS).bindparams(ids),
                                                {"ids": list(queued)}):
            directions.setdefault(study_id, []).append(getattr(direction, "name", direction))
        if counts_only:
            counts: dict[int, dict[str, tuple[int, int]]] = {i: {} for i in queued}
            for study_id, state, n, warm in conn.execute(text(_COUNTS).bindparams(ids),
                                                         {"ids": list(queued)}):
                counts[study_id][getattr(state, "name", state)] = (n, warm or 0)
            return [_counted(name, i, a, directions.get(i, []), counts[i])
                    for i, (name, a) in queued.items()]
        trials: dict[int, list[_Trial]] = {i: [] for i in queued}
        typed = text(_TRIALS).bindparams(ids).columns(datetime_start=DateTime,
                                                      datetime_complete=DateTime)
        for study_id, state, start, complete, value, warm, worker in conn.execute(
                typed, {"ids": list(queued)}):
            trials[study_id].append(_Trial(getattr(state, "name", state), start, complete,
                                           value, bool(warm),
                                           json.loads(worker) if worker else None))
    return [_summary(name, i, QueueEntry.of(a), directions.get(i, []), a, trials[i])
            for i, (name, a) in queued.items()]


def _counted(name: str, study_id: int, user_attrs: dict[str, Any], directions: list[str],
             counts: dict[str, tuple[int, int]]) -> QueuedStudy:
    entry = QueueEntry.of(user_attrs)
    assert entry is not None
    finished = sum(n - warm for state, (n, warm) in counts.items()
                   if state in ("COMPLETE", "PRUNED"))
    return QueuedStudy(name=name, study_id=study_id, entry=entry, directions=directions,
                       metrics=study_metrics(SimpleNamespace(user_attrs=user_attrs)),
                       budget=stored_budget(user_attrs), finished=finished,
                       running=counts.get("RUNNING", (0, 0))[0], best=None, trial_seconds=None)


def _summary(name: str, study_id: int, entry: QueueEntry | None, directions: list[str],
             user_attrs: dict[str, Any], trials: list[_Trial]) -> QueuedStudy:
    assert entry is not None
    own = [t for t in trials if t.state in ("COMPLETE", "PRUNED") and not t.warm]
    durations = [(t.complete - t.start).total_seconds() for t in own if t.start and t.complete]
    values = [t.value for t in own if t.state == "COMPLETE" and t.value is not None]
    best = None
    if values and len(directions) == 1:
        best = (max if directions[0] == "MAXIMIZE" else min)(values)
    running = [t for t in trials if t.state == "RUNNING"]
    return QueuedStudy(name=name, study_id=study_id, entry=entry, directions=directions,
                       metrics=study_metrics(SimpleNamespace(user_attrs=user_attrs)),
                       budget=stored_budget(user_attrs), finished=len(own), running=len(running),
                       best=best,
                       trial_seconds=sum(durations) / len(durations) if durations else None,
                       workers=sorted({str(t.worker) for t in running if t.worker}))


def find_queued(storage: BaseStorage, name: str) -> tuple[optuna.Study, QueueEntry]:
    """Study ``name`` and its queue entry, or :class:`ConfigError` when it was never submitted."""
    study = load_existing(name, storage, any_objectives=True)
    entry = QueueEntry.of(study.user_attrs)
    if entry is None:
        raise StudyNotFoundError(f"study {name!r} is not in the queue (it was not submitted); "
                                 f"queue it with: tuner submit STUDY_FILE --name {name}")
    return study, entry


# --------------------------------------------------------------------------- the pool's workers
@dataclass(frozen=True)
class PoolWorker:
    """A pool worker's last heartbeat: who and where it is, what it serves, and when it said so."""

    id: str
    host: str
    pid: int
    device: str | None
    started: float
    seen: float
    study: str | None = None
    trial: int | None = None  # the number of the trial it runs
    blocked: dict[str, str] = field(default_factory=dict)  # study -> why it cannot serve it

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.seen


def _pool_study_id(storage: BaseStorage) -> int:
    try:
        return storage.get_study_id_from_name(POOL_STUDY)
    except KeyError:
        try:
            return storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], POOL_STUDY)
        except optuna.exceptions.DuplicatedStudyError:  # another worker made it meanwhile
            return storage.get_study_id_from_name(POOL_STUDY)


def beat(storage: BaseStorage, worker: PoolWorker) -> None:
    """Store ``worker``'s heartbeat (its ``seen`` time is now)."""
    record = asdict(worker) | {"seen": time.time()}
    storage.set_study_user_attr(_pool_study_id(storage), POOL_WORKER_PREFIX + worker.id, record)


def forget(storage: BaseStorage, worker_id: str) -> None:
    """Mark a worker that stopped: its record stays (for the API's history) with study ``None``
    and ``seen`` set to 0, so that it reads as gone at once."""
    try:
        study_id = storage.get_study_id_from_name(POOL_STUDY)
    except KeyError:
        return
    attrs = storage.get_study_user_attrs(study_id)
    record = attrs.get(POOL_WORKER_PREFIX + worker_id)
    if isinstance(record, dict):
        storage.set_study_user_attr(study_id, POOL_WORKER_PREFIX + worker_id,
                                    record | {"study": None, "trial": None, "seen": 0.0})


def pool_workers(storage: BaseStorage, max_age_s: float | None = None) -> list[PoolWorker]:
    """The pool workers' last heartbeats, newest first (only those seen within ``max_age_s``)."""
    try:
        study_id = storage.get_study_id_from_name(POOL_STUDY)
    except KeyError:
        return []
    now = time.time()
    out = []
    for key, record in storage.get_study_user_attrs(study_id).items():
        if not key.startswith(POOL_WORKER_PREFIX) or not isinstance(record, dict):
            continue
        try:
            worker = PoolWorker(**record)
        except TypeError:  # written by another tuner version
            continue
        if max_age_s is None or worker.age_s(now) <= max_age_s:
            out.append(worker)
    return sorted(out, key=lambda w: -w.seen)
