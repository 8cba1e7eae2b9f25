"""Your own PyTorch model as a tuner objective: a small CNN on the 8x8 digits, your own loop.

Run it as a study (from the repository root, so that ``examples`` is importable):

    tuner run examples/cnn_digits.toml
    tuner report cnn-digits -o cnn-report.html

Everything tuner knows about a trial comes through ``ctx``: the device, the search space (a
real power-of-two batch size, lr on a log scale), the data, any init scheme, the dead-init check
and the per-epoch report (cadence, pruning, the learning curve and both dashboard pictures).
"""

from __future__ import annotations

import math

import optuna
import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv(1->c) -> ReLU -> conv(c->2c) -> ReLU -> flatten -> linear(-> classes)."""

    def __init__(self, channels: int, n_classes: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_shape = image_shape
        c, h, w = image_shape
        self.body = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.Flatten(),
        )
        self.head = nn.Linear(2 * channels * h * w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, *self.image_shape)  # rows of pixels (n, 64) -> images (n, 1, 8, 8)
        return self.head(self.body(x))


def objective(trial, ctx) -> float:
    hp = ctx.suggest(trial)                  # lr, batch_size (a power of two), init, channels
    data = ctx.load_data()                   # [objective] dataset, on ctx.device
    torch.manual_seed(ctx.trial_seed(trial))
    model = SmallCNN(hp["channels"], data.n_classes, data.image_shape).to(ctx.device)
    ctx.init(model, hp["init"], activation="relu")
    ctx.check_init(trial, model, data.x_val[:256], y=data.y_val[:256])  # dead init: pruned

    optimizer = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator(device=ctx.device).manual_seed(ctx.trial_seed(trial))
    n, batch = len(data.x_train), hp["batch_size"]
    val_accuracy = 0.0
    for epoch in range(1, ctx.settings["epochs"] + 1):
        model.train()
        perm = torch.randperm(n, device=ctx.device, generator=generator)
        total = 0.0
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(data.x_val)
            val_loss = loss_fn(logits, data.y_val).item()
            val_accuracy = (logits.argmax(1) == data.y_val).float().mean().item()
        train_loss = total / n
        if not math.isfinite(train_loss):  # a reason of yours is kept: show, report, dashboard
            raise optuna.TrialPruned(f"diverged at epoch {epoch} (train loss {train_loss})")
        ctx.report(trial, epoch, val_accuracy, train_loss=train_loss, val_loss=val_loss)
    return val_accuracy

