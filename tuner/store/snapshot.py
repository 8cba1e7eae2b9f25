"""Stored studies as plain data: what ``list``, ``show`` and ``export`` read.

A :class:`StudySnapshot` is one study's name, directions, user attributes, trials and running
trials. It comes from one of two readers:

* :func:`tuner.store.sqlite_reader.read_sqlite` reads a plain ``sqlite:///FILE`` whose schema
  is the one written by the installed Optuna, with the standard library's ``sqlite3``,
  read-only, in one transaction. It imports neither Optuna nor SQLAlchemy, which were 0.27 s of
  the 0.5 s ``tuner list`` took. Its trials are :class:`TrialSnapshot` objects, with the
  attributes of Optuna's ``FrozenTrial`` that the views read.
* :func:`tuner.store.studies.snapshot_of` reads any storage through Optuna (PostgreSQL, a
  journal file, an older or newer schema). Its trials are Optuna's own FrozenTrials.

When ``read_sqlite`` cannot be sure it reads what Optuna would (another URL, a missing file,
another schema revision, a distribution it does not know, any SQLite error), it returns
``None`` and the caller opens the storage through Optuna, which gives today's answer or error.
``tests/unit/store/test_snapshot.py`` checks that the two readers give the same data.
"""

from __future__ import annotations

import enum
import importlib.util
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from tuner.core.errors import ConfigError, StudyNotFoundError
from tuner.core.keys import CONFIG_ATTR, FEASIBLE, WARM_START


class State(enum.Enum):
    """A trial's state, with the names of Optuna's ``TrialState``."""

    RUNNING = 0
    COMPLETE = 1
    PRUNED = 2
    FAIL = 3
    WAITING = 4


@dataclass(frozen=True)
class Distribution:
    """A parameter's distribution as stored (``kind``: ``int``, ``float`` or ``categorical``)."""

    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def external(self, internal: float) -> Any:
        """The parameter's value as the objective saw it (Optuna's ``to_external_repr``)."""
        if self.kind == "categorical":
            return self.choices[int(internal)]
        return int(internal) if self.kind == "int" else float(internal)


@dataclass
class TrialSnapshot:
    """One stored trial, with the attributes of Optuna's ``FrozenTrial`` that the views read."""

    _trial_id: int
    number: int
    state: State
    values: list[float] | None
    datetime_start: datetime | None
    datetime_complete: datetime | None
    params: dict[str, Any] = field(default_factory=dict)
    distributions: dict[str, Distribution] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    last_step: int | None = None

    @property
    def value(self) -> float | None:
        return self.values[0] if self.values else None

    @property
    def duration(self) -> timedelta | None:
        if self.datetime_start and self.datetime_complete:
            return self.datetime_complete - self.datetime_start
        return None


@dataclass
class StudySnapshot:
    """One stored study. ``trials`` are in number order; ``running`` holds one entry per RUNNING
    trial (see :func:`running_entries`)."""

    study_name: str
    directions: list[str]  # "MINIMIZE" / "MAXIMIZE", one per objective
    user_attrs: dict[str, Any]
    trials: list[Any]  # TrialSnapshot, or Optuna's FrozenTrial from snapshot_of
    running: list[dict[str, Any]]

    @property
    def maximize(self) -> bool:
        return self.directions[0] == "MAXIMIZE"

    def best(self) -> Any | None:
        """The best COMPLETE trial of a single-objective study (the first of equals), or
        ``None`` when none has completed."""
        complete = [t for t in self.trials if t.state.name == "COMPLETE" and t.values
                    and WARM_START not in t.user_attrs]  # a warm start's observations: not ours
        if len(self.directions) != 1 or not complete:
            return None
        pick = max if self.maximize else min
        return pick(complete, key=lambda t: t.values[0])


# ------------------------------------------------------------------ rules both readers share
def pareto_front(trials: list[Any], directions: list[str]) -> list[Any]:
    """The Pareto set among ``trials``: the study's own COMPLETE ones (not a warm start's)
    that no other dominates, among the feasible ones when there are any (``[study]
    constraints``), in number order."""
    own = [t for t in trials if t.state.name == "COMPLETE" and t.values
           and WARM_START not in t.user_attrs]
    feasible = [t for t in own if t.user_attrs.get(FEASIBLE, True)]
    return non_dominated(feasible or own, directions)


def non_dominated(trials: list[Any], directions: list[str]) -> list[Any]:
    """The trials (with ``values``) that no other trial dominates: at least as good in every
    metric and better in one, by ``directions`` ("MINIMIZE"/"MAXIMIZE"), in number order."""
    signs = [-1.0 if d.upper() == "MAXIMIZE" else 1.0 for d in directions]

    def key(t: Any) -> list[float]:
        return [s * v for s, v in zip(signs, t.values, strict=True)]

    keyed = [(t, key(t)) for t in trials]
    front = [t for t, k in keyed
             if not any(all(o <= m for o, m in zip(other, k, strict=True)) and other != k
                        for _, other in keyed)]
    return sorted(front, key=lambda t: t.number)



def count_states(trials: list[Any]) -> dict[str, int]:
    return dict(Counter(t.state.name for t in trials))


def study_metric(study: Any) -> str:
    """The name of what a study optimises (``value`` for a study tuner did not create; the
    first of several metrics); works on anything with the study's ``user_attrs``."""
    table = study.user_attrs.get(CONFIG_ATTR, {}).get("study", {})
    return table.get("metric") or (table.get("metrics") or ["value"])[0]


def study_metrics(study: Any) -> list[str]:
    """Every metric of a study, in the order of its values (``[study] metrics``, else the
    one)."""
    table = study.user_attrs.get(CONFIG_ATTR, {}).get("study", {})
    return list(table.get("metrics") or [study_metric(study)])


def not_found(name: str, names: list[str]) -> StudyNotFoundError:
    hint = f"stored studies: {', '.join(sorted(names))}" if names else "the storage has no studies"
    return StudyNotFoundError(f"no study named {name!r} in this storage; {hint}")


def check_single_objective(name: str, n_objectives: int,
                           user_attrs: dict[str, Any] | None = None) -> None:
    """A study tuner can read: one objective, or the several of its own ``[study] metrics``
    (another Optuna user's multi-objective study is refused)."""
    metrics = ((user_attrs or {}).get(CONFIG_ATTR) or {}).get("study", {}).get("metrics")
    if n_objectives > 1 and not (isinstance(metrics, list) and len(metrics) == n_objectives):
        raise ConfigError(f"study {name!r} has {n_objectives} objectives and was not made by "
                          "tuner with [study] metrics; tuner reads only its own such studies")


def started_before(start: datetime | None, grace_s: float) -> bool:
    """Whether a trial that started at ``start`` (a naive local time, as Optuna stores it;
    ``None``: unknown) started more than ``grace_s`` seconds ago."""
    return start is None or datetime.now() - start > timedelta(seconds=grace_s)


def running_entries(running: list[Any], ages: dict[int, float | None] | None,
                    grace_s: float) -> list[dict[str, Any]]:
    """What ``show`` and ``list`` say of each RUNNING trial: ``number``, ``heartbeat_age_s``
    (seconds since its last heartbeat; ``None``: it never sent one), ``started_s_ago`` and
    ``stale``. A stale trial's process is gone (killed, machine lost): its heartbeat is older
    than the grace period (the next run or worker fails it and queues a retry: ``retried``), or
    it never sent one and started longer ago than that (a process without heartbeats: nothing
    will ever retry it). ``ages`` is ``None`` for a storage without heartbeats: nothing there
    is stale."""
    now = datetime.now()
    out = []
    for t in running:
        age = ages.get(t._trial_id) if ages is not None else None
        started = (now - t.datetime_start).total_seconds() if t.datetime_start else None
        if ages is None:
            stale = False
        elif age is not None:
            stale = age > grace_s
        else:
            stale = started_before(t.datetime_start, grace_s)
        out.append({"number": t.number, "heartbeat_age_s": age, "started_s_ago": started,
                    "stale": bool(stale), "retried": bool(stale and age is not None)})
    return out


# ------------------------------------------------------------------------- the schema revision
_SCRIPT_LINE = re.compile(r"""^(down_revision|revision)\s*=\s*(?:["']([^"']+)["']|None)\s*$""",
                          re.MULTILINE)


@cache
def head_revision() -> str | None:
    """The installed Optuna's newest schema revision (see :func:`head_in`), found without
    importing Optuna."""
    spec = importlib.util.find_spec("optuna")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    return head_in(root / "storages" / "_rdb" / "alembic" / "versions")


def head_in(folder: Path) -> str | None:
    """The newest revision of the migration scripts in ``folder``: the one revision no script
    names as its ``down_revision``; ``None`` when that is not clear."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in folder.glob("*.py"):
        found = dict((k, v) for k, v in _SCRIPT_LINE.findall(script.read_text()))
        if "revision" not in found or "down_revision" not in found:
            return None  # a script of a shape this reader does not know
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
