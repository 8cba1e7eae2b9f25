"""Search spaces: parameters parsed from a study file's ``[space]`` table.

Each entry of ``[space]`` is one of

* a scalar (``momentum = 0.9``)                     -> fixed, never searched
* a list (``init = ["zeros", "xavier_uniform"]``)   -> categorical
* a table (``lr = {low = 1e-4, high = 0.1}``)       -> a range: float or int (``log``, ``step``),
  or ``pow2`` for powers of two (searched as the integer exponent, so model-based samplers see
  the order; the trial's user attribute ``<name>`` holds the real value).

An objective may declare :class:`ParamRule` s for the names it understands (valid range, registry
of choices, default); a name without a rule is accepted as is (for pluggable objectives).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from tuner.core.errors import ConfigError, did_you_mean
from tuner.core.keys import LOG2_SUFFIX
from tuner.core.registry import Registry

KINDS = ("fixed", "float", "int", "pow2", "categorical")
RANGE_KEYS = {"low", "high", "log", "step", "type"}
Scalar = bool | int | float | str


@dataclass(frozen=True)
class ParamRule:
    """What an objective accepts for one parameter.

    ``kind`` forces a range's kind (``"pow2"`` for batch size, ``"float"`` for lr); ``registry``
    restricts values to registered names; ``low``/``high`` bound numbers (``low_open``: strict).
    """

    kind: str | None = None
    registry: Registry | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False
    log: bool = False
    default: Any = None
    help: str = ""
    high_why: str = ""  # said when a value is above ``high``

    def check(self, value: Any) -> str | None:
        """Why ``value`` breaks this rule, or ``None`` when it is fine."""
        if self.registry is not None:
            if value not in self.registry:
                hint = did_you_mean(value, self.registry)
                return (f"unknown {self.registry.kind} {value!r}{hint}; "
                        f"valid: {', '.join(self.registry)}")
            return None
        if self.low is None and self.high is None and not self.integer and self.kind != "pow2":
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {value!r}"
        if (self.integer or self.kind == "pow2") and not float(value).is_integer():
            return f"must be a whole number, got {value!r}"
        if self.kind == "pow2" and not _is_pow2(value):
            return f"must be a power of two (1, 2, 4, …, 256, …), got {value!r}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}"
        if self.high is not None and value > self.high:
            why = f" ({self.high_why})" if self.high_why else ""
            return f"must be <= {self.high:g}{why}, got {value!r}"
        return None


def _is_pow2(v: float) -> bool:
    return v >= 1 and float(v).is_integer() and (int(v) & (int(v) - 1)) == 0


@dataclass(frozen=True)
class Param:
    """One parameter of a search space. Ranges are inclusive; ``log`` ranges are sampled in log."""

    name: str
    kind: str
    value: Any = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Scalar, ...] = ()
    default: bool = False  # filled in from the objective's rule, not written in [space]

    @property
    def optuna_name(self) -> str:
        """The name Optuna stores: ``<name>_log2`` holds the exponent of a pow2 parameter."""
        return f"{self.name}{LOG2_SUFFIX}" if self.kind == "pow2" else self.name

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"

    def suggest(self, trial: optuna.Trial) -> Any:
        """The value for this trial (fixed values are returned without touching the trial)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        if self.kind == "pow2":
            exponent = trial.suggest_int(
                self.optuna_name, int(math.log2(self.low)), int(math.log2(self.high))
            )
            trial.set_user_attr(self.name, 2**exponent)
            return 2**exponent
        return trial.suggest_categorical(self.name, list(self.choices))

    def grid_values(self) -> list[Any] | None:
        """The finite list of Optuna values (what GridSampler enumerates), or ``None``."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "pow2":
            return list(range(int(math.log2(self.low)), int(math.log2(self.high)) + 1))
        if self.kind == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.kind == "float" and self.step is not None:
            n = round((self.high - self.low) / self.step)
            return [self.low + i * self.step for i in range(n + 1)]
        return None

    def values(self) -> list[Any]:
        """Every value this parameter can take that a rule must accept (bounds for ranges)."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "categorical":
            return list(self.choices)
        return [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of parameters; ``suggest`` turns a trial into a ``{name: value}`` dict."""

    params: tuple[Param, ...] = field(default_factory=tuple)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.params)

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def searched(self) -> list[Param]:
        return [p for p in self.params if p.searched]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    def grid(self) -> dict[str, list[Any]]:
        """The grid over every searched parameter, keyed by Optuna name (for GridSampler)."""
        grid: dict[str, list[Any]] = {}
        for p in self.searched():
            values = p.grid_values()
            if values is None:
                raise ConfigError(
                    f"the grid sampler needs a finite set of values, but [space] {p.name} is a "
                    f"continuous range ({p.low:g}..{p.high:g}{', log' if p.log else ''}); "
                    "give it a step or a list of values"
                )
            grid[p.optuna_name] = values
        return grid


def parse_space(
    table: Mapping[str, Any],
    rules: Mapping[str, ParamRule] | None,
    where: str,
    shared: Mapping[str, ParamRule] | None = None,
) -> SearchSpace:
    """Parse a ``[space]`` table; with ``rules``, unknown names are errors and defaults fill in.
    Without, any name is accepted, and those in ``shared`` follow their rule (the names every
    objective means the same by: ``lr``, ``batch_size``, ``init``).

    ``where`` prefixes every message (the study file's path).
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [space] must be a table, got {table!r}")
    params: list[Param] = []
    for name, raw in table.items():
        rule = (shared or {}).get(name)
        if rules is not None:
            if name not in rules:
                raise ConfigError(
                    f"{where}: [space] unknown parameter {name!r}{did_you_mean(name, rules)}; "
                    f"valid: {', '.join(rules)}"
                )
            rule = rules[name]
        params.append(parse_param(name, raw, rule, f"{where}: [space] {name}"))
    for name, rule in (rules or {}).items():
        if name not in table and rule.default is not None:
            params.append(Param(name, "fixed", value=rule.default, default=True))
    return SearchSpace(tuple(params))


def parse_param(name: str, raw: Any, rule: ParamRule | None, where: str) -> Param:
    """One ``[space]`` entry -> :class:`Param`, checked against ``rule`` (see module doc)."""
    rule = rule or ParamRule()
    _check_finite(raw, where)
    if rule.integer or rule.kind == "pow2":  # batch_size = 16.0 means 16
        raw = _whole_floats_to_int(raw)
    if isinstance(raw, Mapping) and rule.registry is not None:
        raise ConfigError(f"{where}: a range does not apply to {name}; give one "
                          f"{rule.registry.kind} name or a list of them")
    if isinstance(raw, Mapping):
        param = _parse_table(name, raw, rule, where)
    elif isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{where}: a list of choices must not be empty")
        if any(isinstance(v, list | Mapping) for v in raw):
            raise ConfigError(f"{where}: choices must be plain values, got {raw!r}")
        if len(set(map(repr, raw))) != len(raw):
            raise ConfigError(f"{where}: choices must be unique, got {raw!r}")
        param = Param(name, "categorical", choices=tuple(raw))
    elif isinstance(raw, Scalar):
        param = Param(name, "fixed", value=raw)
    else:
        raise ConfigError(f"{where}: expected a value, a list or a table, got {raw!r}")
    for value in param.values():
        problem = rule.check(value)
        if problem:
            raise ConfigError(f"{where}: {problem}")
    return param


def _check_finite(raw: Any, where: str) -> None:
    """NaN and ±inf are no hyperparameter values (TOML spells them nan and inf)."""
    values = raw.values() if isinstance(raw, Mapping) else raw if isinstance(raw, list) else [raw]
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where}: values must be finite numbers, got {v!r}")


def _whole_floats_to_int(raw: Any) -> Any:
    def whole(v: Any) -> Any:
        return int(v) if isinstance(v, float) and v.is_integer() else v

    if isinstance(raw, Mapping):
        return {k: whole(v) if k in ("low", "high", "step") else v for k, v in raw.items()}
    if isinstance(raw, list):
        return [whole(v) for v in raw]
    return whole(raw)


def _parse_table(name: str, raw: Mapping[str, Any], rule: ParamRule, where: str) -> Param:
    unknown = set(raw) - RANGE_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}"
            f"{did_you_mean(sorted(unknown), sorted(RANGE_KEYS))}; "
            f"a range takes {', '.join(sorted(RANGE_KEYS))}"
        )
    for key in ("low", "high"):
        if key not in raw:
            raise ConfigError(f"{where}: a range needs '{key}'")
        v = raw[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{where}: '{key}' must be a number, got {v!r}")
    low, high = raw["low"], raw["high"]
    if not low <= high:
        raise ConfigError(f"{where}: `low <= high` must hold, but got (low={low}, high={high})")
    kind = raw.get("type", rule.kind)
    if kind is None:
        whole = isinstance(low, int) and isinstance(high, int)
        kind = "int" if rule.integer or whole else "float"
    if kind not in ("float", "int", "pow2"):
        raise ConfigError(f"{where}: 'type' must be float, int or pow2, got {kind!r}")
    if kind == "pow2":
        for v in (low, high):
            if not _is_pow2(v):
                raise ConfigError(f"{where}: bounds must be powers of two, got {v!r}")
    log = raw.get("log", rule.log and kind != "pow2")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: 'log' must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got low={low}")
    step = raw.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
            raise ConfigError(f"{where}: 'step' must be a positive number, got {step!r}")
        if log:
            raise ConfigError(f"{where}: 'step' cannot be combined with log = true")
        if kind == "pow2":
            raise ConfigError(f"{where}: 'step' does not apply to a pow2 range")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high)):
        raise ConfigError(f"{where}: an int range needs whole bounds, got ({low}, {high})")
    if kind == "int" and step is not None and not float(step).is_integer():
        raise ConfigError(f"{where}: an int range needs a whole step, got {step!r}")
    return Param(name, kind, low=low, high=high, log=log, step=step)
