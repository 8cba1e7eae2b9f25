"""Tasks in spawned worker processes, stopped at once when the caller is stopped.

``run_all(fn, tasks, jobs, on_result)`` calls ``fn(*task)`` for every task in ``jobs`` spawned
processes and hands each result to ``on_result`` as it comes (``tuner compare``'s runs).

A ``ProcessPoolExecutor`` left by an exception waits for every task submitted: a Ctrl-C or
SIGTERM to a 200-seed comparison went on for its remaining minutes. Here an exception (Ctrl-C,
SIGTERM, which the CLI turns into Ctrl-C, a failed task) ends the running tasks and drops the
rest; the tasks hold nothing to clean up.

The workers start with Ctrl-C ignored, inherited from this process while they are spawned: a
terminal sends SIGINT to its whole process group, and a worker caught between tasks or still
importing what a task needs printed a traceback of its own before it was ended. This process
handles Ctrl-C and ends them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any


def run_all(fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], jobs: int,
            on_result: Callable[[Any], None]) -> None:
    """``fn(*task)`` for each of ``tasks`` in ``jobs`` processes; ``on_result`` gets each result
    in the order they finish (see the module doc)."""
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
    try:
        with _ctrl_c_ignored():  # submit() spawns the workers
            futures = [pool.submit(fn, *task) for task in tasks]
        for future in as_completed(futures):
            on_result(future.result())
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()


@contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """SIGINT ignored in this process, and so in the processes it starts, for the block's
    (short) length; only the main thread may set a signal's handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Drop the tasks not started and end the running ones."""
    workers = list((pool._processes or {}).values())  # no public way to end running tasks
    pool.shutdown(wait=False, cancel_futures=True)
    for w in workers:
        w.terminate()
    for w in workers:
        w.join()
