"""Reading a study file's ``[space]`` table into a :class:`~tuner.search.space.SearchSpace`:
each entry checked against its :class:`~tuner.search.space.ParamRule` (the forms are listed in
:mod:`tuner.search.space`), with errors that name the file and the entry.

A name close to one of :data:`COMMON_NAMES` but not one of them (``batch_sise``) is a typo, for
every objective: an objective that takes any name would otherwise search it as its own
parameter, and the study would run without the setting meant. An objective whose own parameter
it really is declares it in its ``param_rules``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from tuner.core.errors import ConfigError, did_you_mean
from tuner.core.toml_text import dump_toml
from tuner.search.space import RANGE_KEYS, Param, ParamRule, Scalar, SearchSpace, is_pow2

# The names a study file means the same by whatever its objective (the shared rules: lr,
# batch_size, init) or that are too common to be anything else than the classifier's (its
# weight_decay and momentum): a [space] key a typo away from one is refused.
COMMON_NAMES = ("lr", "batch_size", "init", "weight_decay", "momentum")


def parse_space(
    table: Mapping[str, Any],
    rules: Mapping[str, ParamRule] | None,
    where: str,
    shared: Mapping[str, ParamRule] | None = None,
) -> SearchSpace:
    """Parse a ``[space]`` table; with ``rules``, unknown names are errors and defaults fill in.
    Without, any name is accepted, and those in ``shared`` follow their rule (the names every
    objective means the same by: ``lr``, ``batch_size``, ``init``). Either way, a name that
    :func:`near_miss` finds a typo of one of :data:`COMMON_NAMES` is an error.

    ``where`` prefixes every message (the study file's path).
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [space] must be a table, got {table!r}")
    params: list[Param] = []
    for name, raw in table.items():
        rule = (shared or {}).get(name)
        _refuse_near_miss(name, raw, rules, shared, where)
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
    return SearchSpace(_conditions_first(params, where))


def _parse_when(raw: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``when = {optimizer = "sgd"}`` (a value or a list of values per name) as
    ``(name, allowed values)`` pairs."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: 'when' must be a table of conditions, e.g. when = "
                          f'{{ optimizer = "sgd" }}, got {raw!r}')
    out = []
    for name, values in raw.items():
        allowed = values if isinstance(values, list) else [values]
        if not allowed or any(isinstance(v, list | Mapping) for v in allowed):
            raise ConfigError(f"{where}: when {name} must be a value or a list of values, got "
                              f"{values!r}")
        out.append((name, tuple(allowed)))
    return tuple(out)


def _conditions_first(params: list[Param], where: str) -> tuple[Param, ...]:
    """The parameters checked for their ``when`` (each names a categorical or fixed parameter
    of the space and values among its choices; no cycle) and ordered so that every
    parameter comes after those its condition reads (otherwise as written)."""
    by_name = {p.name: p for p in params}
    for p in params:
        for name, allowed in p.when:
            at = f"{where}: [space] {p.name}: when {name}"
            if name == p.name:
                raise ConfigError(f"{at}: a parameter cannot depend on itself")
            if name not in by_name:
                raise ConfigError(f"{at}: unknown parameter {name!r}"
                                  f"{did_you_mean(name, by_name)}; the space has "
                                  f"{', '.join(by_name)}")
            cond = by_name[name]
            if cond.kind not in ("categorical", "fixed"):
                raise ConfigError(f"{at}: a condition reads a categorical (a list) or fixed "
                                  f"parameter; {name} is a {cond.kind} range")
            choices = cond.choices if cond.kind == "categorical" else (cond.value,)
            bad = [v for v in allowed if v not in choices]
            if bad:
                raise ConfigError(f"{at}: {bad[0]!r} is not one of {name}'s values "
                                  f"{list(choices)!r}")
    ordered: list[Param] = []
    placing: list[str] = []

    def place(p: Param) -> None:
        if p in ordered:
            return
        if p.name in placing:
            cycle = " -> ".join([*placing[placing.index(p.name):], p.name])
            raise ConfigError(f"{where}: [space] the conditions form a cycle: {cycle}")
        placing.append(p.name)
        for name, _ in p.when:
            place(by_name[name])
        placing.pop()
        ordered.append(p)

    for p in params:
        place(p)
    return tuple(ordered)


def near_miss(name: str, names: Collection[str]) -> str | None:
    """The one of ``names`` that ``name`` is a typo of, else ``None``: at most two edits
    (insert, delete, replace, swap two neighbours; case ignored), fewer for a short name: two
    for 8 letters or more (``batch_sise``), one for 4 to 7 (``inti``), none but case for
    fewer (``LR``). Two edits from ``lr`` is any one- or two-letter name (``x``, ``wd``), and
    two from ``init`` is ``units``: those are an objective's own parameters."""
    key = name.lower()
    for known in names:
        allowed = 2 if len(known) >= 8 else 1 if len(known) >= 4 else 0
        if name != known and _edits(key, known, allowed) <= allowed:
            return known
    return None


def _edits(a: str, b: str, limit: int) -> int:
    """The edit distance of ``a`` and ``b`` with swaps of neighbours (optimal string alignment),
    or ``limit + 1`` once it is sure to be over ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] | None = None
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        new = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            new[j] = min(row[j] + 1, new[j - 1] + 1, row[j - 1] + (ca != cb))
            if before is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                new[j] = min(new[j], before[j - 2] + 1)
        before, row = row, new
    return row[-1]


def _refuse_near_miss(name: str, raw: Any, rules: Mapping[str, ParamRule] | None,
                      shared: Mapping[str, ParamRule] | None, where: str) -> None:
    """ConfigError for a ``[space]`` key that is a typo of a common name (see the module doc):
    with ``rules``, one of those it declares; without, any, unless it is itself a name the
    objective knows (a shared one, or a common one taken as its own parameter)."""
    if rules is not None:
        if name in rules:
            return
        close = near_miss(name, [n for n in COMMON_NAMES if n in rules])
    elif name in (shared or {}) or name in COMMON_NAMES:
        return
    else:
        close = near_miss(name, COMMON_NAMES)
    if close is None:
        return
    tail = f"; valid: {', '.join(rules)}" if rules is not None else (
        f" (a name this close to {close!r} is taken for a typo of it; an objective whose own "
        "parameter it is declares it in its param_rules)")
    raise ConfigError(f"{where}: [space] {_entry(name, raw)}: unknown parameter {name!r}; "
                      f"did you mean {close!r}?{tail}")


def _entry(name: str, raw: Any) -> str:
    """``name = value`` as the study file spells it (``batch_sise = { low = 16, high = 256 }``)."""
    text = dump_toml({"space": {"key": raw}}).partition("\n")[2].strip()
    return f"{name} = {text.removeprefix('key = ')}" if text else f"{name} = {raw!r}"


def parse_param(name: str, raw: Any, rule: ParamRule | None, where: str) -> Param:
    """One ``[space]`` entry -> :class:`Param`, checked against ``rule`` (see module doc)."""
    rule = rule or ParamRule()
    if isinstance(raw, Mapping) and "when" in raw:
        when = _parse_when(raw["when"], where)
        rest = {k: v for k, v in raw.items() if k != "when"}
        if set(rest) == {"choices"}:
            rest = rest["choices"]
        elif set(rest) == {"value"}:
            rest = rest["value"]
        return replace(parse_param(name, rest, rule, where), when=when)
    if isinstance(raw, Mapping) and set(raw) in ({"choices"}, {"value"}):
        return parse_param(name, next(iter(raw.values())), rule, where)
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
            f"a range takes {', '.join(sorted(RANGE_KEYS))} (and any entry 'when')"
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
            if not is_pow2(v):
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
