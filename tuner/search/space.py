"""Search spaces: the parameters of a study file's ``[space]`` table (read by
:mod:`tuner.search.space_table`), and how each is suggested, counted and gridded.

Each entry of ``[space]`` is one of

* a scalar (``momentum = 0.9``)                     -> fixed, never searched
* a list (``init = ["zeros", "xavier_uniform"]``)   -> categorical
* a table (``lr = {low = 1e-4, high = 0.1}``)       -> a range: float or int (``log``, ``step``),
  or ``pow2`` for powers of two (searched as the integer exponent, so model-based samplers see
  the order; the trial's user attribute ``<name>`` holds the real value); ``{choices = [...]}``
  and ``{value = ...}`` are a list and a scalar written as a table.

Any of them may be **conditional**: ``when = {optimizer = "sgd"}`` (a value or a list of values
of a categorical or fixed parameter; several names must all hold) draws the parameter only in
trials where the condition holds, after the parameters it depends on. Elsewhere it is never
drawn: the objective's ``{name: value}`` leaves it out, and Optuna stores no value for it.

An objective may declare :class:`ParamRule` s for the names it understands (valid range, registry
of choices, default); a name without a rule is accepted as is (for pluggable objectives).
"""

from __future__ import annotations

import math
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
        if self.kind == "pow2" and not is_pow2(value):
            return f"must be a power of two (1, 2, 4, …, 256, …), got {value!r}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}"
        if self.high is not None and value > self.high:
            why = f" ({self.high_why})" if self.high_why else ""
            return f"must be <= {self.high:g}{why}, got {value!r}"
        return None


def is_pow2(v: float) -> bool:
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
    when: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()  # (name, allowed values): all hold

    def active(self, drawn: dict[str, Any]) -> bool:
        """Whether this parameter is drawn, given the values ``drawn`` so far (its conditions'
        parameters come first: :class:`SearchSpace` keeps them in that order)."""
        return all(name in drawn and drawn[name] in allowed for name, allowed in self.when)

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

    def distribution(self) -> optuna.distributions.BaseDistribution | None:
        """The distribution :meth:`suggest` draws from (``None`` for a fixed value)."""
        d = optuna.distributions
        if self.kind == "float":
            return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        if self.kind == "pow2":
            return d.IntDistribution(int(math.log2(self.low)), int(math.log2(self.high)))
        if self.kind == "categorical":
            return d.CategoricalDistribution(list(self.choices))
        return None

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
        """``{name: value}`` of every parameter this trial draws: a conditional one whose
        condition does not hold is left out (never drawn)."""
        drawn: dict[str, Any] = {}
        for p in self.params:
            if p.active(drawn):
                drawn[p.name] = p.suggest(trial)
        return drawn

    @property
    def conditional(self) -> bool:
        """Whether some parameter is drawn only when a condition holds."""
        return any(p.when for p in self.params)

    def active_grid_points(self, names: list[str], points: list[tuple]) -> list[tuple]:
        """``points`` (tuples of Optuna values, one per name in ``names``) with one point per
        distinct set of values a trial really draws: points that differ only in a parameter
        whose condition does not hold are the same trial (a grid over a conditional space)."""
        by_name = {p.optuna_name: p for p in self.searched()}
        seen: set[tuple] = set()
        kept = []
        for point in points:
            values = dict(zip(names, point, strict=True))
            drawn: dict[str, Any] = {}
            for p in self.params:
                if p.active(drawn):
                    drawn[p.name] = (p.value if not p.searched else
                                     2 ** values[p.optuna_name] if p.kind == "pow2"
                                     else values[p.optuna_name])
            key = tuple((n, values[n]) for n in names if by_name[n].name in drawn)
            if key not in seen:
                seen.add(key)
                kept.append(point)
        return kept

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
