"""Human-readable rendering of the dicts in :mod:`tuner.views.summaries` (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from tuner.cli._app import out


def _v(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _states(states: dict[str, int]) -> str:
    order = ["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"]
    return ", ".join(f"{states[s]} {s.lower()}" for s in order if states.get(s))


def render_list(rows: list[dict[str, Any]], storage: str) -> None:
    if not rows:
        out.print(f"no studies in {storage}")
        return
    table = Table(title=f"studies in {storage}", title_justify="left")
    for col in ("name", "direction", "trials", "states", "best", "started"):
        table.add_column(col, justify="right" if col in ("trials", "best") else "left")
    for r in rows:
        stale = f" ({r['stale']} stale)" if r.get("stale") else ""
        table.add_row(r["name"], r["direction"], str(r["n_trials"]), _states(r["states"]) + stale,
                      _v(r["best_value"]), r["started"] or "—")
    out.print(table)


def render_trial_params(best: dict[str, Any], indent: str = "  ") -> None:
    for k, v in best["params"].items():
        out.print(f"{indent}{k} = {_v(v)}")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render_running(name: str, running: list[dict[str, Any]]) -> None:
    for r in running:
        n, age = r["number"], r["heartbeat_age_s"]
        if r["stale"] and r["retried"]:
            out.print(f"  trial {n}: running, no heartbeat for {_ago(age)} (its process is gone); "
                      f"[bold]tuner resume {name}[/bold] will retry it")
        elif r["stale"]:
            since = f" since {_ago(r['started_s_ago'])} ago" if r["started_s_ago"] else ""
            out.print(f"  trial {n}: running{since} and never sent a heartbeat (a process "
                      "without heartbeats, e.g. plain Optuna): nothing will retry it")
        elif age is not None:
            out.print(f"  trial {n}: running (last heartbeat {_ago(age)} ago)")


MAX_FAILED_SHOWN = 10


def render_failed(name: str, failed: list[dict[str, Any]]) -> None:
    if not failed:
        return
    out.print("failed trials:")
    for f in failed[-MAX_FAILED_SHOWN:]:
        out.print(f"  #{f['number']} {escape(f['reason'] or '(no reason stored)')}",
                  highlight=False)
    if len(failed) > MAX_FAILED_SHOWN:
        out.print(f"  (the last {MAX_FAILED_SHOWN} of {len(failed)}; all of them: "
                  f"tuner show {name} --json)")


def render_show(s: dict[str, Any]) -> None:
    metric = s["metric"]
    out.print(f"[bold]study {s['name']}[/bold]  ({s['direction']} {metric})")
    if s["objective"]:
        out.print(f"objective {s['objective']} · sampler {s['sampler']} · pruner {s['pruner']}"
                  f" · budget {s['budget']} finished trials")
    else:
        out.print("created outside tuner (no stored study file)")
    out.print(f"trials: {s['n_trials']} ({_states(s['states']) or 'none'})")
    warm = s.get("warm_start") or {}
    if warm.get("n"):
        out.print(f"  {warm['n']} of them are prior observations from study "
                  f"{warm['from']!r} (warm start: not in the budget, never the best; marked w)")
    render_running(s["name"], s["running"])
    render_failed(s["name"], s["failed"])
    best = s["best"]
    if best is None:
        out.print("no complete trial yet")
        return
    out.print(f"best trial #{best['number']}: {metric} = {_v(best['value'])}")
    render_trial_params(best)
    if len(s["top"]) > 1:
        params = sorted({k for t in s["top"] for k in t["params"]})
        table = Table(title=f"top {len(s['top'])} trials", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column(metric, justify="right")
        for p in params:
            table.add_column(p)
        table.add_column("seconds", justify="right")
        for t in s["top"]:
            cells = [_v(t["params"].get(p)) for p in params]
            number = f"{t['number']}{' w' if 'warm_start' in t['user_attrs'] else ''}"
            table.add_row(number, _v(t["value"]), *cells, _v(t["duration_s"]))
        out.print(table)
