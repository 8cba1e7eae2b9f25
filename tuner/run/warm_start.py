"""Warm starts: a new study learns from another study's finished trials before its first own.

``tuner run FILE --warm-start NAME`` (or ``[study] warm_start = "NAME"``), from the same storage
or ``--warm-start-storage URL``. Every COMPLETE trial of NAME whose parameters fit this study's
space is copied into it as a prior observation (``Study.add_trials``: the sampler learns from
it as from a trial of its own), marked with the user attribute ``warm_start = "NAME #n"``; it is
not counted in the budget (:func:`tuner.store.studies.in_budget`), never the study's best, and
the views say so. ``--warm-start-top K`` (``warm_start_top``) also re-runs the best K first as
trials of this study (queued with ``enqueue_trial``, which tuner's claim lock makes safe with
several workers).

A trial fits when every parameter this study draws for it (its conditions included) has a value
inside this space, and every parameter this study fixes that the other study drew has the fixed
value. The other study must exist, optimise the same metric in the same direction, and have at
least one trial that fits: else one error, before anything is written. The copy is made once,
when the study has no trial yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.core.errors import ConfigError, StorageError, StudyNotFoundError
from tuner.core.keys import LOG2_SUFFIX, WARM_START
from tuner.run.config import StudyConfig
from tuner.search.space import SearchSpace
from tuner.store.credentials import mask_url
from tuner.store.snapshot import non_dominated
from tuner.store.storage import open_storage
from tuner.store.studies import load_existing, study_metrics

log = logging.getLogger("tuner")


@dataclass
class WarmStart:
    """What a warm start copies: ``trials`` (ready for ``add_trials``) from study ``name``, and
    the parameters of its ``top`` best to queue again."""

    name: str
    trials: list[FrozenTrial]
    rerun: list[dict[str, Any]]
    skipped: int  # complete trials of the other study that do not fit this space


def read_warm_start(config: StudyConfig, url: str, source_url: str | None = None,
                    top: int = 0) -> WarmStart | None:
    """The warm start ``config`` asks for (``[study] warm_start``), read from ``source_url``
    (default: this study's storage ``url``); ``None`` when it asks for none. Writes nothing."""
    name = config.warm_start
    if name is None:
        return None
    where = f"{config.source}: [study] warm_start = {name!r}"
    if name == config.name and source_url is None:
        raise ConfigError(f"{where}: a study cannot warm-start from itself; give another study "
                          "(or --warm-start-storage for one of that name elsewhere)")
    try:
        source = load_existing(name, open_storage(source_url or url, must_exist=True))
    except StorageError as e:  # no file there yet: nothing to start from
        raise ConfigError(f"{where}: {e}") from None
    except StudyNotFoundError as e:
        at = f" in {mask_url(source_url)}" if source_url else ""
        raise ConfigError(f"{where}: {e}{at}") from None
    directions = [d.name.lower() for d in source.directions]
    mine = list(config.directions or (config.direction,))
    theirs = study_metrics(source)
    if directions != mine or theirs not in (list(config.metrics or (config.metric,)), ["value"]):
        said = " and ".join(f"{d} {m}" for d, m in zip(directions, theirs, strict=False))
        goal = " and ".join(f"{d} {m}" for d, m in zip(mine, config.metrics or (config.metric,),
                                                      strict=False))
        raise ConfigError(f"{where}: that study is to {said}, this one to {goal}; a warm start "
                          "needs the same metrics and directions")
    complete = [t for t in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None and WARM_START not in t.user_attrs]
    fitting = [(t, p) for t in complete if (p := fit(t, config.space)) is not None]
    if not fitting:
        raise ConfigError(f"{where}: none of its {len(complete)} complete trials fits this "
                          "[space] (each drawn parameter must lie in its range or choices, and "
                          "each fixed one must have the same value)")
    distributions = {p.optuna_name: p.distribution() for p in config.space.searched()}
    trials = []
    for t, params in fitting:
        user_attrs = {k: v for k, v in t.user_attrs.items() if k in _KEPT}
        user_attrs[WARM_START] = f"{name} #{t.number}"
        trials.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=t.values, params=params,
            distributions={k: distributions[k] for k in params}, user_attrs=user_attrs))
    # best first by the first metric (several: the Pareto set's members first)
    front = {t.number for t in non_dominated([t for t, _ in fitting], directions)}
    sign = -1 if directions[0] == "maximize" else 1
    best_first = sorted(fitting, key=lambda tp: (tp[0].number not in front,
                                                  sign * tp[0].values[0]))
    rerun = [params for _, params in best_first[:top]]
    return WarmStart(name, trials, rerun, len(complete) - len(fitting))


_KEPT = ("batch_size", "init_verdict", "curve", "untrained_value", "feasible")  # views read them


def fit(trial: FrozenTrial, space: SearchSpace) -> dict[str, Any] | None:
    """``trial``'s parameters as this space draws them (Optuna names), or ``None`` when it does
    not fit (see the module doc)."""
    drawn: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for p in space.params:
        if not p.active(drawn):
            continue
        if not p.searched:
            old = trial.params.get(p.name, trial.user_attrs.get(p.name))  # batch_size: attr
            if old is not None and old != p.value:
                return None
            drawn[p.name] = p.value
            continue
        if p.optuna_name not in trial.params:
            return None
        value = trial.params[p.optuna_name]
        if not p.distribution()._contains(p.distribution().to_internal_repr(value)):
            return None
        params[p.optuna_name] = value
        drawn[p.name] = 2**value if p.optuna_name.endswith(LOG2_SUFFIX) and p.kind == "pow2" \
            else value
    return params


def add_warm_start(study: optuna.Study, warm: WarmStart | None) -> int:
    """Copy ``warm`` into ``study`` if it has no trial yet (call under the study's claim lock);
    returns how many prior observations it now has from it."""
    if warm is None:
        return 0
    trials = study.get_trials(deepcopy=False)
    if trials:
        had = sum(WARM_START in t.user_attrs for t in trials)
        if not had:
            log.warning("warm start from %r not applied: study %r has trials already (a warm "
                        "start is made when a study is created)", warm.name, study.study_name)
        return had
    study.add_trials(warm.trials)
    for params in warm.rerun:
        study.enqueue_trial(params)  # not skip_if_exists: the copies above hold these params
    return len(warm.trials)


def warm_start_line(warm: WarmStart | None, added: int) -> str | None:
    """What the run says of its warm start (``None``: there is none)."""
    if warm is None:
        return None
    skipped = f"; {warm.skipped} did not fit the space" if warm.skipped else ""
    rerun = f"; its best {len(warm.rerun)} run again first" if warm.rerun else ""
    return (f"warm start: {added} complete trials of study {warm.name!r} are prior "
            f"observations (not in the budget){skipped}{rerun}")
