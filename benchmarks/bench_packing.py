"""(b) trial packing: K=8 configurations trained as one population vs one after another.

    .venv/bin/python benchmarks/bench_packing.py [--pack 8] [--batch-sizes 32,64,128] [--repeats 5]

The quickstart network (digits, MLP 2x64, ReLU, SGD + momentum, 5 epochs): 8 members share the
architecture and batch size and differ in lr, weight decay, init scheme and seed. Sequential =
tuner's own fast loop (tuner.nn.training.train), one model after another. Both on one CPU thread;
runs alternate; ratio of medians. Also prints the largest difference in final validation loss
between a member and the same configuration trained alone (float rounding only).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tuner.nn.data import load_dataset
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.population import train_population
from tuner.nn.schemes import apply_init
from tuner.nn.training import TrainConfig, train, use_cpu_threads

INITS = ["kaiming_normal", "xavier_uniform", "orthogonal", "lecun_normal"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pack", type=int, default=8)
    p.add_argument("--batch-sizes", default="32,64,128")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--optimizer", default="sgd")
    args = p.parse_args()
    threads = use_cpu_threads()
    data = load_dataset("digits", seed=0)
    spec = ModelSpec(data.n_features, data.n_classes, None, 2, 64, "relu")
    seeds = list(range(100, 100 + args.pack))

    def member(k: int):
        torch.manual_seed(seeds[k])
        return apply_init(MODELS.get("mlp")(spec), INITS[k % len(INITS)], "relu")

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(s) for s in seeds]

    print(f"digits MLP 2x64, {args.optimizer}, {args.epochs} epochs, K={args.pack}, "
          f"{threads} thread(s), median of {args.repeats}")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        cfgs = [TrainConfig(lr=0.002 * (k + 1), batch_size=batch, epochs=args.epochs,
                            optimizer=args.optimizer, weight_decay=1e-4 * k)
                for k in range(args.pack)]
        seq_t, pack_t, drift = [], [], 0.0
        for _ in range(args.repeats):
            t = time.perf_counter()
            alone = [train(member(k), data, cfgs[k], generator=gens()[k])[-1]
                     for k in range(args.pack)]
            seq_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            runs = train_population([member(k) for k in range(args.pack)], data, cfgs, gens())
            pack_t.append(time.perf_counter() - t)
            drift = max(drift, *(abs(a.val_loss - r.history[-1].val_loss)
                                 for a, r in zip(alone, runs, strict=True)))
        s, k = statistics.median(seq_t), statistics.median(pack_t)
        print(f"  batch {batch:4d}: sequential {s * 1000:7.1f} ms   packed {k * 1000:7.1f} ms   "
              f"speed-up {s / k:5.2f}x (goal >= 4x)   max |val_loss diff| {drift:.1e}")


if __name__ == "__main__":
    main()
