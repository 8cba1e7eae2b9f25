"""Does the init scheme decide whether a deep net trains? Mean best accuracy per scheme.

    .venv/bin/python benchmarks/bench_init_schemes.py [--seeds 0 1 2] [--trials 8]
    .venv/bin/python benchmarks/bench_init_schemes.py --study [--seeds 0 1 2]

Default: ``studies/init-schemes.toml`` (8 x 64 MLP on digits, 8 epochs, SGD with momentum) run
once per scheme and seed with the scheme fixed, everything else searched as in the file (lr,
batch size, activation) for ``--trials`` trials, with ``prune_dead_inits = false`` so every
scheme is really trained; prints the best validation accuracy per scheme, mean over seeds, with
the health verdicts its trials got. ``--study``: the study file as shipped (all schemes in one
TPE study, dead inits pruned), per seed; prints :func:`tuner.views.summaries.scheme_table`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import optuna

from tuner.nn.schemes import random_schemes
from tuner.run.config import config_from_dict
from tuner.run.study import run
from tuner.views.summaries import scheme_table

STUDY = Path(__file__).resolve().parent.parent / "studies" / "init-schemes.toml"


def study_dict(**changes: dict[str, Any]) -> dict[str, Any]:
    """The study file as a dict, with some keys of some tables replaced."""
    raw = tomllib.loads(STUDY.read_text())
    for table, values in changes.items():
        raw.setdefault(table, {}).update(values)
    return raw


def run_study(raw: dict[str, Any], where: Path) -> list:
    config = config_from_dict(raw, str(STUDY))
    return run(config, f"journal:{where / (config.name + '.journal')}").study.trials


def per_scheme(seeds: list[int], trials: int, tmp: Path) -> None:
    rows = []
    for scheme in random_schemes():
        best, verdicts = [], Counter()
        for seed in seeds:
            raw = study_dict(study={"name": f"{scheme}-{seed}", "seed": seed, "n_trials": trials},
                             objective={"prune_dead_inits": False}, space={"init": scheme})
            done = run_study(raw, tmp)
            best.append(max(t.value for t in done if t.value is not None))
            verdicts.update(t.user_attrs.get("init_verdict", "?") for t in done)
        rows.append((statistics.mean(best), scheme, best, verdicts))
        print(f"  {scheme:<16} {statistics.mean(best):.3f}", file=sys.stderr, flush=True)
    print(f"\nbest val_accuracy per scheme ({len(seeds)} seeds x {trials} trials, "
          "lr/batch/activation searched, every scheme trained):\n")
    print("| init scheme | mean best accuracy | per seed | health verdicts of its trials |")
    print("|---|---|---|---|")
    for mean, scheme, best, verdicts in sorted(rows, reverse=True):
        seeds_txt = " ".join(f"{b:.3f}" for b in best)
        verdict_txt = ", ".join(f"{v} {n}" for v, n in verdicts.most_common())
        print(f"| {scheme} | {mean:.3f} | {seeds_txt} | {verdict_txt} |")


def whole_study(seeds: list[int], tmp: Path) -> None:
    per: dict[str, list[float | None]] = {}
    for seed in seeds:
        done = run_study(study_dict(study={"name": f"study-{seed}", "seed": seed}), tmp)
        for row in scheme_table(done):
            per.setdefault(row["init"], []).append(row["best"])
    print(f"\nstudies/init-schemes.toml as shipped, {len(seeds)} seeds: best val_accuracy per "
          "scheme (a dead init pruned before training counts with its untrained accuracy)\n")
    print("| init scheme | mean best | per seed |")
    print("|---|---|---|")
    for scheme, values in sorted(per.items(), key=lambda kv: -statistics.mean(
            [v for v in kv[1] if v is not None] or [0.0])):
        got = [v for v in values if v is not None]
        mean = f"{statistics.mean(got):.3f}" if got else "—"
        print(f"| {scheme} | {mean} | {' '.join(f'{v:.3f}' for v in got)} |")


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--study", action="store_true", help="run the study file as shipped")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        if args.study:
            whole_study(args.seeds, Path(tmp))
        else:
            per_scheme(args.seeds, args.trials, Path(tmp))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
