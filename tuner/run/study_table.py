"""The ``[study]`` table of a study file: its keys and defaults, their checks, and the metric and
direction that follow from them and the objective (:mod:`tuner.run.config` reads the rest)."""

from __future__ import annotations

import math
import re
from typing import Any

from tuner.core.errors import ConfigError, did_you_mean
from tuner.core.metrics import metric_task, natural_direction
from tuner.objectives import ObjectiveSpec
from tuner.search.constraints import parse_constraint
from tuner.search.pruners import PRUNERS
from tuner.search.samplers import SAMPLERS

STUDY_DEFAULTS: dict[str, Any] = {
    "name": None,  # default: the file's stem
    "direction": None,  # default: the metric's natural direction (tuner.core.metrics)
    "metric": None,  # default: the objective's first metric for its task, else "value"
    "sampler": "tpe",
    "pruner": "median",
    "n_trials": 20,
    "timeout": None,
    "seed": 0,
    "pack": 1,  # trials trained together as one vectorised population (tuner.nn.population)
    "metrics": None,  # several objectives at once: ["val_mse", "n_params"] (instead of metric)
    "directions": None,  # their directions (default: each metric's natural one)
    "constraints": None,  # ["n_params <= 20000"]: a trial that breaks one is infeasible
    "warm_start": None,  # another study whose complete trials are prior observations
    "warm_start_top": 0,  # ... and whose best K run again first (tuner.run.warm_start)
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_study(study: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(study) - set(STUDY_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{where}: [study] unknown key(s) {', '.join(unknown)}"
            f"{did_you_mean(unknown, STUDY_DEFAULTS)}; valid: {', '.join(STUDY_DEFAULTS)}"
        )
    out = {**STUDY_DEFAULTS, **study}

    def bad(key: str, rule: str) -> ConfigError:
        return ConfigError(f"{where}: [study] {key} must be {rule}, got {out[key]!r}")

    if not isinstance(out["name"], str) or not NAME_RE.match(out["name"]):
        raise bad("name", "1-128 letters, digits, '_', '-' or '.', starting with a letter or digit")
    if out["direction"] not in (None, "maximize", "minimize"):
        raise bad("direction", "'maximize' or 'minimize'")
    if out["metric"] is not None and not isinstance(out["metric"], str):
        raise bad("metric", "a name")
    for key, registry in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if not isinstance(out[key], str):
            raise bad(key, "a name")
        registry.get(out[key], f"{where}: [study] {key}")  # unknown names list the valid ones
    if not _is_int(out["n_trials"]) or out["n_trials"] < 1:
        raise bad("n_trials", "a whole number >= 1")
    if out["timeout"] is not None and (
        not _is_number(out["timeout"]) or out["timeout"] <= 0
    ):
        raise bad("timeout", "a positive number of seconds")
    if not _is_int(out["seed"]) or not 0 <= out["seed"] < 2**32:
        raise bad("seed", "a whole number from 0 to 2**32 - 1")
    if out["warm_start"] is not None and (not isinstance(out["warm_start"], str)
                                          or not NAME_RE.match(out["warm_start"])):
        raise bad("warm_start", "the name of another study")
    if not _is_int(out["warm_start_top"]) or out["warm_start_top"] < 0:
        raise bad("warm_start_top", "a whole number >= 0 (best trials of warm_start to rerun)")
    if out["warm_start_top"] and out["warm_start"] is None:
        raise bad("warm_start_top", "0 without warm_start (it reruns that study's best trials)")
    if not _is_int(out["pack"]) or out["pack"] < 1:
        raise bad("pack", "a whole number >= 1 (trials trained together; 1: no packing)")
    _check_objectives(out, bad)
    return out


def _check_objectives(out: dict[str, Any], bad: Any) -> None:
    """``metrics``/``directions`` (several objectives) and ``constraints``."""
    metrics, directions = out["metrics"], out["directions"]
    if metrics is not None:
        if (not isinstance(metrics, list) or len(metrics) < 2
                or not all(isinstance(m, str) and m for m in metrics)
                or len(set(metrics)) != len(metrics)):
            raise bad("metrics", "a list of two or more different metric names (one metric: "
                                 "[study] metric)")
        if out["metric"] is not None or out["direction"] is not None:
            raise bad("metrics", "given instead of metric and direction, not with them "
                                 "(directions lists one per metric)")
        if out["pruner"] != "none":
            raise bad("pruner", "'none' with several metrics: Optuna's pruners compare one "
                                "value (dead inits are still pruned before training)")
        if out["pack"] != 1:
            raise bad("pack", "1 with several metrics (a packed population reports one value)")
    if directions is not None:
        if metrics is None:
            raise bad("directions", "given with metrics (one metric: [study] direction)")
        if (not isinstance(directions, list) or len(directions) != len(metrics)
                or any(d not in ("maximize", "minimize") for d in directions)):
            raise bad("directions", f"a list of {len(metrics)} 'maximize' or 'minimize', one "
                                    "per metric")
    constraints = out["constraints"]
    if constraints is None:
        return
    names = metrics or [out["metric"] or "value"]
    if not isinstance(constraints, list) or not constraints:
        raise bad("constraints", 'a list such as ["n_params <= 20000"]')
    for text in constraints:
        parsed = parse_constraint(text)
        if parsed is None:
            raise bad("constraints", 'a list of "METRIC <= NUMBER" or "METRIC >= NUMBER"')
        if parsed[0] not in names:
            raise bad("constraints", f"on the study's metrics ({', '.join(names)}); "
                                     f"{parsed[0]!r} is not one")


def parse_constraints(constraints: list[str] | None) -> tuple[tuple[str, str, float], ...]:
    """``["n_params <= 20000"]`` (checked) as ``(("n_params", "<=", 20000.0),)``."""
    parsed = tuple(parse_constraint(text) for text in constraints or ())
    assert None not in parsed
    return parsed  # type: ignore[return-value]


def metrics_and_directions(
    study: dict[str, Any], spec: ObjectiveSpec, where: str,
    settings: dict[str, Any] | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every metric of the study with its direction: ``[study] metrics`` (each checked as
    :func:`metric_and_direction` checks one, with its ``directions`` entry), else the one
    metric."""
    if study["metrics"] is None:
        metric, direction = metric_and_direction(study, spec, where, settings)
        return (metric,), (direction,)
    directions = study["directions"] or [None] * len(study["metrics"])
    pairs = [metric_and_direction({**study, "metric": m, "direction": d}, spec, where, settings)
             for m, d in zip(study["metrics"], directions, strict=True)]
    return tuple(m for m, _ in pairs), tuple(d for _, d in pairs)


def metric_and_direction(
    study: dict[str, Any], spec: ObjectiveSpec, where: str,
    settings: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """The study's metric and its direction. A built-in objective's metrics are those of its
    task (``[objective] task``, or its dataset's, when known before the data is read); any
    other metric tuner knows has its natural direction (:mod:`tuner.core.metrics`), and a
    name of one's own needs ``[study] direction``."""
    metric, direction = study["metric"], study["direction"]
    if spec.metrics:
        task = spec.task_of(settings or {}) if spec.task_of is not None else None
        valid = [m for m in spec.metrics if task is None or metric_task(m) in (None, task)]
        default = next((m for m in valid if metric_task(m) == task), None) if task else None
        metric = metric or default or spec.default_metric or valid[0]
        if metric not in valid:
            of = f" for a {task} task" if task else ""
            raise ConfigError(
                f"{where}: [study] metric {metric!r} is not one objective {spec.name!r} "
                f"returns{of}; valid: {', '.join(valid)}"
            )
        natural = spec.metrics[metric]
    else:
        metric = metric or "value"
        natural = natural_direction(metric)
    if natural is None:
        if direction is None:
            raise ConfigError(
                f"{where}: [study] metric {metric!r} is not a name tuner knows the direction "
                "of; set [study] direction = \"maximize\" or \"minimize\""
            )
        return metric, direction
    if direction is not None and direction != natural:
        raise ConfigError(
            f"{where}: [study] direction {direction!r} contradicts metric {metric!r}, "
            f"which is to {natural}"
        )
    return metric, natural


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """A finite int or float (TOML's nan and inf are not)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
