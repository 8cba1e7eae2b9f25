"""Storage overhead per trial: the same trials on in-memory, SQLite, journal and PostgreSQL.

    .venv/bin/python benchmarks/bench_storage.py [--trials 30] [--rounds 3]

The quickstart study as it ships (digits, MLP 2x64, 5 epochs, median pruner) runs the same
configurations (drawn once, queued into each study) in this process through
:func:`tuner.run.study.optimize`, the ``tuner run`` path, on Optuna's in-memory storage, a SQLite
file, a journal file and a scratch database on the local PostgreSQL server, each opened the
way tuner opens it (heartbeats on for SQLite and PostgreSQL), all storing their per-trial
pictures in one temporary folder. Trials are seeded by number, so
every storage trains and prunes exactly the same trials; what differs is the storage. Storages
alternate within each round; per-trial times are medians over rounds; overhead = per-trial
time minus in-memory's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from _common import enqueue, fixed_params, machine, scratch_pg

from tuner.run.config import load_config
from tuner.run.loop import run_trials
from tuner.run.study import prepare_study
from tuner.store.storage import open_storage

KINDS = ("in-memory", "sqlite", "journal", "postgresql")


def per_trial_s(config, params, storage) -> float:
    study = prepare_study(config, storage)
    enqueue(study, params)
    started = time.perf_counter()
    run_trials(study, config, n_trials=len(params), budget=None)
    elapsed = time.perf_counter() - started
    assert len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                           optuna.trial.TrialState.PRUNED))) \
        == len(params)
    return elapsed / len(params)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load_config("studies/quickstart.toml", n_trials=args.trials)
    params = fixed_params(config, args.trials)
    print(f"machine: {machine()}")
    print(f"quickstart study, {args.trials} identical trials per storage, {args.rounds} rounds")
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp, scratch_pg() as pg:
        # Every storage, in-memory included, then stores the same per-trial pictures.
        os.environ["TUNER_ARTIFACT_DIR"] = str(Path(tmp) / "artifacts")
        def storage(kind: str, tag: str):
            if kind == "in-memory":
                return optuna.storages.InMemoryStorage()
            url = {"sqlite": f"sqlite:///{Path(tmp) / f'{tag}.db'}",
                   "journal": f"journal:{Path(tmp) / f'{tag}.log'}", "postgresql": pg}[kind]
            return open_storage(url)

        per_trial_s(config.with_overrides(name="warm-up"), params[:3], storage("in-memory", ""))
        for r in range(args.rounds):
            for kind in KINDS:
                cfg = config.with_overrides(name=f"bench-{kind}-{r}")
                times[kind].append(per_trial_s(cfg, params, storage(kind, f"r{r}")))
            print("  round", r + 1, "  ".join(f"{k} {times[k][-1] * 1000:.0f} ms" for k in KINDS),
                  flush=True)
    base = statistics.median(times["in-memory"])
    print(f"{'storage':<11} {'ms/trial':>9} {'overhead ms':>12} {'ratio':>6}")
    for kind in KINDS:
        t = statistics.median(times[kind])
        print(f"{kind:<11} {t * 1000:9.0f} {(t - base) * 1000:12.0f} {t / base:6.2f}")
    print(f"load average after: {machine().rsplit('load average ', 1)[1]}")


if __name__ == "__main__":
    main()
