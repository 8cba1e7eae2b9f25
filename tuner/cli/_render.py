"""Human-readable rendering of the dicts in :mod:`tuner.views.summaries` (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from tuner.cli._app import out

UNBOUNDED = 10_000  # columns: what a table would take with no width to keep to


def print_table(table: Table, records: list[list[str]]) -> None:
    """Print ``table`` without ever cutting a name or a value short (rich's ``val_…``).

    It keeps to the terminal's width when there is a terminal and the table fits it; on a
    terminal too narrow for it, each row becomes one line of ``header value`` pairs (the
    rows of ``records``, in the table's column order), which the terminal wraps. Anything else
    (a pipe, a file: rich would assume 80 columns, or ``$COLUMNS``) gets the table at its full
    width."""
    natural = Measurement.get(out, out.options.update_width(UNBOUNDED), table).maximum
    if natural <= out.width:
        out.print(table)
    elif not out.is_terminal:
        Console(file=out.file, width=natural, highlight=False, soft_wrap=True).print(table)
    else:
        headers = [str(c.header) for c in table.columns]
        if table.title:
            out.print(table.title)
        for cells in records:
            pairs = (f"#{v}" if h == "#" else f"{h} {v}"
                     for h, v in zip(headers, cells, strict=True))
            out.print("  " + " · ".join(pairs), markup=False)


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
    records = []
    for r in rows:
        stale = f" ({r['stale']} stale)" if r.get("stale") else ""
        records.append([r["name"], r["direction"], str(r["n_trials"]),
                        _states(r["states"]) + stale, _v(r["best_value"]), r["started"] or "—"])
        table.add_row(*map(escape, records[-1]))
    print_table(table, records)


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


def _render_pareto(s: dict[str, Any]) -> None:
    """The Pareto set of a study with several metrics: every metric a column."""
    front = s["top"]
    if not front:
        out.print("no complete trial yet")
        return
    feasible = " feasible" if s.get("constraints") else ""
    params = sorted({k for t in front for k in t["params"]})
    table = Table(title=f"Pareto set: {len(front)}{feasible} trial(s) no other beats in every "
                        "metric", title_justify="left")
    table.add_column("#", justify="right")
    for m in s["metrics"]:
        table.add_column(m, justify="right")
    for p in params:
        table.add_column(p)
    records = []
    for t in front:
        values = t.get("values") or {}
        records.append([str(t["number"]), *(_v(values.get(m)) for m in s["metrics"]),
                        *(_v(t["params"].get(p)) for p in params)])
        table.add_row(*map(escape, records[-1]))
    print_table(table, records)


def render_show(s: dict[str, Any]) -> None:
    metric = s["metric"]
    goal = " and ".join(f"{d} {m}" for d, m in zip(s["directions"], s["metrics"], strict=False))
    if s.get("constraints"):
        goal += "; subject to " + ", ".join(s["constraints"])
    out.print(f"[bold]study {s['name']}[/bold]  ({escape(goal)})")
    if s["objective"]:
        task = f" ({s['task']})" if s.get("task") else ""
        out.print(f"objective {s['objective']}{task} · sampler {s['sampler']} · pruner "
                  f"{s['pruner']} · budget {s['budget']} finished trials")
    else:
        out.print("created outside tuner (no stored study file)")
    out.print(f"trials: {s['n_trials']} ({_states(s['states']) or 'none'})")
    warm = s.get("warm_start") or {}
    if warm.get("n"):
        out.print(f"  {warm['n']} of them are prior observations from study "
                  f"{warm['from']!r} (warm start: not in the budget, never the best; marked w)")
    if s.get("pruned"):
        out.print("  pruned: " + ", ".join(f"{n} {kind}" for kind, n in s["pruned"].items()),
                  markup=False, highlight=False)
    render_running(s["name"], s["running"])
    render_failed(s["name"], s["failed"])
    if s.get("pareto"):
        _render_pareto(s)
        return
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
        records = []
        for t in s["top"]:
            cells = [_v(t["params"].get(p)) for p in params]
            number = f"{t['number']}{' w' if 'warm_start' in t['user_attrs'] else ''}"
            records.append([number, _v(t["value"]), *cells, _v(t["duration_s"])])
            table.add_row(*map(escape, records[-1]))
        print_table(table, records)


def render_queue(data: dict[str, Any]) -> None:
    """``tuner queue``: every submitted study, then the pool's live workers."""
    studies, workers = data["studies"], data["workers"]
    if not studies:
        out.print("the queue is empty; add a study with: tuner submit STUDY_FILE")
    else:
        table = Table(title="queue", title_justify="left")
        for header, justify in (("study", "left"), ("state", "left"), ("priority", "right"),
                                ("finished", "right"), ("running", "right"),
                                ("best", "right"), ("time left", "right"),
                                ("workers", "left")):
            table.add_column(header, justify=justify)  # type: ignore[arg-type]
        records = []
        for s in studies:
            limit = f" (max {s['max_parallel']})" if s["max_parallel"] else ""
            metric = s["metric"] if isinstance(s["metric"], str) else ", ".join(s["metric"])
            best = "—" if s["best"] is None else f"{metric} {_v(s['best'])}"
            left = "—" if s["eta_s"] is None or s["state"] in ("finished", "cancelled") \
                else f"~{_ago(s['eta_s'])}"
            state = s["state"] + (f": {s['reason']}" if s.get("reason") else "")
            records.append([s["name"], state, str(s["priority"]),
                            f"{s['finished']}/{_v(s['budget'])}", f"{s['running']}{limit}",
                            best, left, ", ".join(s["workers"]) or "—"])
            table.add_row(*map(escape, records[-1]))
        print_table(table, records)
        for s in studies:
            for worker, why in (s.get("blocked") or {}).items():
                out.print(f"  {s['name']}: blocked on worker {worker}: {why}", markup=False)
    if workers:
        out.print(f"pool: {len(workers)} worker(s)")
        for w in workers:
            doing = (f"study {w['study']!r} trial {w['trial']}" if w["study"] and
                     w["trial"] is not None else f"study {w['study']!r}" if w["study"]
                     else "idle")
            device = f" on {w['device']}" if w["device"] else ""
            out.print(f"  {w['id']}{device}: {doing} (last heartbeat "
                      f"{_ago(w['last_heartbeat_s_ago'])} ago)", markup=False)
    else:
        out.print("pool: no worker heard from in the last 30 s; start one with: "
                  "tuner worker --pool")
