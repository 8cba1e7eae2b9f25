"""``tuner worker --pool``: a worker that serves the queue, one trial (or one pack) at a time.

It chooses a study (:func:`tuner.service.queue.choose`) and runs that study's own loop, which
before each claim takes the study's claim lock (:mod:`tuner.run.claim`), reads the queue's
counts again and goes on only while the study is still the queue's choice; the lock is let go
once the trial exists. Every claimer of a study holds its lock, so its budget and its
``max_parallel`` are exact with any mix of pool workers and ``tuner worker NAME`` processes; the
choice between studies is made without a lock across studies (two workers may both read the
same counts and choose alike, which the next claim corrects), so workers on different studies
claim at the same time. Heartbeats and retries of dead workers' trials are
the study loop's own (:func:`tuner.run.loop.run_trials`).

A worker stays warm: torch, each study's objective and its bound config (its data loaded) are
loaded once per process and kept (:meth:`tuner.run.config.StudyConfig.bind` keeps its result per
process). ``--slots N`` runs N such workers as child processes, sharing the machine's cores and
the ``--devices`` among them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import TunerError
from tuner.core.keys import WORKER
from tuner.run.claim import ClaimLock, claim_lock
from tuner.run.config import StudyConfig
from tuner.run.loop import fail_stale_trials, run_trials
from tuner.run.outcome import Deadline, DivergedError, ObjectiveFailed
from tuner.run.workers import cpu_cores, set_torch_threads, worker_config
from tuner.service.queue import choose, room
from tuner.store.queue import BEAT_S, PAUSED, PoolWorker, QueueEntry, beat, forget, queued_studies
from tuner.store.rdb import uncached
from tuner.store.storage import open_storage, resolve_url
from tuner.store.studies import load_existing

log = logging.getLogger("tuner")

POLL_S = 1.0  # how often an idle worker reads the queue again
STINT_S = 10.0  # a worker chooses its study again after this long on one
BUSY_S = 0.05  # how long to wait when every study with room was being claimed by others
BUSY_TRIES = 3  # waits for a study of a higher priority being claimed, before a lower one
STALE_CHECK_S = 5.0  # how often an idle worker looks for dead workers' trials


@dataclass
class PoolResult:
    """What one pool worker did: trials per study, and why it stopped."""

    trials: dict[str, int] = field(default_factory=dict)
    stopped_by: str | None = None
    interrupted: bool = False

    @property
    def total(self) -> int:
        return sum(self.trials.values())


class TrialLines:
    """A pool worker's progress: one line per trial as it ends (its study named; the best so
    far is `tuner queue`'s, not read again per trial)."""

    wants_best = False

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.study = ""

    def start(self, study: optuna.Study, total: int | None, timeout: float | None) -> None:
        self.study = study.study_name

    def retotal(self, total: int | None) -> None:
        pass

    def trial_finished(self, trial: FrozenTrial, best: float | None) -> None:
        value = ("" if trial.values is None else
                 " " + ", ".join(f"{v:.4g}" for v in trial.values))
        took = trial.duration.total_seconds() if trial.duration else 0.0
        best_text = "" if best is None else f" · best {best:.4g}"
        self.say(f"{self.study} trial {trial.number}: {trial.state.name.lower()}{value} "
                 f"({took:.1f}s){best_text}")

    def stop(self) -> None:
        pass


def worker_id(slot: int | None = None) -> str:
    """This process's name in the pool: ``host:pid`` (``/slot`` for a ``--slots`` child)."""
    own = f"{socket.gethostname()}:{os.getpid()}"
    return own if slot is None else f"{own}/{slot}"


def serve_queue(
    storage_url: str | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
    name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    until_empty: bool = False,
    say: Callable[[str], None] | None = None,
) -> PoolResult:
    """Serve the queue of the storage at ``storage_url`` until stopped (Ctrl-C, SIGTERM),
    ``n_trials`` trials of this worker, ``timeout`` seconds, or, with ``until_empty``, until
    no queued study has a trial to start (and none of this worker's is running).

    ``device`` overrides each study's ``[objective] device`` for this worker; ``threads`` its
    torch threads; ``name`` its id in the pool (default :func:`worker_id`)."""
    if threads is not None:
        set_torch_threads(threads)
    url = resolve_url(storage_url)
    storage = open_storage(url)
    me = PoolWorker(id=name or worker_id(), host=socket.gethostname(), pid=os.getpid(),
                    device=device, started=time.time(), seen=time.time())
    result = PoolResult()
    configs: dict[str, StudyConfig] = {}  # study -> its stored config, bound (the budget it
    # holds may be old: the loop reads the stored one at each claim)
    refused: dict[str, str] = {}  # study -> why this worker cannot serve it
    state: dict[str, Any] = {"study": None, "trial": None, "blocked": refused}
    heart = _Heartbeat(url, me, state)
    heart.start()
    started = time.monotonic()
    recheck_at = started
    busy: set[str] = set()  # studies whose claim lock another worker held just now
    waited = 0  # waits in a row for a study of a higher priority being claimed
    progress = TrialLines(say or log.info)
    try:
        while True:
            if n_trials is not None and result.total >= n_trials:
                result.stopped_by = "n_trials"
                break
            if timeout is not None and time.monotonic() - started >= timeout:
                result.stopped_by = "timeout"
                break
            studies = queued_studies(storage, counts_only=True)
            chosen = choose(studies, skip=set(refused) | busy)
            higher = [q for q in studies if q.name in busy and room(q) > 0
                      and (chosen is None or q.entry.priority > chosen.entry.priority)]
            if higher and waited < BUSY_TRIES:  # one of a higher priority is being claimed:
                waited += 1  # wait for it a little (32 workers waiting on it for good starved
                busy.clear()  # every lower priority: 3 of 8 studies ran)
                time.sleep(BUSY_S)
                continue
            waited = 0
            if chosen is None and time.monotonic() >= recheck_at:
                # a budget covered only by running trials, one of which may be a dead worker's:
                # the study's own loop would fail it (and queue its retry) when claiming
                recheck_at = time.monotonic() + STALE_CHECK_S
                if _fail_stale(storage, url, [q for q in studies if q.entry.state == "queued"
                                              and q.left and q.running >= q.left]):
                    continue
            if chosen is None and busy:  # every study with room is being claimed: read again
                busy.clear()
                time.sleep(BUSY_S)
                continue
            if chosen is None:
                if until_empty and not any(room(q) or q.running for q in studies
                                           if q.name not in refused):
                    result.stopped_by = "empty"
                    break
                time.sleep(POLL_S)
                continue
            if chosen.name not in configs:  # load it (its objective, its data) once
                _load(storage, chosen.name, device, configs, refused)
                continue
            lock = claim_lock(url, storage, chosen.name)
            if not lock.try_acquire():  # another worker claims it now: look at the others
                busy.add(chosen.name)
                continue
            busy.clear()
            state["study"] = chosen.name
            left_s = None if timeout is None else timeout - (time.monotonic() - started)
            ran = _stint(storage, url, chosen.name, configs[chosen.name], Held(lock), refused,
                         me, state,
                         progress, result,
                         n_trials=None if n_trials is None else n_trials - result.total,
                         timeout=left_s)
            state["study"] = state["trial"] = None
            if result.interrupted:
                result.stopped_by = "interrupted"
                break
            if ran:
                result.trials[chosen.name] = result.trials.get(chosen.name, 0) + ran
    except KeyboardInterrupt:
        result.interrupted = True
        result.stopped_by = "interrupted"
    finally:
        heart.stop()
        try:
            forget(storage, me.id)
        except Exception:  # a storage gone away: the record ages out
            log.debug("could not mark pool worker %s gone", me.id, exc_info=True)
    return result


def _fail_stale(storage: Any, url: str, covered: list[Any]) -> bool:
    """Fail dead workers' trials of the ``covered`` studies, each under its claim lock (their
    retries are queued, as in the study's loop); whether any trial was failed."""
    failed = False
    for q in covered:
        lock = claim_lock(url, storage, q.name)
        lock.acquire()
        try:
            study = load_existing(q.name, storage, any_objectives=True)
            before = sum(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))
            fail_stale_trials(study)
            after = sum(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))
            failed |= after < before
        finally:
            lock.release()
    return failed


def _load(storage: object, name: str, device: str | None,
          configs: dict[str, StudyConfig], refused: dict[str, str]) -> None:
    """Load and bind study ``name``'s stored config for this worker (imports its objective,
    loads its data), or note why this worker cannot serve it."""
    try:
        study = load_existing(name, storage, any_objectives=True)  # type: ignore[arg-type]
        config = worker_config(study, device).bind()
    except TunerError as e:
        refused[name] = str(e)
        log.warning("this worker cannot serve study %r, and leaves it to others: %s", name, e)
        return
    configs[name] = config


class Held:
    """A claim lock handed to the study's loop already taken (:meth:`try_acquire`): its first
    ``acquire`` keeps it, later ones take it again."""

    def __init__(self, lock: ClaimLock) -> None:
        self.lock, self.held = lock, True

    def acquire(self) -> None:
        if not self.held:
            self.lock.acquire()
        self.held = True

    def release(self) -> None:
        self.lock.release()
        self.held = False


def _stint(storage: Any, url: str, name: str, config: StudyConfig, lock: Held,
           refused: dict[str, str], me: PoolWorker, state: dict[str, Any],
           progress: TrialLines, result: PoolResult, *, n_trials: int | None,
           timeout: float | None) -> int:
    """Trials of study ``name`` in one loop (:func:`tuner.run.loop.run_trials`: its sampler,
    context and reads made once) for as long as it may: before each claim, under the study's
    claim lock, the queue's counts are read again and the loop stops (``switch``) when this
    study has no room left (exact: every claimer of it holds that lock) or after
    :data:`STINT_S` seconds, when the worker chooses again: priorities and fair shares apply
    at each choice. (Leaving a study whenever one of a higher priority had a free slot made
    every worker rush at that slot: 10% of the ideal throughput with 16 workers.)
    Returns how many trials it ran."""
    study = load_existing(name, storage, any_objectives=True)
    announced: list[int] = []

    until = time.monotonic() + STINT_S

    def still_chosen() -> bool:  # room here, and the stint not over
        if time.monotonic() >= until:
            return False
        this = next((q for q in queued_studies(storage, counts_only=True) if q.name == name),
                    None)
        return this is not None and room(this) > 0

    def announce(trial_id: int) -> None:
        announced.append(trial_id)
        study._storage.set_trial_user_attr(trial_id, WORKER, me.id)
        flush = getattr(uncached(study._storage), "flush", None)
        if flush is not None:  # `tuner queue` names the worker now, not at the next flush
            flush(trial_id)
        state["trial"] = study._storage.get_trial(trial_id).number

    try:
        ran = run_trials(study, config, budget=config.n_trials, follow_stored_budget=True,
                         lock=lock, n_trials=n_trials, timeout=timeout, wait_for_others=False,
                         may_claim=still_chosen, deadline=Deadline.of(study, config.timeout),
                         seed_salt=abs(hash(me.id)) % 2**31, progress=progress,
                         announce=announce)
    except DivergedError:  # every trial of this stint diverged: pruned and stored; go on
        return len(announced)
    except ObjectiveFailed as e:  # failing in a row, study-wide: stop serving it
        _pause(storage, name, str(e))
        return len(announced)
    finally:
        lock.release()
    if ran.interrupted:
        result.interrupted = True
    if ran.stopped_by == "deadline":
        _pause(storage, name, "its [study] timeout has passed")
    return len(announced)


def _pause(storage: object, name: str, why: str) -> None:
    study = load_existing(name, storage, any_objectives=True)  # type: ignore[arg-type]
    entry = QueueEntry.of(study.user_attrs)
    if entry is not None:
        replace(entry, state=PAUSED, reason=why).store(study._storage, study._study_id)
    log.warning("study %r paused: %s; queue it again with: tuner unpause %s", name, why, name)


class _Heartbeat(threading.Thread):
    """Stores the worker's heartbeat every :data:`BEAT_S` seconds, on its own connection."""

    def __init__(self, url: str, me: PoolWorker, state: dict[str, object]) -> None:
        super().__init__(daemon=True, name="tuner-pool-heartbeat")
        self.url, self.me, self.state = url, me, state
        self._stop_event = threading.Event()

    def run(self) -> None:
        storage = None
        while True:
            try:
                storage = storage or open_storage(self.url)
                beat(storage, replace(self.me, study=self.state["study"],
                                      trial=self.state["trial"],
                                      blocked=dict(self.state["blocked"])))
            except Exception:  # the next beat tries again; the trial loop says what is wrong
                log.debug("pool heartbeat failed", exc_info=True)
            if self._stop_event.wait(BEAT_S):
                return

    def stop(self) -> None:
        self._stop_event.set()


# --------------------------------------------------------------------------- --slots N
def slot_commands(slots: int, devices: list[str] | None, threads: int | None,
                  extra: list[str]) -> list[list[str]]:
    """The command line of each of ``slots`` pool workers on this machine: the devices dealt
    out in turn, the cores split among them."""
    share = threads or max(1, cpu_cores() // slots)
    out = []
    for i in range(slots):
        cmd = [sys.executable, "-m", "tuner", "worker", "--pool", "--threads", str(share),
               "--slot", str(i)]
        if devices:
            cmd += ["--device", devices[i % len(devices)]]
        out.append(cmd + extra)
    return out


def run_slots(commands: list[list[str]], storage_url: str) -> int:
    """Run the pool workers ``commands`` as child processes until they all end, or until
    Ctrl-C/SIGTERM, which is passed on to each (their running trials are marked failed and
    retried elsewhere). The storage URL reaches them in the environment, not on a command
    line that ``ps`` shows. Returns the worst exit status."""
    children = start_slots(commands, storage_url)
    try:
        return max((c.wait() for c in children), default=0)
    except KeyboardInterrupt:
        stop_children(children)
        raise


def start_slots(commands: list[list[str]], storage_url: str) -> list[subprocess.Popen]:
    """Start the pool workers ``commands``, the storage URL in their environment (a password
    in it never on a command line that ``ps`` shows)."""
    env = {**os.environ, "TUNER_STORAGE": storage_url}
    return [subprocess.Popen(cmd, env=env) for cmd in commands]


def stop_children(children: list[subprocess.Popen], grace_s: float = 30.0) -> None:
    """SIGTERM each child still running, then wait ``grace_s`` for them (then SIGKILL)."""
    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for c in children:
        try:
            c.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()
