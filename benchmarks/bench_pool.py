"""The shared pool at scale: N pool workers over 8 queued studies of different priorities and
limits, on PostgreSQL, with trials that sleep (so the machine's cores are not the limit).

Prints, for each N: finished trials per second against the ideal (N / sleep), every budget
exact, each study's mean running trials against what its priority and --max-parallel give, the
time from `tuner submit` returning to the study's first trial running on the warm pool, and the
API's latency (p50, p99) with 50 concurrent clients while the pool runs.

    .venv/bin/python benchmarks/bench_pool.py --workers 16 32
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, scratch_pg

TUNER = str(Path(sys.executable).parent / "tuner")
TOKEN = "bench-token-" + "x" * 24
SLEEPY = '''
import time

def objective(trial, ctx):
    x = trial.suggest_float("x", 0.0, 1.0)
    time.sleep(float(ctx.settings.get("sleep", 0.5)))
    return x
'''
# (priority, max_parallel) of the 8 studies: strict priority, limits, and three equals at the
# bottom that share what is left
STUDIES = [(3, 4), (2, 4), (2, 4), (1, 4), (1, 4), (0, None), (0, None), (0, None)]


def expected(n: int) -> list[float]:
    """Each study's running trials under the queue's rules while all of them have trials left:
    priorities in turn, each study up to its limit, equals sharing what is left evenly."""
    free, out = float(n), [0.0] * len(STUDIES)
    for p in sorted({p for p, _ in STUDIES}, reverse=True):
        group = [i for i, (q, _) in enumerate(STUDIES) if q == p]
        while free > 1e-9 and group:
            each = free / len(group)
            capped = [i for i in group if STUDIES[i][1] is not None
                      and STUDIES[i][1] - out[i] <= each]
            if not capped:
                for i in group:
                    out[i] += each
                free = 0.0
                break
            for i in capped:
                free -= STUDIES[i][1] - out[i]
                out[i] = STUDIES[i][1]
                group.remove(i)
    return out


def study_file(folder: Path, name: str, n_trials: int, sleep: float) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'[study]\nname = "{name}"\nsampler = "random"\npruner = "none"\n'
                    f'n_trials = {n_trials}\ndirection = "maximize"\n\n[objective]\n'
                    f'name = "sleepy:objective"\nsleep = {sleep}\n\n[space]\n'
                    'x = { low = 0.0, high = 1.0 }\n')
    return path


def get(base: str, path: str) -> object:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def queue_entry(url: str, name: str):
    import optuna

    from tuner.store.queue import QueueEntry
    from tuner.store.storage import open_storage

    return QueueEntry.of(optuna.load_study(study_name=name, storage=open_storage(url)).user_attrs)


def trials_of(url: str, name: str) -> list:
    import optuna

    from tuner.store.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()


def one(n: int, sleep: float, seconds: float, url: str, folder: Path) -> dict[str, object]:
    env = {**os.environ, "TUNER_STORAGE": url, "TUNER_API_TOKEN": TOKEN}
    log = (folder / "serve.log").open("w")  # a file: a pipe nobody reads would block them all
    server = subprocess.Popen([TUNER, "serve", "--port", "0", "--workers", str(n),
                               "--allow-objective", "sleepy:objective"], cwd=folder, env=env,
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not (m := re.search(r"on (http://127\.0\.0\.1:\d+)",
                                  (folder / "serve.log").read_text())):
            assert time.monotonic() < deadline and server.poll() is None, "serve did not start"
            time.sleep(0.2)
        base = m.group(1)
        # a warm pool: every worker has sent its heartbeat
        deadline = time.monotonic() + 300
        while len(get(base, "/api/v1/workers")) < n:
            assert time.monotonic() < deadline, "the pool did not start"
            time.sleep(0.5)
        # submit to first trial: one small study on the idle, warm pool
        probe = study_file(folder, "probe", 1, 0.0)
        latency = []
        for k in range(3):
            subprocess.run([TUNER, "submit", str(probe), "--name", f"probe{k}"], cwd=folder,
                           env=env, check=True, capture_output=True)
            while not trials_of(url, f"probe{k}"):
                time.sleep(0.02)
            queued = queue_entry(url, f"probe{k}").submitted  # when the study was queued
            latency.append(trials_of(url, f"probe{k}")[0].datetime_start.timestamp() - queued)
        # the 8 studies, each with enough trials to outlast the window
        rate = n / sleep
        budgets = [max(8, int(rate * (seconds + 15) * e / n * 1.2) + 8) for e in expected(n)]
        from tuner.run.config import load_config
        from tuner.service.submit import submit

        sys.path.insert(0, str(folder))  # the objective, for the checks of a submit
        for i, ((priority, limit), budget) in enumerate(zip(STUDIES, budgets, strict=True)):
            # in this process: all 8 within a second (a `tuner submit` each took ~2 s here,
            # and the first studies would have run alone meanwhile)
            submit(load_config(study_file(folder, f"s{i}", budget, sleep)), url,
                   priority=priority, max_parallel=limit)
        time.sleep(3.0)  # every worker has chosen its study
        started = time.time()
        time.sleep(seconds)  # the pool alone: throughput and shares
        window_end = time.time()
        # then the API under 50 concurrent clients while the pool runs
        times: list[float] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                get(base, "/api/v1/studies")
                times.append(time.perf_counter() - t)

        with ThreadPoolExecutor(50) as pool:
            for _ in range(50):
                pool.submit(client)
            time.sleep(min(seconds, 15.0))
            stop.set()
        # then let everything finish, for the budgets
        deadline = time.monotonic() + 600
        while any(s["state"] != "finished" for s in get(base, "/api/v1/studies")["studies"]):
            assert time.monotonic() < deadline, "the studies did not finish"
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=120)
        log.close()
    per_study = [trials_of(url, f"s{i}") for i in range(len(STUDIES))]
    exact = all(len(ts) == b and all(t.state.name == "COMPLETE" for t in ts)
                for ts, b in zip(per_study, budgets, strict=True))
    span = window_end - started
    done = sum(1 for ts in per_study for t in ts
               if t.datetime_complete and started <= t.datetime_complete.timestamp() <= window_end)
    share = []
    for ts in per_study:  # time-averaged running trials over the window
        busy = sum(max(0.0, min(t.datetime_complete.timestamp(), window_end)
                       - max(t.datetime_start.timestamp(), started)) for t in ts)
        share.append(busy / span)
    api = sorted(times)
    return {"workers": n, "throughput": done / span, "ideal": rate, "exact": exact,
            "share": share, "expected": expected(n), "submit_to_first_s": latency,
            "api_p50_ms": 1000 * api[len(api) // 2],
            "api_p99_ms": 1000 * api[int(len(api) * 0.99)], "api_requests": len(api)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=[16, 32],
                   help="pool sizes to measure (default: 16 32)")
    p.add_argument("--sleep", type=float, default=0.5, help="seconds per trial (default 0.5)")
    p.add_argument("--seconds", type=float, default=30.0,
                   help="length of the measured window (default 30)")
    p.add_argument("--storage", help="a PostgreSQL URL to use (default: a scratch database "
                   "on the local server, one per pool size)")
    args = p.parse_args()
    print(machine())
    for n in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "sleepy.py").write_text(SLEEPY)
            if args.storage:
                r = one(n, args.sleep, args.seconds, args.storage, folder)
            else:
                with scratch_pg() as url:
                    r = one(n, args.sleep, args.seconds, url, folder)
        within = all(abs(s - e) <= max(0.1 * e, 0.5)
                     for s, e in zip(r["share"], r["expected"], strict=True))
        print(f"{n} workers: {r['throughput']:.1f} finished trials/s of an ideal "
              f"{r['ideal']:.0f} ({100 * r['throughput'] / r['ideal']:.0f}%); budgets exact: "
              f"{r['exact']}; submit to first trial "
              f"{', '.join(f'{x:.2f}' for x in r['submit_to_first_s'])} s; API with 50 "
              f"clients: p50 {r['api_p50_ms']:.0f} ms, p99 {r['api_p99_ms']:.0f} ms "
              f"({r['api_requests']} requests)")
        print("  running trials per study (priority/limit): " + "; ".join(
            f"{pr}/{lim or '-'} {s:.1f} (expected {e:.1f})"
            for (pr, lim), s, e in zip(STUDIES, r["share"], r["expected"], strict=True))
            + f"; all within 10%: {within}")
        print(f"  {machine()}")


if __name__ == "__main__":
    main()
