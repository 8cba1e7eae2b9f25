"""Objectives: what a trial computes.

An objective is a function ``fn(trial, ctx) -> float``: ``trial`` is the Optuna trial and ``ctx``
an :class:`ObjectiveContext` holding the study file's ``[objective]`` settings and its search
space (``ctx.suggest(trial)`` draws every ``[space]`` parameter at once). A study file names one:

* a built-in (``classifier``),
* a name a package registers under the ``tuner.objectives`` entry-point group, or
* ``package.module:function``.

The name is resolved (imported) when the study file is loaded, never mid-study.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from tuner.errors import ObjectiveError
from tuner.space import ParamRule, SearchSpace

ENTRY_POINT_GROUP = "tuner.objectives"


@dataclass
class ObjectiveContext:
    """Everything an objective gets besides the trial.

    ``settings`` is the ``[objective]`` table without ``name`` (after the objective's own
    validation); ``seed`` the study seed; ``metric`` the name of the value it must return.
    """

    settings: dict[str, Any]
    space: SearchSpace
    seed: int = 0
    metric: str = "value"
    cache: dict[str, Any] = field(default_factory=dict)  # per-process state (datasets …)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw every ``[space]`` parameter for ``trial`` (fixed ones included)."""
        return self.space.suggest(trial)

    def trial_seed(self, trial: optuna.Trial) -> int:
        """A seed for ``trial``'s own randomness: a function of the study seed and trial number,
        so a rerun of the same study reproduces the same trials."""
        return trial_seed(self.seed, trial.number)


def trial_seed(study_seed: int, trial_number: int) -> int:
    return (study_seed * 1_000_003 + trial_number * 7_919 + 12_345) % (2**31 - 1)


ObjectiveFn = Callable[[optuna.Trial, ObjectiveContext], float]


@dataclass(frozen=True)
class ObjectiveSpec:
    """A resolved objective.

    ``param_rules``: the ``[space]`` names it understands (``None`` accepts any name).
    ``validate``: ``(settings, space, where) -> (settings, space)`` checks and normalises the
    ``[objective]`` table and the space together; it raises ConfigError naming ``where``.
    ``metrics``: the metrics it can return, each with its natural direction.
    """

    name: str
    fn: ObjectiveFn
    param_rules: Mapping[str, ParamRule] | None = None
    validate: Callable[..., tuple[dict[str, Any], SearchSpace]] | None = None
    metrics: Mapping[str, str] | None = None


BUILTIN: dict[str, Callable[[], ObjectiveSpec]] = {}


def _builtin_classifier() -> ObjectiveSpec:
    from tuner.objectives.classifier import SPEC

    return SPEC


BUILTIN["classifier"] = _builtin_classifier


def resolve_objective(name: str) -> ObjectiveSpec:
    """Find the objective ``name`` (see the module doc) or raise :class:`ObjectiveError`."""
    if name in BUILTIN:
        return BUILTIN[name]()
    if ":" in name:
        return _as_spec(name, _import(name))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                return _as_spec(name, ep.load())
            except Exception as e:
                raise ObjectiveError(f"objective {name!r} (entry point {ep.value}): {e}") from None
    registered = sorted({*BUILTIN, *(ep.name for ep in importlib.metadata.entry_points(
        group=ENTRY_POINT_GROUP))})
    raise ObjectiveError(
        f"unknown objective {name!r}; valid: {', '.join(registered)}, "
        "or 'package.module:function'"
    )


def _import(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ObjectiveError(f"objective {ref!r} must look like 'package.module:function'")
    # Console scripts do not put the working directory on sys.path; a user's own
    # objective module usually lives there.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ObjectiveError(f"cannot import module {module_name!r} for objective {ref!r}: {e}") \
            from None
    except Exception as e:
        raise ObjectiveError(
            f"importing module {module_name!r} for objective {ref!r} failed: "
            f"{type(e).__name__}: {e}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ObjectiveError(f"module {module_name!r} has no attribute {attr!r} ({ref!r})")
        obj = getattr(obj, part)
    return obj


def _as_spec(name: str, obj: Any) -> ObjectiveSpec:
    if isinstance(obj, ObjectiveSpec):
        return obj
    if not callable(obj):
        raise ObjectiveError(f"objective {name!r} is not callable (got {type(obj).__name__})")
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins and C callables have none to read
        signature = None
    if signature is not None:
        try:
            signature.bind(None, None)
        except TypeError:
            raise ObjectiveError(f"objective {name!r} must take (trial, ctx); it takes "
                                 f"{signature}") from None
    return ObjectiveSpec(name=name, fn=obj)
