"""Issue 11's whole-study comparison: tuner against the plain Optuna script, timed from outside.

    .venv/bin/python benchmarks/bench_whole_study.py [--seeds 0 1 2] [--trials 60]
        [--variants plain-1-thread plain tuner tuner-jobs-2 tuner-pack-8 tuner-jobs-2-spawn]
        [--before TREE] [--study whole|quickstart]

``--study quickstart`` times studies/quickstart.toml instead (25 trials; the plain script's
``--study quickstart`` is the same study by hand).

Every variant runs the same study (benchmarks/whole_study.toml, written by hand in
benchmarks/plain_optuna.py) as a fresh process on a fresh SQLite file: the wall time is the
whole command's, interpreter start-up and imports included, as the user waits for it. Variants
alternate within each seed (the order rotates from seed to seed), so a change in the machine's
load hits all of them; the load average is printed beside every run. The table gives per
variant the median wall time, the median best value, and the ratio of the plain 1-thread
script's wall time to the variant's (per seed, then the median): above 1 is faster than plain.
*First trial at* is the seconds from the launch to the first trial's stored start: the start-up
that no number of workers shortens (``--jobs 2`` can at best halve the rest).

``plain`` runs with torch's default thread count; ``plain-1-thread`` and tuner (which trains
with one intra-op thread per process, ``TUNER_CPU_THREADS``) with one. tuner reads the digits
split from its dataset cache after its first run (``$TUNER_CACHE_DIR``), as a user's later
runs do; the first tuner run of a benchmark fills it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
TUNER = [PY, "-m", "tuner"]
STUDY_FILES = {"whole": HERE / "whole_study.toml",
               "quickstart": HERE.parent / "studies" / "quickstart.toml"}
STUDY = {"name": "whole"}  # the --study of this run (main sets it)
VARIANTS = {
    "plain-1-thread": lambda seed, n, url: [PY, str(HERE / "plain_optuna.py"), "--study",
                                            STUDY["name"], "--seed", str(seed), "--trials",
                                            str(n), "--storage", url, "--threads", "1"],
    "plain": lambda seed, n, url: [PY, str(HERE / "plain_optuna.py"), "--study", STUDY["name"],
                                   "--seed", str(seed), "--trials", str(n), "--storage", url],
    "tuner": lambda seed, n, url: [*TUNER, "run", str(STUDY_FILES[STUDY["name"]]), "--name",
                                   "whole", "--seed", str(seed), "--n-trials", str(n),
                                   "--storage", url],
    "tuner-jobs-2": lambda seed, n, url: [*VARIANTS["tuner"](seed, n, url), "--jobs", "2"],
    "tuner-pack-8": lambda seed, n, url: [*VARIANTS["tuner"](seed, n, url), "--pack", "8"],
    "tuner-jobs-2-spawn": lambda seed, n, url: VARIANTS["tuner-jobs-2"](seed, n, url),
}
# A variant's own environment: -spawn starts its workers as new interpreters, as tuner did
# before it forked them from the started parent (tuner/run/workers/_fork.py).
ENV = {"tuner-jobs-2-spawn": {"TUNER_WORKER_START": "spawn"}}
BASE = "plain-1-thread"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def best_of(variant: str, out: str, url: str) -> tuple[float, int | None]:
    """The best value (and epochs trained) of a finished run."""
    if variant.startswith("plain"):
        row = json.loads(out.strip().splitlines()[-1])
        return row["best"], row["epochs"]
    import optuna

    study = optuna.load_study(study_name="whole", storage=url)
    epochs = sum(len(t.user_attrs.get("curve", {}).get("val_loss", [])) for t in study.trials)
    return study.best_value, epochs


def first_trial_after(url: str, launched: float) -> float:
    """Seconds from the command's launch to its first trial's start (the study's stored start
    times are the machine's local clock, as ``launched`` is): the start-up the user waits
    through before any training."""
    import optuna

    [name] = optuna.get_all_study_names(url)
    starts = [t.datetime_start.timestamp() for t in
              optuna.load_study(study_name=name, storage=url).trials if t.datetime_start]
    return min(starts) - launched


def run_one(variant: str, seed: int, n_trials: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'study.db'}"
        before = load()
        launched, started = time.time(), time.perf_counter()
        r = subprocess.run(VARIANTS[variant](seed, n_trials, url), capture_output=True,
                           text=True, cwd=tmp, env={**os.environ, **ENV.get(variant, {})})
        wall = time.perf_counter() - started
        if r.returncode != 0:
            sys.exit(f"{variant} seed {seed} failed ({r.returncode}):\n{r.stderr[-2000:]}")
        best, epochs = best_of(variant, r.stdout, url)
        first = first_trial_after(url, launched)
    return {"variant": variant, "seed": seed, "wall": wall, "best": best, "epochs": epochs,
            "first": first, "load": before}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--study", choices=list(STUDY_FILES), default="whole")
    p.add_argument("--trials", type=int, default=None,
                   help="default: the study's (60 whole, 25 quickstart)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                   default=[v for v in VARIANTS if v not in ENV])
    p.add_argument("--before", metavar="TREE", type=Path,
                   help="also run each tuner variant as 'before-…' with the tuner package of "
                   "TREE (e.g. a `git worktree add TREE COMMIT`), interleaved with the rest: "
                   "an A/B of two versions in one run")
    args = p.parse_args()
    STUDY["name"] = args.study
    args.trials = args.trials or {"whole": 60, "quickstart": 25}[args.study]
    variants = list(dict.fromkeys([BASE, *args.variants]))
    if args.before is not None:
        tree = str(args.before.resolve())
        for variant in [v for v in variants if v.startswith("tuner")]:
            VARIANTS[f"before-{variant}"] = VARIANTS[variant]
            ENV[f"before-{variant}"] = {**ENV.get(variant, {}), "PYTHONPATH": tree}
            variants.append(f"before-{variant}")
    sys.path.insert(0, str(HERE))
    from _common import machine

    print(f"machine: {machine()}")
    shown = STUDY_FILES[args.study].relative_to(HERE.parent)
    print(f"study: {shown}, {args.trials} trials, SQLite, seeds {args.seeds}")
    runs: list[dict] = []
    for i, seed in enumerate(args.seeds):
        order = variants[i % len(variants):] + variants[:i % len(variants)]
        for variant in order:
            row = run_one(variant, seed, args.trials)
            runs.append(row)
            print(f"  seed {seed} {variant:<25} {row['wall']:6.1f} s  best {row['best']:.4f}  "
                  f"epochs {row['epochs']}  first trial at {row['first']:.1f} s  "
                  f"(load before: {row['load']})", flush=True)
    base = {r["seed"]: r["wall"] for r in runs if r["variant"] == BASE}
    print(f"\n| variant | median wall | median best | epochs | first trial at | {BASE} wall / "
          "variant wall (per seed) |")
    print("|---|---|---|---|---|---|")
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        ratios = [base[r["seed"]] / r["wall"] for r in mine]
        print(f"| {variant} | {statistics.median(r['wall'] for r in mine):.1f} s | "
              f"{statistics.median(r['best'] for r in mine):.4f} | "
              f"{statistics.median(r['epochs'] for r in mine):.0f} | "
              f"{statistics.median(r['first'] for r in mine):.1f} s | "
              f"**{statistics.median(ratios):.2f}x** ({' '.join(f'{x:.2f}' for x in ratios)}) |")
    print(f"load average at the end: {load()}")


if __name__ == "__main__":
    main()
