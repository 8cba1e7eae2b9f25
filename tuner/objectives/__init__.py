"""Objectives: what a trial computes.

An objective is a function ``fn(trial, ctx) -> float``: ``trial`` is the Optuna trial and ``ctx``
the toolkit, an :class:`~tuner.objectives.context.ObjectiveContext` (device, suggest, data, init,
health check, report). A study file names one:

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from tuner.core.errors import ObjectiveError
from tuner.search.space import ParamRule, SearchSpace

if TYPE_CHECKING:
    from tuner.objectives.context import ObjectiveContext

ENTRY_POINT_GROUP = "tuner.objectives"
_LAZY = {"ObjectiveContext": "tuner.objectives.context", "trial_seed": "tuner.objectives.context"}


def __getattr__(name: str) -> Any:
    """The toolkit (:mod:`tuner.objectives.context`) imports torch: it loads on first use, so
    reading a study file or listing studies does not."""
    if name not in _LAZY:
        raise AttributeError(f"module 'tuner.objectives' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


ObjectiveFn = Callable[[optuna.Trial, "ObjectiveContext"], float]


@dataclass
class Outcome:
    """How one member of a packed population ended: ``value`` (complete), else ``pruned`` or
    ``error`` (failed)."""

    value: float | None = None
    pruned: bool = False
    error: BaseException | None = None


Packer = Callable[[list[tuple[optuna.Trial, dict[str, Any]]], "ObjectiveContext",
                   dict[int, Outcome]], None]
"""``packer(members, ctx, outcomes)`` trains ``members`` (trial, params) of one group together,
setting ``outcomes[trial number]`` as each member ends (and ending each with
``ctx.finish_trial``). A member it leaves out runs alone afterwards; if it raises, the members
it has not ended fail with its error."""


@dataclass(frozen=True)
class PackSpec:
    """How an objective packs: ``key(hp, ctx)`` groups trials (``None``: this trial cannot be
    packed), ``train`` trains one group (:data:`Packer`). ``shared``: the ``[space]`` names every
    member of one group must agree on (``batch_size``, the architecture …); a packed claim asks
    the sampler for them once, with its first trial, and gives the others the same values, so
    that a searched batch size does not split a pack into groups of one or two."""

    key: Callable[[dict[str, Any], ObjectiveContext], tuple | None]
    train: Packer
    shared: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjectiveSpec:
    """A resolved objective.

    ``param_rules``: the ``[space]`` names it understands (``None`` accepts any name).
    ``validate``: ``(settings, space, where) -> (settings, space)`` checks and normalises the
    ``[objective]`` table and the space together, reading no file and probing nothing (it runs
    whenever a study file is read); it raises ConfigError naming ``where``.
    ``bind``: ``(settings, space, where) -> space``, the checks that need the machine and the
    files (load the data, probe the device, read a checkpoint), run once per process before a
    study is written; it returns the space as it runs here (a GPU may lower the largest batch
    size). ``None``: the toolkit's own (the device exists).
    ``metrics``: the metrics it can return, each with its natural direction; ``task_of``
    (``settings -> "classification" | "regression" | None``) says which task its validated
    settings are, when known before the data is read, so the default metric is the first of
    that task's (``default_metric`` when the task is not known yet).
    ``pack``: how several of its trials train as one population (``--pack``); ``None``: its
    trials run one at a time.
    """

    name: str
    fn: ObjectiveFn
    param_rules: Mapping[str, ParamRule] | None = None
    validate: Callable[..., tuple[dict[str, Any], SearchSpace]] | None = None
    bind: Callable[..., SearchSpace] | None = None
    metrics: Mapping[str, str] | None = None
    pack: PackSpec | None = None
    task_of: Callable[[Mapping[str, Any]], str | None] | None = None
    default_metric: str | None = None


BUILTIN: dict[str, Callable[[], ObjectiveSpec]] = {}


def _builtin(module: str, attr: str = "SPEC") -> Callable[[], ObjectiveSpec]:
    """The lazy loader of a built-in objective: its module (torch and all) is imported when a
    study names it, not when this table is read."""
    return lambda: getattr(importlib.import_module(module), attr)


BUILTIN["classifier"] = _builtin("tuner.objectives.classifier")
BUILTIN["regressor"] = _builtin("tuner.objectives.classifier", "REGRESSOR")


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
