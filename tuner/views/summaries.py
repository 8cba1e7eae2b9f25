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

from tuner.core.keys import (
    CONFIG_ATTR,
    CURVE,
    FAIL_REASON,
    INIT_VERDICT,
    PRUNE_REASON,
    TASK_ATTR,
    UNTRAINED_VALUE,
    WARM_START,
)
from tuner.store.snapshot import (
    StudySnapshot,
    count_states,
    pareto_front,
    study_metric,
    study_metrics,
)
from tuner.views.real_params import real_params

# No Optuna here (``list``, ``show`` and ``export`` stay light): a trial (``Any``) is Optuna's
# FrozenTrial or a TrialSnapshot, a study an optuna.Study or a StudySnapshot.


def _number(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v


def last_step(trial: Any) -> int | None:
    """The last step (epoch, counted from 1) a trial reached: the length of its learning curve
    (``ctx.report`` records every step there), else the last step its pruner was told.

    Optuna's own ``last_step`` is only the latter, and the pruner hears only the steps it can
    act on, never the last epoch (:mod:`tuner.search.report_steps`): a complete 12-epoch trial
    under the median pruner has intermediate values up to step 11, and none at all with
    ``pruner = "none"``. A dead init pruned before training has step 0 and no curve."""
    curve = trial.user_attrs.get(CURVE)
    lengths = [len(v) for v in curve.values() if isinstance(v, list)] \
        if isinstance(curve, dict) else []
    told = trial.last_step
    steps = max(lengths, default=0)
    return max(steps, told) if told is not None else (steps or None)


def trial_record(trial: Any, metrics: list[str] | None = None) -> dict[str, Any]:
    """One trial as JSON-ready data; with several ``metrics``, ``values`` by name too
    (``value`` is the first)."""
    duration = trial.duration.total_seconds() if trial.duration else None
    several = {} if not metrics or len(metrics) < 2 else {"values": dict(zip(
        metrics, (_number(v) for v in trial.values), strict=False)) if trial.values else None}
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": _number(trial.values[0]) if trial.values else None,
        **several,
        "params": real_params(trial),
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": (
            trial.datetime_complete.isoformat() if trial.datetime_complete else None
        ),
        "duration_s": duration,
        "last_step": last_step(trial),
        "user_attrs": dict(trial.user_attrs),
    }


def study_summary(study: StudySnapshot, top: int = 5) -> dict[str, Any]:
    """Name, direction, counts per state, best trial and the ``top`` best complete trials."""
    trials = study.trials
    config = study.user_attrs.get(CONFIG_ATTR)
    best = study.best()
    metrics = study_metrics(study)
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values]
    if len(study.directions) > 1:  # several metrics: the Pareto set, not a ranking
        complete = pareto_front(complete, study.directions)
    else:
        complete.sort(key=lambda t: t.values[0], reverse=study.maximize)
    return {
        "name": study.study_name,
        "direction": study.directions[0].lower(),
        "directions": [d.lower() for d in study.directions],
        "metric": study_metric(study),
        "metrics": metrics,
        "constraints": (config or {}).get("study", {}).get("constraints"),
        "objective": (config or {}).get("objective", {}).get("name"),
        "sampler": (config or {}).get("study", {}).get("sampler"),
        "pruner": (config or {}).get("study", {}).get("pruner"),
        "budget": (config or {}).get("study", {}).get("n_trials"),
        "n_trials": len(trials),
        "states": count_states(trials),
        "best": trial_record(best) if best else None,
        "top": [trial_record(t, metrics) for t in
                (complete if len(study.directions) > 1 else complete[:top])],
        "pareto": len(study.directions) > 1,
        "task": study.user_attrs.get(TASK_ATTR),
        "failed": [{"number": t.number, "reason": t.user_attrs.get(FAIL_REASON)}
                   for t in trials if t.state.name == "FAIL"],
        "pruned": prune_kinds(trials),
        "running": study.running,
        "created_by_tuner": config is not None,
        "warm_start": {"from": (config or {}).get("study", {}).get("warm_start"),
                       "n": sum(WARM_START in t.user_attrs for t in trials)},
    }


def prune_kind(reason: str | None) -> str:
    """A prune reason without its numbers and details, to count alike ones: "dead init
    (symmetric)", "training diverged", "by the median pruner", "pruned by the objective"."""
    if not reason:
        return "no reason stored"
    if reason.startswith("training diverged"):
        return "training diverged"
    if reason.startswith("pruned after epoch") and " by the " in reason:
        return "by the " + reason.split(" by the ", 1)[1]
    return reason.split(":", 1)[0].strip()


def prune_kinds(trials: list[Any]) -> dict[str, int]:
    """How many PRUNED trials were pruned for each kind of reason, the commonest first."""
    counts: dict[str, int] = {}
    for t in trials:
        if t.state.name == "PRUNED":
            kind = prune_kind(t.user_attrs.get(PRUNE_REASON))
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


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


TRIAL_COLUMNS = ["number", "state", "value", "datetime_start", "datetime_complete",
                 "duration_s", "last_step"]


def export_trials(study: StudySnapshot, fmt: str) -> str:
    """All trials as ``csv`` (one row per trial; the value's column is named after the study's
    metric, e.g. ``val_mse``; then ``param_*`` and ``attr_*`` columns) or ``json`` (the study,
    its metric and direction, and each trial's record, whose ``value`` is that metric)."""
    metrics = study_metrics(study)
    records = [trial_record(t, metrics) for t in study.trials]
    metric = study_metric(study)
    if fmt == "json":
        several = {"metrics": metrics, "directions": [d.lower() for d in study.directions]} \
            if len(metrics) > 1 else {}
        return json.dumps({"study": study.study_name, "metric": metric,
                           "direction": study.directions[0].lower(), **several,
                           "trials": records}, indent=2) + "\n"
    param_names = sorted({k for r in records for k in r["params"]})
    attr_names = sorted({k for r in records for k, v in r["user_attrs"].items()
                         if not isinstance(v, dict | list)})
    value_column = metric if metric not in TRIAL_COLUMNS else "value"  # a metric "state"…
    extra = [m for m in metrics[1:] if m not in TRIAL_COLUMNS]  # several metrics: one each
    columns = [value_column if c == "value" else c for c in TRIAL_COLUMNS]
    columns[columns.index(value_column) + 1:columns.index(value_column) + 1] = extra
    columns += [*(f"param_{p}" for p in param_names), *(f"attr_{a}" for a in attr_names)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        row = [r[c] for c in TRIAL_COLUMNS]
        if extra:
            values = r.get("values") or {}
            row[TRIAL_COLUMNS.index("value") + 1:TRIAL_COLUMNS.index("value") + 1] = [
                values.get(m) for m in extra]
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
    if len(getattr(study, "directions", [None])) > 1:  # several metrics: no one value to judge
        return None
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    known = [t for t in complete if UNTRAINED_VALUE in t.user_attrs]
    if len(known) < max(CHANCE_MIN_TRIALS, len(complete)):
        return None
    before = [t.user_attrs[UNTRAINED_VALUE] for t in known]
    untrained, noise = statistics.median(before), noise_of(before)
    if any(abs(t.value - untrained) > noise for t in known):
        return None
    # each trial against its own untrained network too: loss-like metrics vary widely between
    # inits (val_loss 2.4 to 4.0), and 1.5 is learning however wide that spread
    own = [abs(t.value - t.user_attrs[UNTRAINED_VALUE]) for t in known]
    if any(d > max(0.05, 0.1 * abs(t.user_attrs[UNTRAINED_VALUE])) for d, t in zip(own, known,
                                                                                 strict=True)):
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
