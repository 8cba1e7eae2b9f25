"""Pretrained vs the best scratch init at equal epochs, on digits 5-9.

    .venv/bin/python benchmarks/bench_finetune.py [--epochs 1 2 3 5 10] [--seeds 0 1 2] \\
        [--trials 20]

One checkpoint is pretrained on digits 0-4 (``tuner pretrain`` defaults: MLP 2 x 64, ReLU, Adam,
20 epochs). Then, per epoch budget and seed, two studies with the same sampler, budget and
search over lr and batch size: ``studies/finetune.toml`` (init = pretrained, freeze_layers and
head_lr_mult searched too) and the same network from scratch with the init scheme searched among
the healthy ones. Prints the best validation accuracy of each (mean over seeds) and the scheme
the scratch studies picked. The pretraining's own epochs are not counted: the question is what a
target-task budget of E epochs buys.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import optuna

from tuner.run.config import config_from_dict
from tuner.run.pretrain import pretrain
from tuner.run.study import run
from tuner.store.studies import best_trial

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "studies" / "finetune.toml"
SCRATCH = ["kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal",
           "orthogonal", "lecun_normal"]


def best(raw: dict[str, Any], tmp: Path) -> tuple[float, str]:
    config = config_from_dict(raw, str(STUDY))
    study = run(config, f"journal:{tmp / (config.name + '.journal')}").study
    trial = best_trial(study)
    return trial.value, trial.params.get("init", "pretrained")


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = pretrain({"dataset": "digits", "classes": [0, 1, 2, 3, 4], "epochs": 20}, {},
                          tmp / "digits-0-4.pt")
        print(f"checkpoint: {source.description}; digits 0-4 val_accuracy "
              f"{source.val_accuracy:.3f}\n")
        print(f"best val_accuracy on digits 5-9, mean of {len(args.seeds)} seeds, "
              f"{args.trials} TPE trials each\n")
        print("| epochs | pretrained | best scratch | difference | scratch winner |")
        print("|---|---|---|---|---|")
        for epochs in args.epochs:
            pre, scratch, winners = [], [], Counter()
            for seed in args.seeds:
                raw = tomllib.loads(STUDY.read_text())
                raw["study"].update(seed=seed, n_trials=args.trials)
                raw["objective"].update(epochs=epochs, checkpoint=str(source.path))
                raw["study"]["name"] = f"pre-{epochs}-{seed}"
                pre.append(best(raw, tmp)[0])
                raw["study"]["name"] = f"scratch-{epochs}-{seed}"
                raw["space"]["init"] = SCRATCH
                for knob in ("freeze_layers", "head_lr_mult"):
                    raw["space"].pop(knob)
                value, scheme = best(raw, tmp)
                scratch.append(value)
                winners[scheme] += 1
            p, s = statistics.mean(pre), statistics.mean(scratch)
            won = ", ".join(f"{k} {n}" for k, n in winners.most_common())
            print(f"| {epochs} | {p:.3f} | {s:.3f} | {p - s:+.3f} | {won} |", flush=True)


if __name__ == "__main__":
    main()
