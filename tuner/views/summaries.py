"""Summaries of stored studies as plain data (dicts/lists): what ``list``, ``show`` and
``export`` print, in a form scripts can use too. They read
:class:`~tuner.store.snapshot.StudySnapshot` objects, from either of its two readers; a trial is
Optuna's FrozenTrial or a :class:`~tuner.store.snapshot.TrialSnapshot`."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from typing import Any

from tuner.core.keys import CONFIG_ATTR, FAIL_REASON, INIT_VERDICT, UNTRAINED_VALUE, WARM_START
from tuner.store.snapshot import StudySnapshot, count_states, study_metric
from tuner.views.real_params import real_params

# No Optuna here (``list``, ``show`` and ``export`` stay light): a trial (``Any``) is Optuna's
# FrozenTrial or a TrialSnapshot, a study an optuna.Study or a StudySnapshot.


def _number(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v


def trial_record(trial: Any) -> dict[str, Any]:
    """One trial as JSON-ready data."""
    duration = trial.duration.total_seconds() if trial.duration else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": _number(trial.value) if trial.values else None,
        "params": real_params(trial),
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": (
            trial.datetime_complete.isoformat() if trial.datetime_complete else None
        ),
        "duration_s": duration,
        "last_step": trial.last_step,
        "user_attrs": dict(trial.user_attrs),
    }


def study_summary(study: StudySnapshot, top: int = 5) -> dict[str, Any]:
    """Name, direction, counts per state, best trial and the ``top`` best complete trials."""
    trials = study.trials
    config = study.user_attrs.get(CONFIG_ATTR)
    best = study.best()
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    complete.sort(key=lambda t: t.value, reverse=study.maximize)
    return {
        "name": study.study_name,
        "direction": study.directions[0].lower(),
        "metric": study_metric(study),
        "objective": (config or {}).get("objective", {}).get("name"),
        "sampler": (config or {}).get("study", {}).get("sampler"),
        "pruner": (config or {}).get("study", {}).get("pruner"),
        "budget": (config or {}).get("study", {}).get("n_trials"),
        "n_trials": len(trials),
        "states": count_states(trials),
        "best": trial_record(best) if best else None,
        "top": [trial_record(t) for t in complete[:top]],
        "failed": [{"number": t.number, "reason": t.user_attrs.get(FAIL_REASON)}
                   for t in trials if t.state.name == "FAIL"],
        "running": study.running,
        "created_by_tuner": config is not None,
        "warm_start": {"from": (config or {}).get("study", {}).get("warm_start"),
                       "n": sum(WARM_START in t.user_attrs for t in trials)},
    }


def list_studies(studies: list[StudySnapshot]) -> list[dict[str, Any]]:
    """One row per stored study: name, direction, trial counts and best value."""
    rows = []
    for study in studies:
        multi = len(study.directions) > 1  # another Optuna user's multi-objective study
        best = study.best()
        starts = [t.datetime_start for t in study.trials if t.datetime_start]
        rows.append({
            "name": study.study_name,
            "direction": "multi" if multi else study.directions[0].lower(),
            "n_trials": len(study.trials),
            "states": count_states(study.trials),
            "stale": sum(r["stale"] for r in study.running),
            "best_value": _number(best.value) if best else None,
            "started": min(starts).isoformat(timespec="seconds") if starts else None,
        })
    return sorted(rows, key=lambda r: r["name"])


def export_trials(study: StudySnapshot, fmt: str) -> str:
    """All trials as ``csv`` (one row per trial, ``param_*`` columns) or ``json``."""
    records = [trial_record(t) for t in study.trials]
    if fmt == "json":
        return json.dumps({"study": study.study_name, "trials": records}, indent=2) + "\n"
    param_names = sorted({k for r in records for k in r["params"]})
    attr_names = sorted({k for r in records for k, v in r["user_attrs"].items()
                         if not isinstance(v, dict | list)})
    columns = ["number", "state", "value", "datetime_start", "datetime_complete", "duration_s",
               "last_step", *(f"param_{p}" for p in param_names),
               *(f"attr_{a}" for a in attr_names)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        row = [r[c] for c in columns[:7]]
        row += [r["params"].get(p) for p in param_names]
        row += [r["user_attrs"].get(a) for a in attr_names]
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def scheme_table(
    trials: list[Any], maximize: bool = True
) -> list[dict[str, Any]]:
    """Per init scheme: trials, states, verdicts, best and mean value (of trials with a value),
    best scheme first.

    Works on any study whose trials have an ``init`` param (searched) — the data behind a
    per-scheme comparison in ``tuner show``/reports. A trial pruned as a dead init has the
    untrained network's value (see ``ctx.check_init``).
    """
    rows: dict[str, dict[str, Any]] = {}
    for t in trials:
        scheme = t.params.get("init")
        if scheme is None:
            continue
        row = rows.setdefault(scheme, {"init": scheme, "n": 0, "states": {}, "verdicts": {},
                                       "values": []})
        row["n"] += 1
        row["states"][t.state.name] = row["states"].get(t.state.name, 0) + 1
        verdict = t.user_attrs.get(INIT_VERDICT)
        if verdict:
            row["verdicts"][verdict] = row["verdicts"].get(verdict, 0) + 1
        if t.value is not None and math.isfinite(t.value):
            row["values"].append(t.value)
    for row in rows.values():
        values = row.pop("values")
        row["best"] = (max(values) if maximize else min(values)) if values else None
        row["mean"] = sum(values) / len(values) if values else None
    sign = -1.0 if maximize else 1.0
    return sorted(rows.values(), key=lambda r: (r["best"] is None, sign * (r["best"] or 0.0)))


CHANCE_MIN_TRIALS = 3  # complete trials it takes to say "nothing was learned" of a run


def noise_of(untrained: list[float]) -> float:
    """How far a value may sit from the untrained networks' and still be noise: twice the
    spread of their values (random inits differ: accuracies of 0.08 to 0.14 at chance on
    digits), at least 0.02 or 2% of their median."""
    middle = statistics.median(untrained)
    return max(0.02, 0.02 * abs(middle), 2 * statistics.pstdev(untrained))


def nothing_learned(study: Any, trials: list[Any]) -> str | None:
    """A warning when every complete trial among ``trials`` (at least
    :data:`CHANCE_MIN_TRIALS`, each knowing its untrained network's value) ended within noise
    (:func:`noise_of`) of the untrained networks' value: training changed nothing, whatever
    was sampled."""
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    known = [t for t in complete if UNTRAINED_VALUE in t.user_attrs]
    if len(known) < max(CHANCE_MIN_TRIALS, len(complete)):
        return None
    before = [t.user_attrs[UNTRAINED_VALUE] for t in known]
    untrained, noise = statistics.median(before), noise_of(before)
    if any(abs(t.value - untrained) > noise for t in known):
        return None
    lrs = [t.params["lr"] for t in known if isinstance(t.params.get("lr"), int | float)]
    optimizer = study.user_attrs.get(CONFIG_ATTR, {}).get("space", {}).get("optimizer")
    optimizer = optimizer if isinstance(optimizer, str) else "chosen"
    why = f"the learning rate is far too high or too low for the {optimizer} optimizer"
    if lrs:
        why = (f"the learning rate (these trials drew {min(lrs):.3g} to {max(lrs):.3g}) is far "
               f"too high or too low for the {optimizer} optimizer: change [space] lr "
               "(typical: 1e-4 to 1e-1 for sgd, 1e-5 to 1e-2 for adam)")
    return (f"all {len(known)} complete trials of this run ended within noise of the "
            f"untrained network's {study_metric(study)} ({untrained:.3g}): nothing was "
            f"learned. Likely cause: {why}")
