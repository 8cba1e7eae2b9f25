"""(e) samplers compared: trials for TPE and GP to reach the target, against random search.

    .venv/bin/python benchmarks/bench_samplers.py [--repeats 5] [--studies quickstart,init-schemes]
                                                 [-o DIR]

For each study file as it ships, :func:`tuner.run.compare.compare` runs random, TPE and GP with the
same ``repeats`` seeds each (in memory, two worker processes), the study's own budget, sampler
options and pruner. Target: the final best value that half of all runs reach. The ratio is
median trials-to-target of TPE (or GP) over random's; a run that never reaches the target counts
as more than the budget, so a ratio against an unreached median is a bound. Goal: <= 0.5.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from tuner.run.compare import compare
from tuner.run.config import load_config

SAMPLERS = ["random", "tpe", "gp"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--studies", default="quickstart,init-schemes")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="keep best.png, table.md, results.json per study here")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import machine

    print(f"machine: {machine()}")
    out = args.output or Path(tempfile.mkdtemp(prefix="bench-samplers-"))
    for name in args.studies.split(","):
        config = load_config(f"studies/{name}.toml")
        result = compare(config, SAMPLERS, repeats=args.repeats, jobs=args.jobs)
        result.write(out / name)
        print(result.table())
        rows = {r["sampler"]: r for r in result.summary()}
        base = rows["random"]["median_trials_to_target"]
        for s in ("tpe", "gp"):
            mine = rows[s]["median_trials_to_target"]
            if math.isinf(base) and math.isinf(mine):
                verdict = "neither median reaches the target: no ratio"
            elif math.isinf(base):
                verdict = f"< {mine / result.n_trials:.2f} (random's median never reaches it)"
            else:
                verdict = f"{mine / base:.2f}" if not math.isinf(mine) else "> 1 (never)"
            print(f"  {name}: median trials to target, {s} / random = {verdict} (goal <= 0.5)")
        print()
    print(f"plots and raw results: {out}")
    print(f"load average after: {machine().rsplit('load average ', 1)[1]}")


if __name__ == "__main__":
    main()
