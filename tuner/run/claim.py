"""Claiming the next trial so that many workers stop at exactly the study's budget.

Optuna's shared-storage model lets every process ask for a trial whenever it likes, so N
workers that each check "finished < budget" overshoot by up to N-1 trials. A tuner worker
instead decides and asks under one lock per study:

1. take the study's claim lock (a PostgreSQL advisory lock; an ``flock`` beside a SQLite or
   journal file, which only local processes share anyway),
2. fail stale trials (dead workers; their retries become WAITING trials),
3. count: ``finished >= budget`` → done; ``finished + running < budget`` → ask (which pops a
   WAITING retry first); otherwise wait, because a running trial may still fail or die,
4. release the lock as soon as the trial exists (the objective's first line).

Step 2 under the lock also means two workers never retry one dead trial twice, and popping
WAITING trials is never raced, which is what breaks ``enqueue_trial`` on plain SQLite.
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core.keys import FAIL_REASON, PACK_OF
from tuner.store.rdb import ResilientRDBStorage
from tuner.store.storage import JOURNAL_PREFIX, normalise_url, sqlite_path
from tuner.store.studies import in_budget

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger("tuner")


class ClaimLock(Protocol):
    """A lock shared by every worker of one study; ``release`` may be called when not held."""

    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def try_acquire(self) -> bool: ...  # take it only if it is free now


class NoLock:
    """For storages with no lock tuner knows how to share (MySQL, in-memory): the budget may
    then be overshot by up to one trial per extra worker."""

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass

    def try_acquire(self) -> bool:
        return True


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if missing); released if the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self._take(fcntl.LOCK_EX)

    def try_acquire(self) -> bool:
        return self._take(fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _take(self, how: int) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock


class AdvisoryLock:
    """A PostgreSQL session advisory lock keyed by the study name; the server releases it
    when the holding connection ends (a killed worker never leaves it taken)."""

    def __init__(self, storage: ResilientRDBStorage, study_name: str) -> None:
        digest = hashlib.sha256(f"tuner-claim:{study_name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self.storage = storage
        self._conn: Connection | None = None

    def acquire(self) -> None:
        self._conn = self.storage._call_with_retry(AdvisoryLock._lock, self.key, True)

    def try_acquire(self) -> bool:
        self._conn = self.storage._call_with_retry(AdvisoryLock._lock, self.key, False)
        return self._conn is not None

    @staticmethod
    def _lock(storage: ResilientRDBStorage, key: int, wait: bool) -> Connection | None:
        from sqlalchemy import text

        conn = storage.engine.connect()
        try:
            if wait:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                taken = True
            else:
                taken = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                          {"k": key}).scalar())
            conn.commit()  # the lock is the session's; no transaction stays open
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            return None
        return conn

    def release(self) -> None:
        if self._conn is None:
            return
        from sqlalchemy import text

        conn, self._conn = self._conn, None
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.commit()
            conn.close()
        except Exception:  # a dead connection has lost the lock with it
            conn.invalidate()


def claim_lock(url: str, storage: BaseStorage, study_name: str) -> ClaimLock:
    """The claim lock for the study ``study_name`` in the storage at ``url``."""
    lock = _shared_lock(url, storage, ".tuner-lock", study_name)
    if isinstance(lock, NoLock):
        log.warning("no shared lock for this kind of storage: with several workers the study "
                    "may end a few trials past its budget")
    return lock


def _shared_lock(url: str, storage: BaseStorage, suffix: str, key: str) -> ClaimLock:
    """A lock every process on the storage at ``url`` shares: a file with ``suffix`` beside a
    SQLite or journal file, a PostgreSQL advisory lock on ``key``, else none."""
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):]).expanduser()
        return FileLock(path.with_name(path.name + suffix))
    path = sqlite_path(url)
    if path is not None:
        return FileLock(path.with_name(path.name + suffix))
    if isinstance(storage, ResilientRDBStorage) and normalise_url(url).startswith("postgresql"):
        return AdvisoryLock(storage, key)
    return NoLock()


class Decision(enum.Enum):
    GO = "go"  # ask for a trial now
    WAIT = "wait"  # the budget is covered by running trials, one of which may still fail
    DONE = "done"  # the study has its budget of finished trials


def decide(study: optuna.Study, storage: BaseStorage, budget: int) -> tuple[Decision, int, int]:
    """``(decision, finished, running)`` for a study with ``budget`` (call under the lock).

    RUNNING trials that nothing can ever mark stale (no heartbeat, old) do not count: waiting
    for them could last forever. Without heartbeats at all (journal storage), a worker does
    not wait for the others' running trials either: it stops, and they finish the study.
    With heartbeats, a study that has its budget while trials still run waits for them to end
    or go stale (a dead process's trial is then marked failed), so the last process never
    leaves one RUNNING behind.
    """
    trials = study.get_trials(deepcopy=False)
    finished = sum(in_budget(t) for t in trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    monitored = isinstance(storage, ResilientRDBStorage) and storage.heartbeat_interval
    if monitored and running:
        dead = storage.unmonitored(running)
        running = [t for t in running if t._trial_id not in dead]
    if finished >= budget:
        if monitored and running:
            return Decision.WAIT, finished, len(running)
        drop_surplus_retries(study, trials)
        return Decision.DONE, finished, len(running)
    if finished + len(running) < budget:
        return Decision.GO, finished, len(running)
    return (Decision.WAIT if monitored else Decision.DONE), finished, len(running)


def drop_surplus_retries(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    """Fail the WAITING retries of dead trials left in a study that has its budget (queued by
    an older tuner, or by a process that raced the last trial), and a packed claim's queued
    member that a Ctrl-C left behind: nobody would ever run them. Trials a user enqueued (no
    ``failed_trial`` or ``pack_of`` attribute) stay."""
    storage = study._storage
    for t in trials:
        if t.state == TrialState.WAITING and PACK_OF in t.user_attrs:
            storage.set_trial_user_attr(t._trial_id, FAIL_REASON,
                                        "packed trial not needed: the study had its budget")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            continue
        if t.state == TrialState.WAITING and "failed_trial" in t.system_attrs:
            storage.set_trial_user_attr(t._trial_id, FAIL_REASON,
                                        "retry not needed: the study had its budget")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            log.info("trial %d: a queued retry of trial %s, not needed (the study has its "
                     "budget); marked failed", t.number, t.system_attrs["failed_trial"])
