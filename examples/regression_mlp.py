"""A regression of your own: your MLP (activations applied in ``forward``), your own training
loop, on a CSV of 20 float features and a float ``target`` (``examples/data/houses.csv``).

    tuner run examples/regression_mlp.toml

tuner reads the task from the target (fractional values: a regression), splits the rows
unstratified, and gives the metric ``val_mse`` its direction (minimise). The toolkit does the
rest: init schemes, the dead-init check (zeros: symmetric, pruned before training, with the
untrained network's ``val_mse``), learning curves and pictures of ``val_mse``.
"""

from __future__ import annotations

import optuna
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, n_features: int, width: int, n_outputs: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_features, width)
        self.fc2 = nn.Linear(width, width)
        self.out = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))  # the common style: no activation modules
        h = torch.relu(self.fc2(h))
        return self.out(h).squeeze(-1)


def objective(trial, ctx) -> float:
    hp = ctx.suggest(trial)
    data = ctx.load_data()  # data.task == "regression"; y float32 (n,)
    torch.manual_seed(ctx.trial_seed(trial))
    model = MLP(data.n_features, hp["width"], data.n_outputs).to(ctx.device)
    ctx.init(model, hp["init"], activation="relu")
    # With y, the toolkit stores the untrained network's val_mse (untrained_value) itself.
    ctx.check_init(trial, model, data.x_val, y=data.y_val)
    optimizer = torch.optim.Adam(model.parameters(), lr=hp["lr"])
    generator = torch.Generator().manual_seed(ctx.trial_seed(trial))
    n = data.n_train
    for epoch in range(1, ctx.settings["epochs"] + 1):
        model.train()
        total = 0.0
        for idx in torch.randperm(n, generator=generator).split(hp["batch_size"]):
            loss = nn.functional.mse_loss(model(data.x_train[idx]), data.y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            val_mse = nn.functional.mse_loss(model(data.x_val), data.y_val).item()
        if not torch.isfinite(torch.tensor([total, val_mse])).all():
            raise optuna.TrialPruned(f"training diverged in epoch {epoch}")
        ctx.report(trial, epoch, val_mse, train_loss=total / n, val_loss=val_mse)
    return val_mse
