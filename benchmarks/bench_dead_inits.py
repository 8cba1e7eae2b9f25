"""What ``prune_dead_inits`` saves: epochs trained by a study with dead schemes in its space.

    .venv/bin/python benchmarks/bench_dead_inits.py [--seeds 0 1 2] [--study FILE] \\
        [--sampler random] [--pruner none]

Runs the study file as shipped twice per seed, side by side — ``prune_dead_inits = true`` (the
default) and ``false`` — and prints the epochs trained (the sum of every trial's learning-curve
length), the wall time, how many trials were stopped as dead inits, and the best value found.
The study's pruner (median) stays on in both, so the saving is on top of ordinary pruning;
``--pruner none`` shows the saving without it. With a model-based sampler the two runs drift
apart after the first dead trial (other lr and batch sizes, so other epoch times);
``--sampler random`` draws the same configurations in both, a paired comparison. The two runs
of a seed alternate which goes first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

import optuna

from tuner.nn.data import load_dataset
from tuner.run.config import config_from_dict
from tuner.run.study import run

ROOT = Path(__file__).resolve().parent.parent


def one(path: Path, seed: int, prune: bool, tmp: Path, args: argparse.Namespace
        ) -> dict[str, float]:
    raw = tomllib.loads(path.read_text())
    raw["study"].update(name=f"s{seed}-{prune}", seed=seed)
    for table in ("sampler", "pruner"):
        if getattr(args, table) is not None:
            raw["study"][table] = getattr(args, table)
            raw.pop(table, None)
    raw["objective"]["prune_dead_inits"] = prune
    config = config_from_dict(raw, str(path))
    started = time.monotonic()
    trials = run(config, f"journal:{tmp / f's{seed}-{prune}.journal'}").study.trials
    elapsed = time.monotonic() - started
    values = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    return {
        "epochs": sum(len(t.user_attrs.get("curve", {}).get("val_accuracy", [])) for t in trials),
        "seconds": elapsed,
        "dead": sum(str(t.user_attrs.get("prune_reason", "")).startswith("dead init")
                    for t in trials),
        "flagged": sum(t.user_attrs.get("init_verdict", "healthy") != "healthy" for t in trials),
        "best": max(values) if values else float("nan"),
        "trials": len(trials),
    }


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "init-schemes.toml")
    parser.add_argument("--pruner", default=None, help="override the study's pruner")
    parser.add_argument("--sampler", default=None, help="override the study's sampler")
    args = parser.parse_args()
    rows = []
    load_dataset("digits", seed=0)  # imports and first-touch costs out of the timed runs
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            order = (True, False) if seed % 2 == 0 else (False, True)
            runs = {prune: one(args.study, seed, prune, Path(tmp), args) for prune in order}
            on, off = runs[True], runs[False]
            rows.append((seed, on, off))
    shipped = tomllib.loads(args.study.read_text())["study"]
    sampler, pruner = args.sampler or shipped["sampler"], args.pruner or shipped["pruner"]
    print(f"{args.study.name} ({sampler} sampler, {pruner} pruner): prune_dead_inits on vs off, "
          "same seed, same budget\n")
    print("| seed | epochs on | epochs off | saved | dead inits pruned (on) | flagged (off) "
          "| time on / off | best on / off |")
    print("|---|---|---|---|---|---|---|---|")
    for seed, on, off in rows:
        saved = 1 - on["epochs"] / off["epochs"]
        print(f"| {seed} | {on['epochs']} | {off['epochs']} | {saved:.0%} | "
              f"{on['dead']}/{on['trials']} | {off['flagged']}/{off['trials']} | "
              f"{on['seconds']:.0f} s / {off['seconds']:.0f} s | "
              f"{on['best']:.3f} / {off['best']:.3f} |")
    saved = [1 - on["epochs"] / off["epochs"] for _, on, off in rows]
    print(f"\nmean epochs saved: {statistics.mean(saved):.0%}; "
          f"total {sum(o['epochs'] for _, _, o in rows) - sum(o['epochs'] for _, o, _ in rows)} "
          f"of {sum(o['epochs'] for _, _, o in rows)} epochs")


if __name__ == "__main__":
    main()
