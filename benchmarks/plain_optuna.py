"""The study of benchmarks/whole_study.toml written as a plain Optuna + PyTorch script, the way
the Optuna and PyTorch tutorials show it: what a user would run instead of tuner.

    python benchmarks/plain_optuna.py --seed 0 --trials 60 --storage sqlite:///plain.db
    python benchmarks/plain_optuna.py --threads 1 ...   # one intra-op thread, as tuner trains
    python benchmarks/plain_optuna.py --study quickstart ...   # studies/quickstart.toml instead

``--study quickstart`` is studies/quickstart.toml by hand: ``lr`` up to 0.3, five init
schemes, width 64, 25 trials, Optuna's patient pruner (patience 2) around its median pruner
(5 start-up trials, 3 warm-up steps), and TPE with the file's ``[sampler]`` options (5 start-up
trials, the best quarter of the trials modelled as good).

digits (scikit-learn, offline), stratified 75/25 split (seeded), standardised; an MLP
64-128-128-10 with ReLU; SGD with momentum 0.9; 10 epochs; ``lr`` log-uniform in [1e-4, 0.1],
batch size a power of two in 16..256, seven init schemes (biases zero); TPE seeded with
``--seed``; Optuna's median pruner (5 start-up trials, 1 warm-up step) on the validation
accuracy reported every epoch; a ``DataLoader`` per trial. It prints one JSON line: the best
value, the trials per state and the epochs trained. Nothing here imports tuner.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings

import optuna
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

INITS = {
    "zeros": nn.init.zeros_,
    "small_normal": lambda w: nn.init.normal_(w, 0.0, 0.01),
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "orthogonal": lambda w: nn.init.orthogonal_(w, gain=math.sqrt(2.0)),
    "lecun_normal": lambda w: nn.init.normal_(w, 0.0, 1.0 / math.sqrt(w.shape[1])),
}


STUDIES = {  # what differs between the two study files
    "whole": {"lr_high": 0.1, "inits": list(INITS), "width": 128, "trials": 60},
    "quickstart": {"lr_high": 0.3, "width": 64, "trials": 25,
                   "inits": ["zeros", "small_normal", "xavier_uniform", "kaiming_normal",
                             "orthogonal"]},
}


def sampler_of(study: str, seed: int) -> optuna.samplers.BaseSampler:
    if study == "quickstart":
        with warnings.catch_warnings():  # Optuna 4.9 deprecated gamma (removal planned in 6.0)
            warnings.simplefilter("ignore", FutureWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5,
                                              gamma=lambda n: min(math.ceil(0.25 * n), 25))
    return optuna.samplers.TPESampler(seed=seed)


def pruner_of(study: str) -> optuna.pruners.BasePruner:
    if study == "quickstart":
        return optuna.pruners.PatientPruner(
            optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3), patience=2)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", choices=list(STUDIES), default="whole")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trials", type=int, default=None,
                   help="default: the study's (60 whole, 25 quickstart)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--storage", default="sqlite:///plain.db")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's own choice)")
    args = p.parse_args()
    spec = STUDIES[args.study]
    trials = args.trials or spec["trials"]
    if args.threads:
        torch.set_num_threads(args.threads)

    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    train_set = TensorDataset(torch.tensor(scaler.transform(x_tr), dtype=torch.float32),
                              torch.tensor(y_tr))
    val_set = TensorDataset(torch.tensor(scaler.transform(x_va), dtype=torch.float32),
                            torch.tensor(y_va))

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, spec["lr_high"], log=True)
        batch_size = 2 ** trial.suggest_int("batch_size_log2", 4, 8)
        init = trial.suggest_categorical("init", spec["inits"])
        torch.manual_seed(trial.number)
        width = spec["width"]
        model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width),
                              nn.ReLU(), nn.Linear(width, 10))
        for m in model.modules():
            if isinstance(m, nn.Linear):
                INITS[init](m.weight)
                nn.init.zeros_(m.bias)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        criterion = nn.CrossEntropyLoss()
        train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
        val_loader = DataLoader(val_set, batch_size=256)
        accuracy = 0.0
        for epoch in range(args.epochs):
            model.train()
            for xb, yb in train_loader:
                optimizer.zero_grad()
                loss = criterion(model(xb), yb)
                loss.backward()
                optimizer.step()
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
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # patient
    study = optuna.create_study(
        study_name="plain", storage=args.storage, direction="maximize",
        sampler=sampler_of(args.study, args.seed),
        pruner=pruner_of(args.study),
    )
    study.optimize(objective, n_trials=trials)
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    print(json.dumps({"best": study.best_value, "states": states,
                      "epochs": sum(len(t.intermediate_values) for t in study.trials)}))


if __name__ == "__main__":
    main()
