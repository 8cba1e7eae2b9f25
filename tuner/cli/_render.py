"""Human-readable rendering of the dicts in :mod:`tuner.views.summaries` (rich tables)."""

from __future__ import annotations

from typing import Any

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
        table.add_row(r["name"], r["direction"], str(r["n_trials"]), _states(r["states"]),
                      _v(r["best_value"]), r["started"] or "—")
    out.print(table)


def render_trial_params(best: dict[str, Any], indent: str = "  ") -> None:
    for k, v in best["params"].items():
        out.print(f"{indent}{k} = {_v(v)}")


def render_show(s: dict[str, Any]) -> None:
    metric = s["metric"]
    out.print(f"[bold]study {s['name']}[/bold]  ({s['direction']} {metric})")
    if s["objective"]:
        out.print(f"objective {s['objective']} · sampler {s['sampler']} · pruner {s['pruner']}"
                  f" · budget {s['budget']} finished trials")
    else:
        out.print("created outside tuner (no stored study file)")
    out.print(f"trials: {s['n_trials']} ({_states(s['states']) or 'none'})")
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
            table.add_row(str(t["number"]), _v(t["value"]), *cells, _v(t["duration_s"]))
        out.print(table)
