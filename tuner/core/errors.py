"""One error tree for everything a user can get wrong.

The CLI catches :class:`TunerError` only, prints ``error: <message>`` and exits with status 2.
Anything else is a bug and exits 1 (with a traceback under ``--debug``).
"""

from __future__ import annotations


class TunerError(Exception):
    """Root of every error caused by input: a study file, a name, a URL, a checkpoint."""


class ConfigError(TunerError):
    """A study file or a command-line value breaks a rule (the message names file, key, value)."""


class StorageError(TunerError):
    """A storage URL is malformed, unreachable or incompatible (the password is masked)."""


class StudyNotFoundError(TunerError):
    """No study of that name exists in the storage."""


class ObjectiveError(TunerError):
    """An objective cannot be imported or rejects its settings."""


class ToolkitError(ObjectiveError):
    """An objective called the toolkit (``ctx.init``, ``ctx.check_init``, ``ctx.report`` …) with
    a value it cannot use; the message names the call and the value. Raised inside a trial, it
    fails that trial (stored as its reason) and the study goes on."""


class Diverged(Exception):
    """Training diverged: a training or validation loss became NaN or infinite (usually: the
    learning rate is too large). Raised by :func:`tuner.nn.training.train` (also importable
    from there); a trial that raises it is pruned with its message as the reason, never failed.
    Here, not in ``nn``, so the loop that runs trials can catch it without importing torch."""

    def __init__(self, epoch: int, loss: float, which: str = "training",
                 detail: str = "") -> None:
        super().__init__(f"training diverged in epoch {epoch} ({which} loss={loss:.4g}{detail})")
        self.epoch = epoch
        self.loss = loss


class CheckpointError(TunerError):
    """A checkpoint is missing, corrupt, not made by tuner, or does not fit the model."""


_said: set[str] = set()


def warn_once(message: str, key: str | None = None) -> None:
    """Log a warning about the user's input once per process (a study file is validated several
    times per command: load, store, run); ``key`` (default: the message) says what counts as
    the same warning."""
    import logging

    key = message if key is None else key
    if key not in _said:
        _said.add(key)
        logging.getLogger("tuner").warning("%s", message)


def did_you_mean(names: object, valid: object) -> str:
    """``"; did you mean 'n_trials'?"`` for the first of ``names`` (one name or several) that
    is close to one of ``valid`` (a typo), else ``""``: appended to an "unknown …" message."""
    import difflib

    wrong = [names] if isinstance(names, str) else list(names)  # type: ignore[call-overload]
    choices = [str(v) for v in valid]  # type: ignore[attr-defined]
    for name in wrong:
        if not isinstance(name, str) or not name:
            continue
        for close in difflib.get_close_matches(name, choices, n=3, cutoff=0.6):
            # a near-miss spelling, or the name inside a longer one (xavier -> xavier_normal);
            # not merely a few shared letters (bayes -> cmaes)
            ratio = difflib.SequenceMatcher(None, name, close).ratio()
            if ratio >= 0.8 or name in close or close in name:
                return f"; did you mean {close!r}?"
    return ""
