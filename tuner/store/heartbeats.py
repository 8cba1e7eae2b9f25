"""Heartbeats: how tuner tells a trial whose process is gone from one still running.

Optuna's mechanism does the beating: every process running a trial records a heartbeat every
``TUNER_HEARTBEAT_INTERVAL`` seconds (default 10), and a RUNNING trial whose heartbeat is older
than ``TUNER_HEARTBEAT_GRACE`` seconds (default 60) is failed by the next process that checks.
Here: :class:`RetryStaleTrial` (what happens to such a trial), and the checks Optuna lacks
(:class:`HeartbeatChecks`, mixed into :class:`tuner.store.rdb.ResilientRDBStorage`): trials that
never sent a heartbeat, and each running trial's heartbeat age for ``tuner show``. The two
settings are read in :mod:`tuner.store.settings`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from tuner.core.keys import CREATE_TOKEN, stored_budget
from tuner.store.snapshot import started_before

STALE_TRIAL_RETRIES = 2  # a trial that kills its worker every time is not retried forever

log = logging.getLogger("tuner")


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
    budget = stored_budget(study.user_attrs)
    if budget is None:
        return False
    states = [t.state for t in study.get_trials(deepcopy=False)]
    covering = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    done = sum(s in covering for s in states)
    return done >= budget


class HeartbeatChecks:
    """Heartbeat queries of an RDB storage (mixed into ``ResilientRDBStorage``, which gives
    ``_call_with_retry``, ``scoped_session`` and Optuna's heartbeat settings)."""

    grace_period: int | None
    heartbeat_interval: int | None
    _call_with_retry: Callable[..., Any]
    scoped_session: Any
    get_heartbeat_stale_trial_callback: Callable[[], Any]

    @property
    def grace_s(self) -> float:
        """Seconds without a heartbeat after which a RUNNING trial's process counts as gone."""
        return float(self.grace_period or 2 * (self.heartbeat_interval or 1))

    def started_before_grace(self, trial: FrozenTrial) -> bool:
        """Whether ``trial`` started more than a grace period ago (or has no start time)."""
        return started_before(trial.datetime_start, self.grace_s)

    def unmonitored(self, running: list[FrozenTrial]) -> set[int]:
        """Ids of the ``running`` trials that never sent a heartbeat and started more than a
        grace period ago: made by a process without heartbeats (plain Optuna, an old tuner)
        that may be long dead. Nothing will ever mark them stale, so nobody should wait for
        them."""
        old = {t._trial_id for t in running if self.started_before_grace(t)}
        if not old:
            return set()
        return old - self._call_with_retry(HeartbeatChecks._with_heartbeat, old)

    def fail_unstarted_heartbeats(self, study: optuna.Study) -> None:
        """Fail (and retry, as a stale trial) each RUNNING trial that tuner created (it has a
        creation token) but that never sent a heartbeat and started more than a grace period
        ago: an older tuner's process died between creating the trial and its first heartbeat,
        and Optuna's stale check, which only reads heartbeats, would leave it RUNNING forever.
        (Today's tuner writes a trial's first heartbeat with it.) Trials of processes without
        heartbeats (plain Optuna) are left alone."""
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
        return self._call_with_retry(HeartbeatChecks._heartbeat_ages, study_id)

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
