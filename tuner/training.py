"""The training loop: in-memory tensors, a fresh permutation per epoch, no DataLoader.

For the small models tuner trains, Python overhead dominates the arithmetic, so the loop keeps
per-batch work to indexing, forward, backward and step, and synchronises with the device once per
epoch (to read the loss), not once per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from tuner.data import Dataset
from tuner.models import OPTIMIZERS

EVAL_CHUNK = 8192  # rows per forward pass when evaluating; bounds memory on big validation sets


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run (lr is the raw, not log, value)."""

    lr: float
    batch_size: int
    epochs: int
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9


@dataclass(frozen=True)
class EpochStats:
    """What one epoch produced. ``epoch`` counts from 1."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Diverged(Exception):
    """The training loss became NaN or infinite (usually: learning rate too large)."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"training diverged in epoch {epoch} (loss={loss})")
        self.epoch = epoch
        self.loss = loss


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    factory = OPTIMIZERS.get(cfg.optimizer)
    return factory(model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``x (n, d)``, ``y (n,)``."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for start in range(0, x.shape[0], EVAL_CHUNK):
        logits = model(x[start : start + EVAL_CHUNK])
        target = y[start : start + EVAL_CHUNK]
        loss_sum += nn.functional.cross_entropy(logits.float(), target, reduction="sum")
        correct += (logits.argmax(dim=1) == target).sum()
    model.train(was_training)
    n = x.shape[0]
    return loss_sum.item() / n, correct.item() / n


def train(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    on_epoch: Callable[[EpochStats], None] | None = None,
    generator: torch.Generator | None = None,
) -> list[EpochStats]:
    """Train ``model`` on ``data`` (both on the same device) and return per-epoch statistics.

    ``on_epoch`` runs after every epoch (a pruner hook may raise there to stop). Raises
    :class:`Diverged` as soon as an epoch's training loss is not finite.
    """
    optimizer = make_optimizer(model, cfg)
    x, y, n = data.x_train, data.y_train, data.n_train
    history: list[EpochStats] = []
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        # -- one pass over a fresh permutation, loss kept on the device until the epoch ends
        perm = torch.randperm(n, device=x.device, generator=generator)
        loss_sum = torch.zeros((), device=x.device)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * idx.shape[0]
        # -- stop on divergence before spending an evaluation on it
        train_loss = loss_sum.item() / n
        if not math.isfinite(train_loss):
            raise Diverged(epoch, train_loss)
        # -- evaluate, record, let the caller report or prune
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
        stats = EpochStats(epoch, train_loss, val_loss, val_acc)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return history
