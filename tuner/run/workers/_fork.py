"""Start ``tuner worker`` processes by forking a parent that has already imported them.

A fresh ``python -m tuner worker`` pays the whole start-up again (Python, Typer, Optuna,
torch, the objective's imports and its data: about 4 s of a 2-core machine's time, per worker,
while the parent has done it all already). A forked child starts with all of that in memory
and runs the same command line, :func:`tuner.cli.main`, in the same way: its own session,
stdin and stdout on ``/dev/null``, stderr to a pipe the parent reads.

Forking is safe only in some states of the parent, and :func:`fork_is_safe` checks them:
Linux; torch kept on one thread since before its first use (:func:`single_threaded_parent`:
no OpenMP pool that a child could wait on forever); no other Python thread (no lock held by a
thread that does not exist in the child); no CUDA (its runtime does not survive a fork).
No storage password on the parent's command line either: a forked child shows that command
line in ``ps`` as its own, where a new interpreter gets the URL in its environment. Anywhere
else, or with ``$TUNER_WORKER_START=spawn``, workers are new interpreters as before.
The parent closes its storage connections before forking, so no child shares one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO

from tuner.core.errors import ConfigError
from tuner.store.credentials import mask_url

Entry = Callable[[list[str]], int]  # a command line's main: tuner.cli.main
START_ENV = "TUNER_WORKER_START"  # "fork" (where safe, the default) or "spawn"


def start_method() -> str:
    """``fork`` or ``spawn``, as ``$TUNER_WORKER_START`` asks (a bad value is refused)."""
    value = (os.environ.get(START_ENV) or "fork").strip().lower()
    if value not in ("fork", "spawn"):
        raise ConfigError(f"${START_ENV} must be 'fork' or 'spawn', got {value!r}")
    return value


_pinned = False  # single_threaded_parent() ran in this process


def single_threaded_parent() -> None:
    """Keep torch in this process on one thread from now on; call it before any torch work.
    A parent of workers trains nothing, and the OpenMP pool that a second torch thread starts
    would make forking unsafe: a child's first parallel region would wait forever on pool
    threads it does not have. (numpy's and scipy's OpenBLAS pools are fork-safe: they stop
    and restart around a fork.)"""
    global _pinned
    import torch

    start_method()  # a bad $TUNER_WORKER_START fails here, before the study is touched
    torch.set_num_threads(1)
    _pinned = True


def fork_is_safe(cuda_in_use: bool) -> bool:
    """Whether workers may be forked from this process now (see the module's docstring)."""
    import torch

    return (start_method() == "fork" and sys.platform.startswith("linux") and hasattr(os, "fork")
            and _pinned and torch.get_num_threads() == 1 and threading.active_count() == 1
            and not cuda_in_use and not any(mask_url(arg) != arg for arg in sys.argv))


class ForkedWorker:
    """A forked child running ``entry(argv)`` (the command line's main, given by the CLI: the
    run layer does not import it) with ``env`` as its environment, and closing ``close_fds``
    (the parent's pipes to earlier children): the part of :class:`subprocess.Popen` that
    :mod:`tuner.run.workers._jobs` uses."""

    def __init__(self, entry: Entry, argv: list[str], env: dict[str, str],
                 close_fds: list[int]) -> None:
        read_fd, write_fd = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write the parent's unwritten output again
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            _child(entry, argv, env, write_fd, [read_fd, *close_fds])
        os.close(write_fd)
        self.pid = pid
        self.returncode: int | None = None
        self.stderr: IO[str] = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(f"worker pid {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _child(entry: Entry, argv: list[str], env: dict[str, str], write_fd: int,
           close_fds: list[int]) -> None:
    code = 1
    try:
        os.setsid()  # a terminal's Ctrl-C reaches the workers only through the parent
        for fd in close_fds:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(write_fd, 2)
        os.close(devnull)
        os.close(write_fd)
        os.environ.clear()
        os.environ.update(env)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = entry(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # a child must never return into the parent's stack
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
