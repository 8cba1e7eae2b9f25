"""The queue's rules: pausing, cancelling, queueing more trials, which queued study a free
pool worker serves next, and what ``tuner queue`` shows (submitting: :mod:`tuner.service.submit`).

The queue's state is stored data (:mod:`tuner.store.queue`), so every command here acts on a
storage directly; the server (:mod:`tuner.service.app`) calls the same functions. Nothing here
imports torch: ``tuner queue``, ``pause`` and ``cancel`` stay light.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from optuna.storages import BaseStorage
from optuna.trial import TrialState

from tuner.core.errors import ConfigError, TunerError
from tuner.store.queue import (
    CANCELLED,
    PAUSED,
    QUEUED,
    SEEN_S,
    PoolWorker,
    QueuedStudy,
    find_queued,
    pool_workers,
    queued_studies,
    queued_study,
)
from tuner.store.studies import fail_trials, grow_budget, n_finished

log = logging.getLogger("tuner")

CANCEL_REASON = "cancelled (tuner cancel): the study was taken out of the queue"


class StateError(TunerError):
    """A change the study's state does not allow (unpause a queued study, cancel a finished
    one): nothing is changed (HTTP 409)."""


def describe(storage: BaseStorage, name: str) -> QueuedStudy:
    """Study ``name`` as the queue sees it (:class:`ConfigError` if it was never submitted)."""
    study, entry = find_queued(storage, name)
    return queued_study(storage, name, study._study_id, study.user_attrs,
                        [d.name for d in study.directions], entry)


def pause(storage: BaseStorage, name: str) -> QueuedStudy:
    """No pool worker starts another trial of ``name``; its running trials finish."""
    study, entry = find_queued(storage, name)
    _refuse_when_done(storage, name, "pause")
    if entry.state != QUEUED:
        raise StateError(f"study {name!r} is {entry.state} already; nothing changed"
                         + (f" (queue it again with: tuner unpause {name})"
                            if entry.state == CANCELLED else ""))
    replace(entry, state=PAUSED).store(study._storage, study._study_id)
    return describe(storage, name)


def unpause(storage: BaseStorage, name: str) -> QueuedStudy:
    """Put a paused or cancelled study back in the queue."""
    study, entry = find_queued(storage, name)
    _refuse_when_done(storage, name, "unpause")
    if entry.state == QUEUED:
        raise StateError(f"study {name!r} is queued, not paused; nothing changed")
    replace(entry, state=QUEUED, reason=None).store(study._storage, study._study_id)
    return describe(storage, name)


def cancel(storage: BaseStorage, name: str) -> tuple[QueuedStudy, int]:
    """Take ``name`` out of the queue; its running trials end as failed, with the reason
    (their workers find them finished and go on with another study). Its finished trials
    stay. Returns the study and how many running trials were failed."""
    study, entry = find_queued(storage, name)
    _refuse_when_done(storage, name, "cancel")
    if entry.state == CANCELLED:
        raise StateError(f"study {name!r} is cancelled already; nothing changed")
    replace(entry, state=CANCELLED).store(study._storage, study._study_id)
    running = [t._trial_id
               for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    fail_trials(study._storage, running, CANCEL_REASON)
    return describe(storage, name), len(running)


def _refuse_when_done(storage: BaseStorage, name: str, action: str) -> None:
    if describe(storage, name).done:
        raise StateError(f"study {name!r} has its budget of finished trials: nothing to "
                         f"{action}; queue more with: tuner resume {name} --n-trials N")


def queue_more(storage: BaseStorage, name: str, n_trials: int) -> QueuedStudy:
    """Raise the budget of ``name`` to ``n_trials`` more finished trials than it has now, and
    queue it again (a finished or cancelled study too)."""
    study, entry = find_queued(storage, name)
    budget = n_finished(study) + n_trials
    grow_budget(study, budget)
    replace(entry, state=QUEUED, reason=None).store(study._storage, study._study_id)
    return describe(storage, name)


# --------------------------------------------------------------------------- a worker's choice
def room(q: QueuedStudy) -> int:
    """How many more trials of ``q`` may start now: its budget less its finished and running
    trials, and its ``max_parallel`` less its running ones (0 unless it is queued)."""
    if q.entry.state != QUEUED or q.left is None:
        return 0
    free = q.left - q.running
    if q.entry.max_parallel is not None:
        free = min(free, q.entry.max_parallel - q.running)
    return max(free, 0)


def share(q: QueuedStudy) -> float:
    """How full ``q`` is against its fair share of workers: its running trials over the most it
    may run at once (its ``max_parallel``, else its trials left: it can never use more)."""
    most = q.entry.max_parallel or q.left or 1
    return q.running / most


def choose(studies: list[QueuedStudy], skip: set[str] | frozenset[str] = frozenset()
           ) -> QueuedStudy | None:
    """The study a free worker serves next: the highest priority among those with room, then
    the one furthest below its fair share (:func:`share`), then the first submitted.
    ``skip``: studies this worker cannot serve (their objective does not import here)."""
    ready = [q for q in studies if room(q) > 0 and q.name not in skip]
    if not ready:
        return None
    return min(ready, key=lambda q: (-q.entry.priority, share(q), q.entry.submitted, q.name))


# --------------------------------------------------------------------------- what a person reads
def as_row(q: QueuedStudy, pool_size: int | None = None) -> dict[str, object]:
    """``q`` as plain data: what ``tuner queue`` prints and the API returns."""
    eta = q.eta_s(pool_size)
    return {
        "name": q.name, "state": q.state, "priority": q.entry.priority,
        "max_parallel": q.entry.max_parallel, "finished": q.finished, "budget": q.budget,
        "running": q.running, "workers": q.workers,
        "metric": q.metrics[0] if len(q.metrics) == 1 else q.metrics,
        "direction": q.directions[0].lower() if len(q.directions) == 1 else
        [d.lower() for d in q.directions],
        "best": q.best, "eta_s": None if eta is None else round(eta, 1),
        "reason": q.entry.reason,
    }


def queue_view(storage: BaseStorage) -> dict[str, object]:
    """Every submitted study and the pool's live workers, as plain data."""
    workers = pool_workers(storage, max_age_s=SEEN_S)
    rows = [as_row(q, len(workers) or None) for q in queued_studies(storage)]
    for row in rows:  # the live workers that cannot serve it, and why
        row["blocked"] = {w.id: w.blocked[row["name"]] for w in workers
                          if row["name"] in w.blocked}
    return {"studies": rows, "workers": [worker_row(w) for w in workers]}


def worker_row(w: PoolWorker) -> dict[str, object]:
    return {"id": w.id, "host": w.host, "pid": w.pid, "device": w.device, "study": w.study,
            "trial": w.trial, "blocked": dict(w.blocked),
            "last_heartbeat_s_ago": round(w.age_s(), 1)}


ACTIONS = ("pause", "unpause", "cancel", "resume")


def act(storage: BaseStorage, action: str, name: str, *, n_trials: int | None = None
        ) -> dict[str, object]:
    """Pause, unpause, cancel or resume (queue ``n_trials`` more of) study ``name``; the
    study's row afterwards (a cancel adds ``cancelled_trials``)."""
    if action == "pause":
        return as_row(pause(storage, name))
    if action == "unpause":
        return as_row(unpause(storage, name))
    if action == "cancel":
        q, stopped = cancel(storage, name)
        return as_row(q) | {"cancelled_trials": stopped}
    if action == "resume":
        if n_trials is None or n_trials < 1:
            raise ConfigError("resume needs n_trials >= 1: how many more trials to queue")
        return as_row(queue_more(storage, name, n_trials))
    raise ConfigError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
