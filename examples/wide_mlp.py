"""A second objective of your own: your model, tuner's public fast loop (tuner.nn.training.train).

    tuner run examples/wide_mlp.toml

The model is yours (a residual MLP the built-in classifier cannot build); the loop, init
schemes, dead-init check and reports are tuner's, reached only through public names.
"""

from __future__ import annotations

import optuna
import torch
from torch import nn

from tuner.nn.training import Diverged, TrainConfig, train


class ResidualMLP(nn.Module):
    def __init__(self, n_features: int, width: int, n_classes: int) -> None:
        super().__init__()
        self.stem = nn.Linear(n_features, width)
        self.block = nn.Sequential(nn.Tanh(), nn.Linear(width, width), nn.Tanh())
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(h + self.block(h))


def objective(trial, ctx) -> float:
    hp = ctx.suggest(trial)
    data = ctx.load_data()
    torch.manual_seed(ctx.trial_seed(trial))
    model = ResidualMLP(data.n_features, hp["width"], data.n_classes).to(ctx.device)
    ctx.init(model, hp["init"])  # gain matched to the model's own activation (tanh)
    ctx.check_init(trial, model, data.x_train[:512], y=data.y_train[:512])
    cfg = TrainConfig(lr=hp["lr"], batch_size=hp["batch_size"], epochs=ctx.settings["epochs"],
                      optimizer="sgd", momentum=0.9)
    generator = torch.Generator(device=ctx.device).manual_seed(ctx.trial_seed(trial))

    def on_epoch(stats):
        ctx.report(trial, stats.epoch, stats.val_accuracy, train_loss=stats.train_loss,
                   val_loss=stats.val_loss, val_accuracy=stats.val_accuracy)

    try:
        history = train(model, data, cfg, on_epoch=on_epoch, generator=generator)
    except Diverged as e:
        raise optuna.TrialPruned(str(e)) from None
    return history[-1].val_accuracy
