"""The RDB storage tuner opens: Optuna's ``RDBStorage`` plus heartbeats and reconnection.

* **Heartbeats** (:mod:`tuner.store.heartbeats`): a RUNNING trial whose process is gone is
  failed and queued again with the same parameters; the storage answers the heartbeat
  questions Optuna does not (trials that never sent one, each trial's heartbeat age).
* **Reconnection**: a storage call that fails because the connection dropped (server restart,
  network cut, "database is locked") is retried with exponential backoff for up to
  ``TUNER_STORAGE_RETRY_S`` seconds (default 60); then a :class:`~tuner.core.errors.StorageError`
  says so, with the password masked.
* **Trials are created once**: a connection can drop after the server committed a new trial but
  before the answer arrived. Each creation carries a token (a system attribute written in the
  same transaction); a retry first looks the token up, so a lost answer never leaves a second,
  orphaned RUNNING trial that nobody runs.
* **A new trial's first heartbeat** is written in its creation's transaction (one commit less
  per trial); the heartbeat thread, which Optuna starts right after, skips its first beat.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import StorageError
from tuner.core.keys import CREATE_TOKEN
from tuner.store.credentials import scrub
from tuner.store.heartbeats import HeartbeatChecks, RetryStaleTrial
from tuner.store.schema import without_alembic_at_head
from tuner.store.settings import env_seconds, heartbeat_settings

RETRY_ENV = "TUNER_STORAGE_RETRY_S"
DEFAULT_RETRY_S = 60.0

log = logging.getLogger("tuner")
F = TypeVar("F", bound=Callable[..., Any])

# Every storage call a study makes; each is one transaction, so running it again after a
# dropped connection is safe (the failed attempt was rolled back; only a commit whose answer
# was lost would be repeated).
_RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "set_trial_param",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials",
    "get_n_trials", "get_best_trial", "get_trial_params", "get_trial_user_attrs",
    "get_trial_system_attrs", "record_heartbeat", "_get_stale_trial_ids",
    # what Optuna's trial cache (_CachedStorage) calls instead of the public methods
    "_get_trials", "_set_trial_param", "_get_best_trial_id",
)  # not trial creation, which is not safe to repeat: see _create_new_trial


def storage_settings() -> dict[str, Any]:
    """Keyword arguments of :class:`ResilientRDBStorage`: heartbeats and the retry window,
    from the environment (a bad value raises ConfigError naming the variable)."""
    interval, grace = heartbeat_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryStaleTrial(grace)
    return {"heartbeat_interval": interval, "grace_period": grace,
            "heartbeat_stale_trial_callback": callback,
            "retry_s": env_seconds(RETRY_ENV, DEFAULT_RETRY_S, integer=False)}


def _db_errors(e: BaseException) -> Iterator[Any]:
    """The database errors among ``e`` and what caused it."""
    from sqlalchemy import exc

    seen: BaseException | None = e
    for _ in range(5):
        if seen is None:
            return
        if isinstance(seen, exc.DBAPIError):
            yield seen
        seen = seen.__cause__ or seen.__context__


def _transient(e: BaseException) -> bool:
    """Whether ``e`` (or what caused it) is a dropped or busy connection, worth a retry."""
    from sqlalchemy import exc

    return any(seen.connection_invalidated
               or isinstance(seen, exc.OperationalError | exc.InterfaceError)
               for seen in _db_errors(e))


def _dropped(e: BaseException) -> bool:
    """Whether ``e`` came from a connection the server had closed (SQLAlchemy then drops the
    pool's connections): a pooled connection idle through a server restart or timeout."""
    return any(seen.connection_invalidated for seen in _db_errors(e))


def _first_line(e: BaseException) -> str:
    inner = getattr(e, "orig", None) or e.__cause__ or e
    inner = getattr(inner, "orig", None) or inner
    text = str(inner).strip().splitlines()
    return text[0].strip() if text else type(inner).__name__


class ResilientRDBStorage(HeartbeatChecks, RDBStorage):
    """``RDBStorage`` whose calls survive a dropped connection (see the module doc).

    ``shown`` is the URL as it may be printed (password masked).
    """

    def __init__(self, url: str, *, shown: str, retry_s: float = DEFAULT_RETRY_S,
                 **kwargs: Any) -> None:
        self.shown = shown
        self.retry_s = retry_s
        self._local = threading.local()
        self.lost: StorageError | None = None  # set once the retries ran out
        self._beat_at_creation: set[int] = set()  # their thread's first beat is already written
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            with without_alembic_at_head():  # alembic is imported only when it has work
                super().__init__(url, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_local", None)
        state.pop("_beat_at_creation", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        with without_alembic_at_head():
            super().__setstate__(state)
        self._local = threading.local()
        self._beat_at_creation = set()

    def _call_with_retry(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(self._local, "depth", 0) > 0:  # an inner call: the outermost one retries
            return fn(self, *args, **kwargs)
        self._local.depth = 1
        try:
            return self._retry_loop(fn, *args, **kwargs)
        finally:
            self._local.depth = 0

    def _retry_loop(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        delay = 0.25
        warned = quick = False
        while True:
            try:
                result = fn(self, *args, **kwargs)
            except Exception as e:
                if not _transient(e):
                    raise
                if _dropped(e) and not quick:  # at once and silently, on a new connection:
                    quick = True  # what a ping before each use would have done (no pings:
                    continue  # one round trip less per transaction, ~0.2 ms on PostgreSQL)
                waited = time.monotonic() - started
                if self.lost is not None or waited + delay > self.retry_s:
                    self.lost = self.lost or StorageError(
                        f"lost the connection to storage {self.shown} and could not get it back "
                        f"within {self.retry_s:g}s ({scrub(_first_line(e), self.url)})"
                    )
                    raise self.lost from None
                if not warned:
                    log.warning("storage %s: %s; retrying for up to %gs", self.shown,
                                scrub(_first_line(e), self.url), self.retry_s)
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
                continue
            if warned:
                log.info("storage %s is reachable again", self.shown)
            return result

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._create_new_trial(study_id, template_trial)._trial_id

    def _create_new_trial(self, study_id: int,
                          template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """Create a trial exactly once, even when the answer to its commit is lost."""
        token = uuid.uuid4().hex
        template = _with_token(template_trial, token)
        attempts = 0

        def once(storage: ResilientRDBStorage) -> FrozenTrial:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # did the attempt that failed commit after all?
                made = storage._trial_id_with_token(study_id, token)
                if made is not None:
                    return RDBStorage.get_trial(storage, made)
            return storage._create_trial_once(study_id, template)

        made = self._call_with_retry(once)
        if made.state == TrialState.RUNNING and self.heartbeat_interval:
            self._beat_at_creation.add(made._trial_id)
        return made

    def _create_trial_once(self, study_id: int, template: FrozenTrial) -> FrozenTrial:
        """Optuna's trial creation in one transaction, without its own blind retries (which
        repeat a commit whose answer was lost)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session) as session:
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            row = self._get_prepared_new_trial(study_id, template, session)
            number, trial_id, started = row.number, row.trial_id, row.datetime_start
            if template.state == TrialState.RUNNING and self.heartbeat_interval:
                session.add(models.TrialHeartbeatModel(trial_id=trial_id))  # its first beat
        frozen = template
        frozen.number, frozen._trial_id, frozen.datetime_start = number, trial_id, started
        return frozen

    def _trial_id_with_token(self, study_id: int, token: str) -> int | None:
        from optuna.storages._rdb import models

        attr, trial = models.TrialSystemAttributeModel, models.TrialModel
        with self.scoped_session() as session:
            row = (session.query(attr.trial_id).join(trial, trial.trial_id == attr.trial_id)
                   .filter(trial.study_id == study_id, attr.key == CREATE_TOKEN,
                           attr.value_json == json.dumps(token)).first())
        return None if row is None else row[0]

    def record_heartbeat(self, trial_id: int) -> None:
        # Runs in Optuna's heartbeat thread: an error there would only print a traceback. The
        # main thread meets the same lost connection and reports it.
        if trial_id in self._beat_at_creation:  # written with the trial, moments ago
            self._beat_at_creation.discard(trial_id)
            return
        with contextlib.suppress(StorageError):
            self._call_with_retry(RDBStorage.record_heartbeat, trial_id)

def uncached(storage: BaseStorage) -> BaseStorage:
    """The storage tuner opened, under the trial cache Optuna wraps around an RDB storage
    (a study's ``_storage``); any other storage as it is."""
    return getattr(storage, "_backend", storage)


def close_connections(storage: BaseStorage) -> None:
    """Close the pooled database connections of ``storage`` (a study's ``_storage`` too); it
    opens new ones when next used. Before a fork: a child must never use its parent's."""
    engine = getattr(uncached(storage), "engine", None)
    if engine is not None:
        engine.dispose()


@contextlib.contextmanager
def reraise_lost(storage: BaseStorage) -> Iterator[None]:
    """Raise the storage's "lost the connection" :class:`~tuner.core.errors.StorageError` for any
    error in the block once the retries ran out: Optuna's clean-up after a failed storage call
    hides it under its own error (an ``UnboundLocalError`` in ``_run_trial`` when telling the
    trial failed). ``storage`` may be a study's ``_storage`` (Optuna's trial cache around ours).
    """
    try:
        yield
    except Exception:
        lost = getattr(uncached(storage), "lost", None)
        if lost is not None:
            raise lost from None
        raise


def _with_token(template: FrozenTrial | None, token: str) -> FrozenTrial:
    """``template`` (or a fresh RUNNING trial) with the creation token among its system
    attributes; the caller's template is not changed."""
    if template is None:
        return FrozenTrial(number=-1, state=TrialState.RUNNING, value=None,
                           datetime_start=datetime.now(), datetime_complete=None, params={},
                           distributions={}, user_attrs={}, system_attrs={CREATE_TOKEN: token},
                           intermediate_values={}, trial_id=-1)
    made = copy.deepcopy(template)
    made.system_attrs[CREATE_TOKEN] = token
    return made


def _retrying(name: str) -> Callable[..., Any]:
    original = getattr(RDBStorage, name)

    @wraps(original)
    def method(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call_with_retry(original, *args, **kwargs)

    return method


for _name in _RETRIED:
    if _name not in ResilientRDBStorage.__dict__:
        setattr(ResilientRDBStorage, _name, _retrying(_name))
