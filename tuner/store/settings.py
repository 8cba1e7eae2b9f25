"""The storage's settings from the environment: heartbeats and the retry window's unit.

Kept apart from :mod:`tuner.store.heartbeats` (which builds on Optuna) so the light reader of
stored studies (:mod:`tuner.store.snapshot`) judges a running trial by the same grace period.
"""

from __future__ import annotations

import os
from typing import Any

from tuner.core.errors import ConfigError

HEARTBEAT_INTERVAL_ENV = "TUNER_HEARTBEAT_INTERVAL"
HEARTBEAT_GRACE_ENV = "TUNER_HEARTBEAT_GRACE"
DEFAULT_HEARTBEAT_INTERVAL_S = 10
DEFAULT_GRACE_S = 60


def env_seconds(name: str, default: float, *, integer: bool = True) -> Any:
    """``$name`` as seconds (``default`` when unset or empty); a bad value is a ConfigError
    naming the variable."""
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
    interval = env_seconds(HEARTBEAT_INTERVAL_ENV, DEFAULT_HEARTBEAT_INTERVAL_S)
    grace = env_seconds(HEARTBEAT_GRACE_ENV, max(DEFAULT_GRACE_S, 2 * interval))
    if grace <= interval:
        raise ConfigError(f"${HEARTBEAT_GRACE_ENV} ({grace}) must be longer than "
                          f"${HEARTBEAT_INTERVAL_ENV} ({interval})")
    return interval, grace
