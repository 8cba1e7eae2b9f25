"""(c) trials per minute: the quickstart study in tuner vs a plain Optuna script, textbook style.

    .venv/bin/python benchmarks/bench_vs_optuna.py [--trials 40] [--rounds 1]

Both run the quickstart study on a fresh SQLite file: TPE (seed 0), the median pruner
(5 start-up trials, 1 warm-up step), the same space (lr log-uniform, batch size 16..256 as a
power of two, five init schemes) and 10 epochs of an MLP 2x64 on digits. The textbook script is
what the Optuna and PyTorch tutorials show: a ``DataLoader`` per trial, ``loss.item()`` per
batch, ``trial.report`` + ``should_prune`` every epoch, torch's default thread count. It runs
twice: as written, and with one intra-op thread (tuner's CPU policy), to separate the thread
effect from the rest. ``tuner-pack-8`` is tuner with ``--pack 8``. Each variant runs in its
own process (threads are process-wide); variants alternate within each round; trials/minute =
finished trials / wall time of ``optimize``, median over rounds. Pruning decides how long each
trial trains and the textbook script's unseeded shuffles send its sampler down another path, so
epochs/minute (epochs actually trained / wall time) is printed too: it compares equal work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("tuner", "tuner-pack-8", "textbook", "textbook-1-thread")
INITS = ["zeros", "small_normal", "xavier_uniform", "kaiming_normal", "orthogonal"]


def textbook(n_trials: int, url: str) -> tuple[float, int]:
    """The tutorial-style script; returns seconds spent in ``study.optimize`` and epochs
    trained (it reports every epoch)."""
    import optuna
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    train_set = TensorDataset(torch.tensor(scaler.transform(x_tr), dtype=torch.float32),
                              torch.tensor(y_tr))
    val_set = TensorDataset(torch.tensor(scaler.transform(x_va), dtype=torch.float32),
                            torch.tensor(y_va))
    inits = {"zeros": nn.init.zeros_, "small_normal": lambda w: nn.init.normal_(w, 0, 0.01),
             "xavier_uniform": nn.init.xavier_uniform_,
             "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
             "orthogonal": lambda w: nn.init.orthogonal_(w, gain=2**0.5)}

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 0.3, log=True)
        batch_size = 2 ** trial.suggest_int("batch_size_log2", 4, 8)
        init = trial.suggest_categorical("init", INITS)
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                              nn.Linear(64, 10))
        for m in model.modules():
            if isinstance(m, nn.Linear):
                inits[init](m.weight)
                nn.init.zeros_(m.bias)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        criterion = nn.CrossEntropyLoss()
        train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
        val_loader = DataLoader(val_set, batch_size=256)
        accuracy = 0.0
        for epoch in range(10):
            model.train()
            for xb, yb in train_loader:
                optimizer.zero_grad()
                loss = criterion(model(xb), yb)
                loss.backward()
                optimizer.step()
                running = loss.item()  # noqa: F841  (what tutorials log)
            model.eval()
            correct = 0
            with torch.no_grad():
                for xb, yb in val_loader:
                    correct += (model(xb).argmax(1) == yb).sum().item()
            accuracy = correct / len(val_set)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=url, direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=n_trials)
    seconds = time.perf_counter() - started
    return seconds, sum(len(t.intermediate_values) for t in study.trials)


def tuner_run(n_trials: int, url: str, pack: int = 1) -> tuple[float, int]:
    from tuner.run.config import load_config
    from tuner.run.study import run

    config = load_config("studies/quickstart.toml", n_trials=n_trials, pack=pack)
    result = run(config, url)
    epochs = sum(len(t.user_attrs["curve"]["val_loss"]) for t in result.study.trials)
    return result.elapsed_s, epochs


def one(variant: str, n_trials: int) -> None:
    """In a child process: run one variant, print its seconds as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        if variant.startswith("tuner"):
            seconds, epochs = tuner_run(n_trials, url, pack=8 if variant == "tuner-pack-8" else 1)
        else:
            if variant == "textbook-1-thread":
                import torch

                torch.set_num_threads(1)
            seconds, epochs = textbook(n_trials, url)
    print(json.dumps({"seconds": seconds, "epochs": epochs}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        one(args.variant, args.trials)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import machine

    print(f"machine: {machine()}")
    print(f"quickstart study, {args.trials} trials on SQLite, {args.rounds} rounds")
    per_min: dict[str, list[float]] = {v: [] for v in VARIANTS}
    epochs_per_min: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for variant in VARIANTS:
            proc = subprocess.run([sys.executable, __file__, "--variant", variant, "--trials",
                                   str(args.trials)], capture_output=True, text=True, check=True)
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            per_min[variant].append(args.trials / out["seconds"] * 60)
            epochs_per_min[variant].append(out["epochs"] / out["seconds"] * 60)
            print(f"  round {r + 1}: {variant:<18} {per_min[variant][-1]:6.0f} trials/min "
                  f"{epochs_per_min[variant][-1]:7.0f} epochs/min ({out['epochs']} epochs)",
                  flush=True)
    # Pruning decides how many epochs a trial trains, and the textbook script's unseeded
    # shuffles and inits make its sampler take another path: epochs/minute is the fair rate.
    for name, rate in (("trials", per_min), ("epochs", epochs_per_min)):
        med = {v: statistics.median(x) for v, x in rate.items()}
        print(f"{name}/minute, tuner vs textbook: {med['tuner'] / med['textbook']:.2f}x "
              f"(--pack 8: {med['tuner-pack-8'] / med['textbook']:.2f}x); vs textbook on one "
              f"thread: {med['tuner'] / med['textbook-1-thread']:.2f}x "
              f"(--pack 8: {med['tuner-pack-8'] / med['textbook-1-thread']:.2f}x)   (goal >= 3x)")
    print(f"load average after: {machine().rsplit('load average ', 1)[1]}")


if __name__ == "__main__":
    main()
