"""Turn a ``[sampler]`` / ``[pruner]`` table into keyword arguments, checked against a signature."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tuner.core.errors import ConfigError, did_you_mean, warn_once

T = TypeVar("T")

# Arguments that take Python objects, not values a TOML file can hold.
_NOT_FROM_FILES = {"seed", "search_space", "independent_sampler", "constraints_func",
                   "wrapped_pruner", "gamma", "weights", "categorical_distance_func",
                   "source_trials", "restart_strategy", "popsize", "inc_popsize"}


@dataclass(frozen=True)
class OptionRule:
    """A number option: ``kind`` (int or float), finite, at least ``low`` (above it with
    ``low_open``); ``auto`` also allows the string ``"auto"``."""

    kind: type
    low: float
    auto: bool = False
    low_open: bool = False

    def check(self, value: Any) -> str | None:
        """Why ``value`` breaks the rule, or ``None``."""
        if self.auto and value == "auto":
            return None
        number = isinstance(value, int | float) and not isinstance(value, bool) \
            and math.isfinite(value)
        too_low = number and (value <= self.low if self.low_open else value < self.low)
        if not number or (self.kind is int and not isinstance(value, int)) or too_low:
            what = "a whole number" if self.kind is int else "a number"
            auto = ' or "auto"' if self.auto else ""
            return f"must be {what} {'>' if self.low_open else '>='} {self.low:g}{auto}, " \
                f"got {value!r}"
        return None


def check_rules(options: Mapping[str, Any], rules: Mapping[str, OptionRule], where: str) -> None:
    """Raise :class:`ConfigError` for the first option whose value breaks its rule."""
    for key, value in options.items():
        rule = rules.get(key)
        problem = rule.check(value) if rule is not None else None
        if problem:
            raise ConfigError(f"{where}: {key} {problem}")


def accepted_options(cls: Callable[..., Any], reserved: set[str] = frozenset()) -> list[str]:
    """Keyword arguments of ``cls`` a study file may set."""
    params = inspect.signature(cls).parameters.values()
    return sorted(
        p.name for p in params
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in _NOT_FROM_FILES and p.name not in reserved
    )


def build(
    cls: Callable[..., T],
    options: Mapping[str, Any],
    where: str,
    *,
    fixed: Mapping[str, Any] | None = None,
    extra: set[str] = frozenset(),
) -> T:
    """``cls(**fixed, **options)`` with unknown keys and rejected values as :class:`ConfigError`.

    ``extra`` names options the caller consumes itself (they are allowed and not passed on).
    Optuna's deprecation of an option is one warning naming the study file; of a ``fixed``
    argument (tuner's, e.g. tpe's ``gamma`` built from a number) it is tuner's to handle, and
    not said.
    """
    fixed = dict(fixed or {})
    valid = sorted({*accepted_options(cls, set(fixed)), *extra})
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(unknown)}{did_you_mean(unknown, valid)}; "
            f"valid: {', '.join(valid) or 'none'}"
        )
    kwargs = {k: v for k, v in options.items() if k not in extra}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FutureWarning)  # Optuna's deprecations
            built = cls(**fixed, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    for w in caught:  # one line naming the study file, not Optuna's source line and path
        if issubclass(w.category, FutureWarning) and any(f"`{k}`" in str(w.message) for k in fixed):
            continue
        if issubclass(w.category, FutureWarning):
            warn_once(f"{where}: {w.message}", key=f"{cls.__name__}: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return built
