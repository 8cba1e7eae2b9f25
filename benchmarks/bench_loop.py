"""(a) tuner's training loop vs a textbook ``DataLoader`` loop: same model, batch, epochs, threads.

    .venv/bin/python benchmarks/bench_loop.py [--batch-size 64] [--epochs 5] [--repeats 7]

Both train the quickstart network (digits, MLP 2x64, ReLU, SGD with momentum) from the same
initial weights; runs alternate so machine noise hits both alike; the ratio of medians is printed.
Both use one intra-op thread (tuner's CPU policy), so the ratio isolates the loop itself.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tuner.nn.data import load_dataset
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.schemes import apply_init
from tuner.nn.training import TrainConfig, train, use_cpu_threads


def textbook(model: nn.Module, data, cfg: TrainConfig) -> float:
    """The loop most tutorials show: DataLoader, per-batch ``loss.item()``, eval loader."""
    train_loader = DataLoader(TensorDataset(data.x_train, data.y_train),
                              batch_size=cfg.batch_size, shuffle=True)
    val_loader = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=cfg.batch_size)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    accuracy = 0.0
    for _ in range(cfg.epochs):
        model.train()
        running = 0.0
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            running += loss.item() * xb.size(0)
        model.eval()
        correct, val_loss = 0, 0.0
        with torch.no_grad():
            for xb, yb in val_loader:
                out = model(xb)
                val_loss += criterion(out, yb).item() * xb.size(0)
                correct += (out.argmax(1) == yb).sum().item()
        accuracy = correct / len(val_loader.dataset)
    return accuracy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    threads = use_cpu_threads()
    data = load_dataset("digits", seed=0)
    spec = ModelSpec(data.n_features, data.n_classes, None, 2, 64, "relu")
    cfg = TrainConfig(lr=0.05, batch_size=args.batch_size, epochs=args.epochs, optimizer="sgd")

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return apply_init(MODELS.get("mlp")(spec), "kaiming_normal", "relu")

    times: dict[str, list[float]] = {"tuner": [], "textbook": []}
    acc: dict[str, float] = {}
    for _ in range(args.repeats):
        for name in times:
            model = fresh()
            t = time.perf_counter()
            if name == "tuner":
                acc[name] = train(model, data, cfg)[-1].val_accuracy
            else:
                acc[name] = textbook(model, data, cfg)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"digits MLP 2x64, batch {cfg.batch_size}, {cfg.epochs} epochs, {threads} thread(s), "
          f"median of {args.repeats}")
    for k in times:
        print(f"  {k:9s} {med[k] * 1000:8.1f} ms/run   (final val accuracy {acc[k]:.3f})")
    print(f"speed-up tuner vs textbook DataLoader loop: {med['textbook'] / med['tuner']:.2f}x "
          "(goal >= 2x)")


if __name__ == "__main__":
    main()
