"""``tuner run --jobs N``: N local worker processes on one study.

The parent creates (or joins) the study, starts N ``tuner worker`` processes, draws the
progress of the whole study from the storage, and relays the workers' warnings and errors.
Processes, not threads: training holds the GIL between torch calls. Each worker gets at most
``cores // N`` torch threads (:func:`threads_per_worker`) so N workers do not oversubscribe the
machine, and its own sampler seed. The storage URL reaches the workers in their environment,
never on a command line (where ``ps`` would show a password).

Ctrl-C or SIGTERM to the parent sends one SIGTERM to every worker; each marks its running
trial failed and exits 130, and so does the parent. The workers run in their own session so
that a terminal's Ctrl-C reaches them only through the parent, once. A worker still starting
dies of the SIGTERM (it has no trial yet); one that does not stop within ``STOP_GRACE_S`` is
killed, and the parent marks the trials it announced (:func:`announce_trial`) failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO

import optuna
import torch

from tuner.core.errors import TunerError
from tuner.core.keys import stored_budget
from tuner.nn.device import SHARERS_ENV, worker_device
from tuner.nn.training import CPU_THREADS_ENV
from tuner.run.config import StudyConfig, config_on_device
from tuner.run.loop import grid_exhausted
from tuner.run.outcome import (
    Deadline,
    ProgressHook,
    RunResult,
    best_value,
    fail_running,
    finished_by,
)
from tuner.run.study import prepare_and_warm_start
from tuner.run.workers._fork import Entry, ForkedWorker, fork_is_safe
from tuner.run.workers._worker import cpu_cores
from tuner.store.rdb import close_connections
from tuner.store.storage import ENV_VAR, resolve_url
from tuner.store.studies import n_finished

STOP_GRACE_S = 30.0  # how long stopped workers get to mark their trials failed
REPORT_S = 0.5  # how often the parent reads the study for its progress lines
EXIT_POLL_S = 0.05  # how often it looks whether the workers are done
_DEBUG_HINT = " (run with --debug for the traceback)"
_BEGAN = "trial began: "  # a worker's line to the parent: the storage id of its new trial
_KILLED = (-signal.SIGTERM, -signal.SIGKILL)  # by _stop: still starting, or stuck


class WorkerError(TunerError):
    """A worker process stopped on bad input (its own ``error:`` line is the message)."""


def announce_trial(trial_id: int) -> None:
    """Tell the parent (``tuner worker --announce-trials``) that this worker began the trial
    with storage id ``trial_id``, so the parent can fail it if it has to kill the worker."""
    print(f"{_BEGAN}{trial_id}", file=sys.stderr, flush=True)


def threads_per_worker(jobs: int) -> int:
    """Torch threads for each of ``jobs`` workers on this machine: the training's own setting
    (``$TUNER_CPU_THREADS``, default 1), capped at ``cores // jobs`` (at least 1)."""
    wanted = int(os.environ.get(CPU_THREADS_ENV) or 1)
    return max(1, min(wanted, cpu_cores() // jobs))


class _Worker:
    """One worker process: ``tuner worker ARGS``, forked from this process by ``entry`` (see
    :mod:`tuner.run.workers._fork`) or, without one, a new interpreter. Its stderr is relayed
    once :meth:`start_relay` runs (after every fork: a fork must not copy a running thread)."""

    def __init__(self, index: int, args: list[str], env: dict[str, str],
                 entry: Entry | None, close_fds: list[int]) -> None:
        self.index = index
        self.errors: list[str] = []
        self.trial_ids: list[int] = []  # announced by the worker, in order
        self.proc: subprocess.Popen[str] | ForkedWorker
        if entry is not None:
            self.proc = ForkedWorker(entry, args, env, close_fds)
        else:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tuner", *args], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                start_new_session=True,
            )
        assert self.proc.stderr is not None
        self.relay = threading.Thread(target=self._relay, args=(self.proc.stderr,), daemon=True)

    def start_relay(self) -> None:
        self.relay.start()

    def _relay(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if line.startswith(_BEGAN):
                self.trial_ids.append(int(line[len(_BEGAN):]))
            elif line.startswith("error: "):
                self.errors.append(line[len("error: "):])
            elif line and not line.startswith("interrupted"):
                print(f"worker {self.index}: {line}", file=sys.stderr, flush=True)


def _cuda_in_use() -> bool:
    """Whether this process has, or could start, CUDA (which a forked child cannot use)."""
    return torch.cuda.is_initialized() or torch.cuda.is_available()


def _device(index: int, config: StudyConfig, device: str | None) -> list[str]:
    """``--device`` for worker ``index``: the run's own device if one was asked for, else the
    study's (``auto`` when its ``[objective]`` names none), spread as ``cuda:N`` over the GPUs
    when this machine has several (:func:`tuner.nn.device.worker_device`); nothing when the
    study's stored device applies as it is (one GPU or none)."""
    requested = device or config.objective_settings.get("device") or "auto"
    if torch.cuda.device_count() < 2:
        return ["--device", device] if device else []
    return ["--device", worker_device(index, requested)]


def _sharers(devices: list[list[str]]) -> list[int]:
    """For each worker, how many of the workers (itself included) train on its device: its
    batch-size fit plans its share of that device's memory (:data:`SHARERS_ENV`)."""
    keys = [d[-1] if d else "" for d in devices]  # "": the study's own device, the same for all
    return [keys.count(k) for k in keys]


def run_jobs(
    config: StudyConfig,
    storage_url: str | None = None,
    *,
    jobs: int,
    timeout: float | None = None,
    progress: ProgressHook | None = None,
    device: str | None = None,
    fork_entry: Entry | None = None,
    warm_start_storage: str | None = None,
) -> RunResult:
    """Run ``config`` with ``jobs`` local worker processes until its study has its budget of
    finished trials (exactly: see :mod:`tuner.run.claim`), or ``timeout`` seconds (this run's
    own; without it, the workers keep to the study's stored ``[study] timeout``). ``device``
    is where these workers train (the study keeps its own setting). ``fork_entry`` (the
    command line's main) lets the workers be forked from this process where that is safe
    (:func:`~tuner.run.workers._fork.fork_is_safe`), rather than started afresh."""
    url = resolve_url(storage_url)
    config_on_device(config, device).bind()  # bad data, device …: nothing is written
    study = prepare_and_warm_start(config, url, warm_start_storage)
    result = RunResult(study, deadline=None if timeout else Deadline.of(study, config.timeout))
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}  # warm too
    remaining = config.n_trials - n_finished(study)
    if remaining <= 0 or (result.deadline is not None and result.deadline.passed()):
        result.stopped_by = "budget" if remaining <= 0 else "deadline"
        return result
    started = time.monotonic()
    threads = threads_per_worker(jobs)
    env = {**os.environ, ENV_VAR: url}
    args = ["worker", config.name, "--quiet", "--announce-trials", "--threads", str(threads),
            *(["--timeout", str(timeout)] if timeout else [])]
    devices = [_device(i, config, device) for i in range(jobs)]
    sharers = _sharers(devices)
    entry = fork_entry if fork_entry is not None and fork_is_safe(_cuda_in_use()) else None
    if entry is not None:
        close_connections(study._storage)  # a child must not share the parent's connections
    workers: list[_Worker] = []
    try:
        for i in range(jobs):
            workers.append(_Worker(i + 1, [*args, "--salt", str(i + 1), *devices[i]],
                                   {**env, SHARERS_ENV: str(sharers[i])}, entry,
                                   [w.proc.stderr.fileno() for w in workers]))
        for w in workers:
            w.start_relay()
        if progress is not None:
            progress.start(study, remaining,
                           timeout if result.deadline is None else result.deadline.left_s())
        reported = time.monotonic()
        while any(w.proc.poll() is None for w in workers):
            time.sleep(EXIT_POLL_S)  # a worker's exit is seen at once, the trials every REPORT_S
            if time.monotonic() - reported >= REPORT_S:
                _report_new(study, seen, result, progress)
                reported = time.monotonic()
    except KeyboardInterrupt:
        result.interrupted = True
        _stop(workers)
    finally:
        for w in workers:
            w.relay.join(timeout=5)
        if result.interrupted:
            _fail_killed_workers_trials(study, workers, config.pack)
        if progress is not None:
            _report_new(study, seen, result, progress)
            progress.stop()
    result.elapsed_s = time.monotonic() - started
    if any(w.proc.returncode == 130 for w in workers):
        result.interrupted = True
    result.stopped_by = _why_stopped(study, config, result, timeout)
    _raise_for_workers(workers, result.interrupted)
    return result


def _why_stopped(study: optuna.Study, config: StudyConfig, result: RunResult,
                 timeout: float | None) -> str:
    """Why the workers stopped, as :mod:`tuner.run.loop` words it for one process."""
    if result.interrupted:
        return "interrupted"
    if n_finished(study) >= (stored_budget(study.user_attrs) or config.n_trials):
        return "budget"
    if grid_exhausted(study):
        return "grid"
    if result.deadline is not None and result.deadline.passed():
        return "deadline"
    return "timeout" if timeout is not None and result.elapsed_s >= timeout else "failures"


def _stop(workers: list[_Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # its trial goes stale and is retried later
            w.proc.kill()
            w.proc.wait()


def _fail_killed_workers_trials(study: optuna.Study, workers: list[_Worker], pack: int) -> None:
    """Mark failed what workers killed by a signal left RUNNING (a worker's last ``pack``
    announced trials: the earlier ones are finished)."""
    for w in workers:
        if w.proc.returncode is not None and w.proc.returncode < 0:
            fail_running(study, dict(enumerate(w.trial_ids[-pack:])), "interrupted")


def _report_new(study: optuna.Study, seen: set[int], result: RunResult,
                progress: ProgressHook | None) -> None:
    """Tell ``progress`` of the trials that finished since the last read, in the order they
    finished, each with the best of the trials finished by then (not by this read)."""
    trials = study.get_trials(deepcopy=False)
    new = [t for t in trials if t.state.is_finished() and t.number not in seen]
    new.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete or 0, t.number))
    for trial in new:
        seen.add(trial.number)
        result.trial_numbers.append(trial.number)
        if progress is not None:
            progress.trial_finished(trial, best_value(study, finished_by(trials, trial)))


def _raise_for_workers(workers: list[_Worker], interrupted: bool) -> None:
    """Raise for the first worker that failed; after an interrupt, a worker stopped by
    :func:`_stop` (130, or killed by its SIGTERM or SIGKILL) did not fail."""
    for w in workers:
        code = w.proc.returncode
        if code in (0, 130) or (interrupted and code in _KILLED):
            continue
        message = w.errors[-1] if w.errors else f"exited with status {code}"
        if code == 2:
            raise WorkerError(f"worker {w.index}: {message}")
        message = message.removeprefix("unexpected failure: ").removesuffix(_DEBUG_HINT)
        raise RuntimeError(f"worker {w.index} failed (exit status {code}): {message}")
