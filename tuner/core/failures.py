"""How a failed trial is worded: one function for every loop (sequential, worker, packed).

A trial that fails stores ``fail_reason``: the exception's type and message on one line and,
when the failure came from the user's own code, the innermost frame of it
(``myobj.py:42 in forward``), so ``tuner show`` and the report point at the line to fix.
``--debug`` also logs the whole traceback.
"""

from __future__ import annotations

import logging
import sys
import sysconfig
import traceback
from pathlib import Path

MAX_REASON = 1000
log = logging.getLogger("tuner")

_TUNER_DIR = Path(__file__).resolve().parents[1]  # the tuner package
_LIBRARY_DIRS = tuple(
    {Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
     if (p := sysconfig.get_paths().get(key))}
    | {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve() / "lib"}
)


def one_line(text: str) -> str:
    """``text`` with its line breaks as `` / ``: reasons end up in one-line messages."""
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def _is_user_file(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen …>, <string>
        return False
    path = Path(filename).resolve()
    if path.is_relative_to(_TUNER_DIR):
        return False
    return not any(path.is_relative_to(d) for d in _LIBRARY_DIRS)


def user_frame(error: BaseException) -> str | None:
    """``file:line in function`` of the innermost frame of ``error``'s traceback that is the
    user's code (neither tuner nor an installed library), or ``None``; paths under the working
    directory are shown relative to it."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if _is_user_file(frame.filename):
            path = Path(frame.filename).resolve()
            shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
            return f"{shown}:{frame.lineno} in {frame.name}"
    return None


def fail_reason(error: BaseException) -> str:
    """The stored reason of a trial that failed with ``error`` (see the module doc)."""
    text = one_line(f"{type(error).__name__}: {error}")
    where = user_frame(error)
    if where is not None:
        text = f"{text} (at {where})"
    return text[:MAX_REASON]


def log_failure(trial_number: int, error: BaseException) -> None:
    """The full traceback of a failed trial, for ``--debug`` (the ``tuner`` logger at DEBUG)."""
    if log.isEnabledFor(logging.DEBUG):
        text = "".join(traceback.format_exception(error)).rstrip()
        log.debug("trial %d failed:\n%s", trial_number, text)
