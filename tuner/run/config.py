"""Study files: load, validate completely, and round-trip through storage.

A study file is TOML with these tables (only ``[objective]`` and ``[space]`` are required)::

    [study]     name, direction, metric, sampler, pruner, n_trials, timeout, seed, pack
    [sampler]   keyword arguments of the sampler (e.g. n_startup_trials)
    [pruner]    keyword arguments of the pruner (e.g. n_warmup_steps)
    [objective] name = "classifier" | "pkg.module:function" | entry-point name, plus its settings
    [space]     the search space (see :mod:`tuner.search.space`)

Validation has two phases, each once per process. **Static** (:func:`config_from_dict`, when
a file or a stored study is read): every table, key, value and range, the objective resolved,
sampler and pruner options; pure, it reads no file and probes no device. **Bind**
(:meth:`StudyConfig.bind`, once, before a study is written): what needs this machine, the
objective's ``bind`` (the classifier loads its dataset, checks the batch sizes against it and a
GPU's memory, reads a pretrained init's checkpoint) or the toolkit's (the device exists). Each
error names the file, the key and the value, and exits 2 with nothing stored. The validated
config is stored with the study (:meth:`StudyConfig.to_dict`) so ``tuner resume NAME`` needs
nothing else.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuner.core.errors import ConfigError, ObjectiveError, did_you_mean, warn_once
from tuner.core.toml_text import read_study_file
from tuner.nn.device import check_device
from tuner.objectives import ObjectiveSpec, resolve_objective
from tuner.objectives.shared import (
    SHARED_RULES,
    bind_dataset,
    bind_toolkit_settings,
    check_metric_task,
    refuse_toolkit_typos,
    validate_toolkit_settings,
)
from tuner.run.study_table import (
    STUDY_DEFAULTS,
    check_study,
    metrics_and_directions,
    parse_constraints,
)
from tuner.search.pruners import PRUNERS, build_pruner
from tuner.search.samplers import SAMPLERS, build_sampler, options_for
from tuner.search.space import SearchSpace
from tuner.search.space_table import parse_space

SECTIONS = ("study", "sampler", "pruner", "objective", "space")



@dataclass
class StudyConfig:
    """A validated study file. ``source`` is where it came from (for messages)."""

    name: str
    direction: str
    metric: str
    sampler: str
    pruner: str
    n_trials: int
    timeout: float | None
    seed: int
    objective: str
    objective_settings: dict[str, Any]
    space: SearchSpace
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner_options: dict[str, Any] = field(default_factory=dict)
    space_table: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    spec: ObjectiveSpec | None = field(default=None, repr=False, compare=False)
    pack: int = 1
    warm_start: str | None = None
    warm_start_top: int = 0
    # every objective (several: [study] metrics); metric and direction are the first
    metrics: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    constraints: tuple[tuple[str, str, float], ...] = ()  # (metric, "<=" | ">=", bound)
    bound: bool = field(default=False, compare=False)  # :meth:`bind` has run
    # the space as the file says it, before bind fitted it to a device (None: unbound)
    static_space: SearchSpace | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The canonical TOML-shaped form, stored with the study and reloadable by
        :func:`config_from_dict`."""
        study = {k: getattr(self, k) for k in STUDY_DEFAULTS
                 if k not in ("metrics", "directions", "constraints")
                 and getattr(self, k) is not None and not (k == "warm_start_top"
                                                          and not self.warm_start_top)}
        if self.multi:  # several objectives: their lists, not the first's metric/direction
            del study["metric"], study["direction"]
            study.update(metrics=list(self.metrics), directions=list(self.directions))
        if self.constraints:
            study["constraints"] = [f"{m} {op} {b:g}" for m, op, b in self.constraints]
        return {
            "study": study,
            "sampler": dict(self.sampler_options),
            "pruner": dict(self.pruner_options),
            "objective": {"name": self.objective, **self.objective_settings},
            "space": copy.deepcopy(self.space_table),
        }

    @property
    def multi(self) -> bool:
        """Whether the study has several objectives (``[study] metrics``)."""
        return len(self.metrics) > 1

    def fingerprint(self) -> str:
        """What must match for two configs to feed one study: objective, space, direction."""
        return fingerprint_of(self.to_dict())

    def with_overrides(self, **study_keys: Any) -> StudyConfig:
        """A copy with some ``[study]`` keys replaced (``None`` values ignored): the ``[study]``
        table checked again, and the sampler and pruner built again when one of them is
        replaced; the objective and the space, which do not change, are not parsed again (and a
        bound config stays bound)."""
        given = {k: v for k, v in study_keys.items() if v is not None}
        if not given:
            return self
        study = check_study({**self.to_dict()["study"], **given}, self.source)
        metrics, directions = metrics_and_directions(study, self.spec, self.source,
                                                     self.objective_settings)
        if given.keys() & {"sampler", "pruner"}:  # a new one must take the file's options
            _check_search(study, self.sampler_options, self.pruner_options, self.space,
                          self.objective_settings, self.source)
        return replace(self, name=study["name"], direction=directions[0], metric=metrics[0],
                       metrics=metrics, directions=directions,
                       sampler=study["sampler"], pruner=study["pruner"],
                       n_trials=study["n_trials"], timeout=study["timeout"], seed=study["seed"],
                       pack=study["pack"], warm_start=study["warm_start"],
                       warm_start_top=study["warm_start_top"])

    def task(self) -> str | None:
        """The study's task: ``[objective] task``, else its dataset's (a file's target decides:
        read here, once per process, an error when it cannot serve), else ``None`` (an
        objective that names no dataset)."""
        if self.objective_settings.get("task") is not None:
            return self.objective_settings["task"]
        if self.spec is not None and self.spec.task_of is not None:
            known = self.spec.task_of(self.objective_settings)
            if known is not None:
                return known
        data = bind_dataset(self.objective_settings, self.source)
        return None if data is None else data.task

    def bind(self) -> StudyConfig:
        """This config bound to this machine (see the module doc): the objective's ``bind``
        runs once per process for each objective, settings and space; a bound config is
        returned as it is."""
        if self.bound:
            return self
        key = json.dumps([self.objective, self.objective_settings, self.space_table,
                          self.source], sort_keys=True, default=str)
        if key not in _BOUND:
            assert self.spec is not None
            where = self.source
            if self.spec.bind is not None:
                _BOUND[key] = self.spec.bind(dict(self.objective_settings), self.space, where)
            else:
                bind_toolkit_settings(self.objective_settings, where)
                _BOUND[key] = self.space
        # a known metric (val_accuracy, val_mse …) must fit the task its data turned out to be
        check_metric_task(self.metric, bind_dataset(self.objective_settings, self.source),
                          self.source)
        return replace(self, space=_BOUND[key], bound=True, static_space=self.space)


_BOUND: dict[str, SearchSpace] = {}  # bind's results in this process (see StudyConfig.bind)


def fingerprint_of(raw: Mapping[str, Any]) -> str:
    """:meth:`StudyConfig.fingerprint` of a stored (TOML-shaped, canonical) config, without
    validating it: a stored study may name a device or a file this machine lacks."""
    study = raw.get("study", {})
    # Where a study runs (cpu, cuda:N) is a choice of each run, not part of what it is.
    objective = {k: v for k, v in raw.get("objective", {}).items() if k != "device"}
    return json.dumps(
        {"direction": study.get("direction"), "metric": study.get("metric"),
         **({"metrics": study["metrics"], "directions": study.get("directions")}
            if study.get("metrics") else {}),
         "objective": objective, "space": raw.get("space", {})},
        sort_keys=True, default=str,
    )


def load_config(path: str | Path, **overrides: Any) -> StudyConfig:
    """Read and validate a study file; ``overrides`` replace ``[study]`` keys (CLI flags)."""
    p = Path(path)
    raw = read_study_file(p)
    study = raw.setdefault("study", {})
    for key, registry in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if overrides.get(key) is not None:  # a flag's mistake is the flag's, not the file's
            registry.get(overrides[key], f"--{key}")
    if isinstance(study, dict):
        study.setdefault("name", p.stem)
        flag = overrides.get("sampler")
        if flag not in (None, study.get("sampler")) and isinstance(raw.get("sampler"), dict):
            raw["sampler"] = _options_for_flag(flag, raw["sampler"], p)
        study.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(raw, str(p))


def _options_for_flag(sampler: str, options: dict[str, Any], path: Path) -> dict[str, Any]:
    """A study file's ``[sampler]`` options for the sampler ``--sampler`` chose instead of its
    own: those it takes (a tpe file's ``n_ei_candidates`` would stop ``--sampler gp``)."""
    kept = options_for(sampler, options, SearchSpace())
    if dropped := sorted(set(options) - set(kept)):
        warn_once(f"{path}: [sampler] {', '.join(dropped)} left out: --sampler {sampler} does "
                  f"not take {'it' if len(dropped) == 1 else 'them'}",
                  key=f"flag options {sampler} {dropped}")
    return kept


def config_from_dict(raw: Mapping[str, Any], source: str = "<memory>") -> StudyConfig:
    """Validate a TOML-shaped dict (see the module doc) into a :class:`StudyConfig`."""
    where = source
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown table(s) {', '.join(f'[{u}]' for u in unknown)}"
            f"{did_you_mean(unknown, SECTIONS)}; valid: {', '.join(f'[{s}]' for s in SECTIONS)}"
        )
    for section in SECTIONS:
        if section in raw and not isinstance(raw[section], Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table, got {raw[section]!r}")
    for section in ("objective", "space"):
        if section not in raw:
            raise ConfigError(f"{where}: missing table [{section}]")

    study = check_study(dict(raw.get("study", {})), where)
    objective = dict(raw["objective"])
    name = objective.pop("name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: [objective] name must name an objective, got {name!r}")
    try:
        spec = resolve_objective(name)
    except ObjectiveError as e:
        raise ObjectiveError(f"{where}: [objective] name: {e}") from None

    space_table = dict(raw["space"])
    space = parse_space(space_table, spec.param_rules, where, SHARED_RULES)
    if spec.validate is not None:
        objective, space = spec.validate(objective, space, where)
    else:  # the settings the toolkit reads (device, dataset, epochs …) are checked for all
        objective = validate_toolkit_settings(refuse_toolkit_typos(objective, where), where)
    if not space.searched():
        raise ConfigError(f"{where}: [space] searches nothing; give at least one list or range")

    metrics, directions = metrics_and_directions(study, spec, where, objective)
    sampler_options = dict(raw.get("sampler", {}))
    pruner_options = dict(raw.get("pruner", {}))
    _check_search(study, sampler_options, pruner_options, space, objective, where)

    return StudyConfig(
        name=study["name"], direction=directions[0], metric=metrics[0], metrics=metrics,
        directions=directions, constraints=parse_constraints(study["constraints"]),
        sampler=study["sampler"],
        pruner=study["pruner"], n_trials=study["n_trials"], timeout=study["timeout"],
        seed=study["seed"], objective=name, objective_settings=objective, space=space,
        sampler_options=sampler_options, pruner_options=pruner_options,
        space_table=space_table, source=source, spec=spec, pack=study["pack"],
        warm_start=study["warm_start"], warm_start_top=study["warm_start_top"],
    )


def _check_search(study: Mapping[str, Any], sampler_options: dict[str, Any],
                  pruner_options: dict[str, Any], space: SearchSpace,
                  objective: Mapping[str, Any], where: str) -> None:
    """Building the sampler and the pruner once is the validation of their options (grid needs
    a finite space …)."""
    build_sampler(study["sampler"], sampler_options, study["seed"], space, f"{where}: [sampler]",
                  n_objectives=len(study["metrics"] or (1,)))
    build_pruner(study["pruner"], pruner_options, objective.get("epochs", 1), f"{where}: [pruner]")


# --------------------------------------------------------------------------- device
def with_device(raw: dict[str, Any], device: str | None) -> dict[str, Any]:
    """A TOML-shaped study config with ``[objective] device`` replaced (``None``: unchanged).
    A device is where a study runs, not part of what it is: a run may choose its own."""
    if device is None:
        return raw
    return {**raw, "objective": {**raw.get("objective", {}), "device": device}}


def config_on_device(config: StudyConfig, device: str | None,
                     where: str = "--device") -> StudyConfig:
    """``config`` to run on ``device`` (``None``: unchanged), not yet bound there; ``device`` is
    checked first, so a bad one names ``where``."""
    if device is None:
        return config
    check_device(device, where)
    settings = {**config.objective_settings, "device": device}
    return replace(config, objective_settings=settings, bound=False, static_space=None,
                   space=config.static_space or config.space)  # bound again on ``device``
