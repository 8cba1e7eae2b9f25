"""The RDB storage tuner opens: Optuna's ``RDBStorage`` plus heartbeats and reconnection.

* **Heartbeats** (Optuna's own mechanism): every process running a trial writes a heartbeat
  every ``TUNER_HEARTBEAT_INTERVAL`` seconds (default 10). A RUNNING trial whose heartbeat is
  older than ``TUNER_HEARTBEAT_GRACE`` seconds (default 60) belongs to a dead process (SIGKILL,
  lost machine); the next process that starts a trial marks it FAIL and
  :class:`RetryStaleTrial` queues a copy with the same parameters (at most
  ``STALE_TRIAL_RETRIES`` times per original trial).
* **Reconnection**: a storage call that fails because the connection dropped (server restart,
  network cut, "database is locked") is retried with exponential backoff for up to
  ``TUNER_STORAGE_RETRY_S`` seconds (default 60); then a :class:`~tuner.core.errors.StorageError`
  says so, with the password masked.
* **Trials are created once**: a connection can drop after the server committed a new trial but
  before the answer arrived. Each creation carries a token (a system attribute written in the
  same transaction); a retry first looks the token up, so a lost answer never leaves a second,
  orphaned RUNNING trial that nobody runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import ConfigError, StorageError
from tuner.core.keys import CONFIG_ATTR, CREATE_TOKEN
from tuner.store.credentials import scrub

HEARTBEAT_INTERVAL_ENV = "TUNER_HEARTBEAT_INTERVAL"
HEARTBEAT_GRACE_ENV = "TUNER_HEARTBEAT_GRACE"
RETRY_ENV = "TUNER_STORAGE_RETRY_S"
DEFAULT_HEARTBEAT_INTERVAL_S = 10
DEFAULT_GRACE_S = 60
DEFAULT_RETRY_S = 60.0
STALE_TRIAL_RETRIES = 2  # a trial that kills its worker every time is not retried forever

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


def _env_seconds(name: str, default: float, *, integer: bool = True) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or value <= 0:
        kind = "a whole number of seconds >= 1" if integer else "a number of seconds > 0"
        raise ConfigError(f"${name} must be {kind}, got {raw!r}")
    return value


def heartbeat_settings() -> tuple[int, int]:
    """``(interval, grace)`` in seconds, from the environment or the defaults."""
    interval = _env_seconds(HEARTBEAT_INTERVAL_ENV, DEFAULT_HEARTBEAT_INTERVAL_S)
    grace = _env_seconds(HEARTBEAT_GRACE_ENV, max(DEFAULT_GRACE_S, 2 * interval))
    if grace <= interval:
        raise ConfigError(f"${HEARTBEAT_GRACE_ENV} ({grace}) must be longer than "
                          f"${HEARTBEAT_INTERVAL_ENV} ({interval})")
    return interval, grace


def storage_settings() -> dict[str, Any]:
    """Keyword arguments of :class:`ResilientRDBStorage`: heartbeats and the retry window,
    from the environment (a bad value raises ConfigError naming the variable)."""
    interval, grace = heartbeat_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryStaleTrial(grace)
    return {"heartbeat_interval": interval, "grace_period": grace,
            "heartbeat_stale_trial_callback": callback,
            "retry_s": _env_seconds(RETRY_ENV, DEFAULT_RETRY_S, integer=False)}


class RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry callback (the copy keeps ``system_attrs["failed_trial"]`` pointing at the
    dead trial), plus a log line saying what happened. No copy is queued when the study's
    finished, running and queued trials already cover its stored budget: nobody would run it,
    and it would stay WAITING forever."""

    def __init__(self, grace_s: int, max_retry: int = STALE_TRIAL_RETRIES) -> None:
        super().__init__(max_retry=max_retry)
        self.grace_s = grace_s

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        retries = len(trial.system_attrs.get("retry_history", [])) + 1
        if _budget_covered(study):
            then = "not retried: the study's other trials already cover its budget"
        else:
            super().__call__(study, trial)
            then = ("queued again with the same parameters"
                    if retries <= (self._max_retry or 0)
                    else f"not retried again (retried {retries - 1} times already)")
        log.warning("trial %d: its worker sent no heartbeat for %ds (killed or cut off); "
                    "marked failed, %s", trial.number, self.grace_s, then)


def _budget_covered(study: optuna.Study) -> bool:
    """Whether a tuner study's finished, RUNNING and WAITING (queued) trials reach its stored
    budget (``False`` for a study without one)."""
    budget = study.user_attrs.get(CONFIG_ATTR, {}).get("study", {}).get("n_trials")
    if not isinstance(budget, int):
        return False
    states = [t.state for t in study.get_trials(deepcopy=False)]
    covering = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    done = sum(s in covering for s in states)
    return done >= budget


def _transient(e: BaseException) -> bool:
    """Whether ``e`` (or what caused it) is a dropped or busy connection, worth a retry."""
    from sqlalchemy import exc

    seen: BaseException | None = e
    for _ in range(5):
        if seen is None:
            return False
        dropped = isinstance(seen, exc.OperationalError | exc.InterfaceError)
        if isinstance(seen, exc.DBAPIError) and (seen.connection_invalidated or dropped):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(e: BaseException) -> str:
    inner = getattr(e, "orig", None) or e.__cause__ or e
    inner = getattr(inner, "orig", None) or inner
    text = str(inner).strip().splitlines()
    return text[0].strip() if text else type(inner).__name__


class ResilientRDBStorage(RDBStorage):
    """``RDBStorage`` whose calls survive a dropped connection (see the module doc).

    ``shown`` is the URL as it may be printed (password masked).
    """

    def __init__(self, url: str, *, shown: str, retry_s: float = DEFAULT_RETRY_S,
                 **kwargs: Any) -> None:
        self.shown = shown
        self.retry_s = retry_s
        self._local = threading.local()
        self.lost: StorageError | None = None  # set once the retries ran out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(url, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._local = threading.local()

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
        warned = False
        while True:
            try:
                result = fn(self, *args, **kwargs)
            except Exception as e:
                if not _transient(e):
                    raise
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

        return self._call_with_retry(once)

    def _create_trial_once(self, study_id: int, template: FrozenTrial) -> FrozenTrial:
        """Optuna's trial creation in one transaction, without its own blind retries (which
        repeat a commit whose answer was lost)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session) as session:
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            row = self._get_prepared_new_trial(study_id, template, session)
            number, trial_id, started = row.number, row.trial_id, row.datetime_start
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
        with contextlib.suppress(StorageError):
            self._call_with_retry(RDBStorage.record_heartbeat, trial_id)

    @property
    def grace_s(self) -> float:
        """Seconds without a heartbeat after which a RUNNING trial's process counts as gone."""
        return float(self.grace_period or 2 * (self.heartbeat_interval or 1))

    def started_before_grace(self, trial: FrozenTrial) -> bool:
        """Whether ``trial`` started more than a grace period ago (or has no start time)."""
        now = datetime.now()  # FrozenTrial times are naive local times
        return trial.datetime_start is None or \
            now - trial.datetime_start > timedelta(seconds=self.grace_s)

    def unmonitored(self, running: list[FrozenTrial]) -> set[int]:
        """Ids of the ``running`` trials that never sent a heartbeat and started more than a
        grace period ago: made by a process without heartbeats (plain Optuna, an old tuner)
        that may be long dead. Nothing will ever mark them stale, so nobody should wait for
        them."""
        old = {t._trial_id for t in running if self.started_before_grace(t)}
        if not old:
            return set()
        return old - self._call_with_retry(ResilientRDBStorage._with_heartbeat, old)

    def fail_unstarted_heartbeats(self, study: optuna.Study) -> None:
        """Fail (and retry, as a stale trial) each RUNNING trial that tuner created (it has a
        creation token) but that never sent a heartbeat and started more than a grace period
        ago: its process died between creating the trial and its first heartbeat, and Optuna's
        stale check, which only reads heartbeats, would leave it RUNNING forever. Trials of
        processes without heartbeats (plain Optuna) are left alone."""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        silent = self.unmonitored(running)
        for t in running:
            if t._trial_id in silent and CREATE_TOKEN in t.system_attrs:
                if not study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                    continue
                failed = study._storage.get_trial(t._trial_id)
                callback = self.get_heartbeat_stale_trial_callback()
                if callback is not None:
                    callback(study, failed)

    def heartbeat_ages(self, study_id: int) -> dict[int, float | None]:
        """Seconds since the last heartbeat of each RUNNING trial of the study, by the
        database's clock (``None``: the trial never sent one)."""
        return self._call_with_retry(ResilientRDBStorage._heartbeat_ages, study_id)

    def _heartbeat_ages(self, study_id: int) -> dict[int, float | None]:
        import sqlalchemy
        from optuna.storages._rdb import models

        trial, hb = models.TrialModel, models.TrialHeartbeatModel
        with self.scoped_session() as session:
            now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
            rows = (session.query(trial.trial_id, hb.heartbeat)
                    .outerjoin(hb, hb.trial_id == trial.trial_id)
                    .filter(trial.study_id == study_id, trial.state == TrialState.RUNNING)
                    .all())
        return {trial_id: None if beat is None else max(0.0, (now - beat).total_seconds())
                for trial_id, beat in rows}

    def _with_heartbeat(self, trial_ids: set[int]) -> set[int]:
        from optuna.storages._rdb import models

        hb = models.TrialHeartbeatModel
        with self.scoped_session() as session:
            rows = session.query(hb.trial_id).filter(hb.trial_id.in_(sorted(trial_ids))).all()
        return {row[0] for row in rows}


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
        lost = getattr(getattr(storage, "_backend", storage), "lost", None)
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
