"""Does a warm start reach the old study's best in fewer trials than a cold start?

    .venv/bin/python benchmarks/warm_start.py [--study studies/quickstart.toml] [--old-seed 1000]
        [--seeds 0 1 2 3 4 5 6 7] [--trials 25] [--top 0] [--jobs 2]

One "old" study runs with ``--old-seed``; its best value is the target. Then, for every seed,
a cold study and a warm one (``warm_start`` = the old study, ``--top`` of its best rerun first)
run with the same seed and budget. Printed: per seed the trials each took to reach the target
(own trials only: the warm start's prior observations are not counted, as in the budget), and
the expected trials to the target over the seeds (as ``tuner compare``), warm against cold with
a 90% paired bootstrap interval. Every run is a real ``tuner.run.study.run`` on its own SQLite
file in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(study_file: str, folder: str, name: str, seed: int, trials: int,
         warm: str | None, top: int) -> tuple[list[float | None], float]:
    os.environ.setdefault("TUNER_CPU_THREADS", "1")
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one table, not a line per trial
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    from tuner.core.keys import WARM_START
    from tuner.run.config import load_config
    from tuner.run.study import run

    config = load_config(study_file, name=name, seed=seed, n_trials=trials, warm_start=warm,
                         warm_start_top=top if warm else None)
    study = run(config, f"sqlite:///{folder}/{name}.db" if warm is None
                else f"sqlite:///{folder}/old.db").study
    own = [t for t in study.trials if WARM_START not in t.user_attrs]
    values = [t.value if t.state.name == "COMPLETE" else None for t in own]
    best = study.best_value if warm is None else max(
        (v for v in values if v is not None), default=float("nan"))
    return values, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default=str(ROOT / "studies" / "quickstart.toml"))
    parser.add_argument("--old-seed", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--top", type=int, default=0, help="warm_start_top of the warm runs")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    from tuner.run.config import load_config
    from tuner.search.best_so_far import (
        best_so_far,
        expected_trials,
        ratio_interval,
        trials_to_target,
    )

    maximize = load_config(args.study).direction == "maximize"
    with tempfile.TemporaryDirectory() as folder:
        _, target = _run(args.study, folder, "old", args.old_seed, args.trials, None, 0)
        print(f"old study (seed {args.old_seed}, {args.trials} trials): best {target:.4g} = "
              "the target")
        with ProcessPoolExecutor(args.jobs) as pool:
            cold = {s: pool.submit(_run, args.study, folder, f"cold-{s}", s, args.trials, None, 0)
                    for s in args.seeds}
            cold_done = {s: f.result() for s, f in cold.items()}
            warm = {s: pool.submit(_run, args.study, folder, f"warm-{s}", s, args.trials, "old",
                                   args.top) for s in args.seeds}
            warm_done = {s: f.result() for s, f in warm.items()}
    rows = {"cold": [], "warm": []}
    print("| seed | cold: trials to target | warm: trials to target |")
    print("|---|---|---|")
    for s in args.seeds:
        got = []
        for kind, done in (("cold", cold_done), ("warm", warm_done)):
            values, _ = done[s]
            to = trials_to_target(best_so_far(values, maximize), target, maximize)
            rows[kind].append((to, len(values)))
            got.append("—" if to is None else str(to))
        print(f"| {s} | {got[0]} | {got[1]} |")
    cold_e, warm_e = expected_trials(rows["cold"]), expected_trials(rows["warm"])
    lo, hi = ratio_interval(rows["warm"], rows["cold"])
    print(f"expected trials to target: cold {cold_e:.1f}, warm {warm_e:.1f} "
          f"(warm_start_top {args.top}); warm/cold {warm_e / cold_e:.2f}x [{lo:.2f}, {hi:.2f}] "
          f"over {len(args.seeds)} seeds; reached: cold "
          f"{sum(t is not None for t, _ in rows['cold'])}, warm "
          f"{sum(t is not None for t, _ in rows['warm'])} of {len(args.seeds)}")


if __name__ == "__main__":
    main()
