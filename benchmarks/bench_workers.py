"""Workers: finished trials per minute with 1 and with 2 worker processes on local PostgreSQL.

    .venv/bin/python benchmarks/bench_workers.py [--trials 40] [--rounds 3]

The quickstart objective (digits, MLP 2x64, SGD, 5 epochs, the quickstart space) without
pruning, so every trial trains all its epochs, and both sides train the same configurations
(drawn once at random, queued into each study). A side is ``tuner run --jobs N``
(:func:`tuner.run.workers.run_jobs`: N ``tuner worker`` processes, torch threads per worker from
:func:`tuner.run.workers.threads_per_worker`) on a fresh study in one scratch database. Sides
alternate 1, 2, 1, 2, …; the ratio is of the medians. Two rates: *wall* from launching the
workers to the last one's exit (process start-up included) and *steady* from the first trial's
start to the last trial's end, read from the storage. It also prints the CPU time per trial
spent in the workers (start-up included) and in the PostgreSQL server: on 2 cores the server's
share is what 2 workers cannot have.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from _common import enqueue, fixed_params, machine, scratch_pg

from tuner.run.config import config_from_dict, load_config
from tuner.run.study import prepare_study
from tuner.run.workers import run_jobs, threads_per_worker
from tuner.store.storage import open_storage


def postgres_cpu_s() -> float:
    """CPU seconds used so far by the local PostgreSQL server (Linux /proc): its live
    processes, plus the backends that already ended (in the postmaster's children times)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            if fields[0].endswith("(postgres"):
                total += sum(int(x) for x in fields[1].split()[11:15])  # u/s time, children's
        except (OSError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def one_side(config, params, url: str, jobs: int, tag: str) -> tuple[float, float]:
    """(wall, steady) finished trials per minute of ``jobs`` workers; also prints the CPU
    each trial cost in the workers and in the PostgreSQL server."""
    config = config.with_overrides(name=f"bench-{tag}")
    enqueue(prepare_study(config, open_storage(url)), params)
    pg_before = postgres_cpu_s()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = run_jobs(config, url, jobs=jobs)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    pg_cpu = postgres_cpu_s() - pg_before
    print(f"    {jobs} worker(s): CPU per trial {1000 * worker_cpu / len(params):.0f} ms in the "
          f"workers, {1000 * pg_cpu / len(params):.0f} ms in PostgreSQL (whole server)")
    done = [t for t in result.study.get_trials(deepcopy=False) if t.state.is_finished()]
    # Diverging configurations end early as pruned ones, the same on both sides.
    assert len(done) == len(params) and all(t.state.name != "FAIL" for t in done), \
        f"{tag}: {len(done)} finished of {len(params)}"
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    steady = (last - first).total_seconds()
    return 60 * len(done) / wall, 60 * len(done) / steady


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="default: the study file's")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    raw = load_config("studies/quickstart.toml").to_dict()
    raw["study"].update(sampler="random", pruner="none", n_trials=args.trials)
    raw.pop("pruner", None)  # the quickstart's patient-pruner options: no pruner, no options
    if args.epochs:
        raw["objective"]["epochs"] = args.epochs
    config = config_from_dict(raw, "studies/quickstart.toml")
    params = fixed_params(config, args.trials)
    print(f"machine: {machine()}")
    print(f"quickstart objective ({config.objective_settings['epochs']} epochs), no pruning, "
          f"{args.trials} identical trials per side, "
          f"threads per worker: 1 worker {threads_per_worker(1)}, 2 workers "
          f"{threads_per_worker(2)}; {args.rounds} rounds")
    rates: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    with scratch_pg() as url, tempfile.TemporaryDirectory() as pictures:
        os.environ["TUNER_ARTIFACT_DIR"] = pictures  # the workers inherit it
        for r in range(args.rounds):
            for jobs in (1, 2):
                rates[jobs].append(one_side(config, params, url, jobs, f"{jobs}w-{r}"))
                wall, steady = rates[jobs][-1]
                print(f"  round {r + 1}, {jobs} worker(s): {wall:6.1f} trials/min wall, "
                      f"{steady:6.1f} steady", flush=True)
    med = {j: (statistics.median(w for w, _ in v), statistics.median(s for _, s in v))
           for j, v in rates.items()}
    print(f"median 1 worker : {med[1][0]:6.1f} trials/min wall, {med[1][1]:6.1f} steady")
    print(f"median 2 workers: {med[2][0]:6.1f} trials/min wall, {med[2][1]:6.1f} steady")
    print(f"ratio 2/1       : {med[2][0] / med[1][0]:.2f}x wall, "
          f"{med[2][1] / med[1][1]:.2f}x steady")
    print(f"load average after: {machine().rsplit('load average ', 1)[1]}")


if __name__ == "__main__":
    main()
