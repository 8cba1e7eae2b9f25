"""The training loop: in-memory tensors, a fresh permutation per epoch, no DataLoader.

For the small models tuner trains, Python overhead dominates the arithmetic, so the loop keeps
per-batch work to slicing, forward, backward and step, and synchronises with the device once per
epoch (to read the losses), not once per batch. The data stays where it was put (on the GPU for a
CUDA run); nothing is copied per batch.

Two device policies live here:

* **CUDA**: automatic mixed precision (bfloat16 where the GPU has it, else float16 with a
  gradient scaler) for models of at least :data:`AMP_MIN_PARAMS` parameters; smaller models are
  bound by kernel launches, where casts only add work. ``TrainConfig.amp`` forces it on or off.
* **CPU**: one intra-op thread per process (``$TUNER_CPU_THREADS`` to change). The per-op work of
  these models is too small to split, and on a busy machine a second OpenMP thread made a 5-epoch
  digits trial 2–15x *slower*; parallelism comes from packing and worker processes instead. The
  setting is process-wide and is made once, by the first call to :func:`train`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from tuner.core.errors import ConfigError
from tuner.nn.data import Dataset
from tuner.nn.models import OPTIMIZERS
from tuner.nn.stacked_optim import STACKED_OPTIMIZERS, SoloOptimizer

EVAL_CHUNK = 8192  # rows per forward pass when evaluating; bounds memory on big validation sets
AMP_MIN_PARAMS = 250_000  # below this, CUDA autocast costs more in casts than it saves
CPU_THREADS_ENV = "TUNER_CPU_THREADS"
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (scores, labels) -> mean loss


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run (lr is the raw, not log, value).

    ``amp``: mixed precision on CUDA; ``None`` decides by model size (see the module doc).
    ``lr_scales``: parameter name -> factor; those parameters learn at ``lr × factor``
    (fine-tuning's faster head: :func:`tuner.nn.finetune.configure` returns them).
    """

    lr: float
    batch_size: int
    epochs: int
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    amp: bool | None = None
    lr_scales: Mapping[str, float] = field(default_factory=dict)


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


def make_optimizer(model: nn.Module, cfg: TrainConfig, *,
                   solo: bool = True) -> torch.optim.Optimizer | SoloOptimizer:
    """The optimizer over ``model``'s trainable parameters (frozen ones, ``requires_grad``
    false, are left out), each at ``cfg.lr`` times its factor in ``cfg.lr_scales`` (default 1).

    On the CPU the built-in optimizers are tuner's :class:`SoloOptimizer` (the same updates,
    without importing ``torch._dynamo``) unless ``solo`` is false (a ``GradScaler`` needs
    ``torch.optim``'s)."""
    factory = OPTIMIZERS.get(cfg.optimizer)
    unknown = sorted(set(cfg.lr_scales) - {name for name, _ in model.named_parameters()})
    if unknown:
        raise ValueError(f"lr_scales names parameters the model does not have: {unknown}")
    groups: dict[float, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(float(cfg.lr_scales.get(name, 1.0)), []).append(p)
    param_groups = [{"params": ps, "lr": cfg.lr * scale} for scale, ps in groups.items()]
    on_cpu = all(p.device.type == "cpu" for ps in groups.values() for p in ps)
    if solo and on_cpu and groups and cfg.optimizer in STACKED_OPTIMIZERS:
        return SoloOptimizer(cfg.optimizer, param_groups, cfg.weight_decay, cfg.momentum)
    return factory(param_groups, cfg.lr, cfg.weight_decay, cfg.momentum)


def bare_step(optimizer: torch.optim.Optimizer | SoloOptimizer) -> Callable[[], object]:
    """``optimizer.step`` without its profiler/hook wrapper when no hook is registered.

    The wrapper opens a ``record_function`` scope and walks the hook tables on every call:
    ~10% of a small model's step on CPU. With any step hook present, the full step is used.
    """
    from torch.optim import optimizer as optim_module

    if not isinstance(optimizer, torch.optim.Optimizer):  # tuner's own: no wrapper to skip
        return optimizer.step
    hooks = (optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks,
             optim_module._global_optimizer_pre_hooks, optim_module._global_optimizer_post_hooks)
    inner = getattr(optimizer.step, "__wrapped__", None)
    if inner is None or any(hooks):
        return optimizer.step
    return functools.partial(inner, optimizer)


# --------------------------------------------------------------------------- device policies
_threads_set = False


def cpu_threads_setting() -> int:
    """``$TUNER_CPU_THREADS`` (default 1), checked: a bad value is a ConfigError."""
    raw = os.environ.get(CPU_THREADS_ENV) or "1"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"${CPU_THREADS_ENV} must be a whole number >= 1, got {raw!r}")
    return value


def use_cpu_threads() -> int:
    """Set torch's intra-op threads for CPU training once per process; returns the count."""
    global _threads_set
    wanted = cpu_threads_setting()
    if not _threads_set:
        # Changing the count rebuilds the thread pool (~20 ms), so it is done once, not per trial.
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
        _threads_set = True
    return torch.get_num_threads()


def amp_dtype(
    model: nn.Module, device: torch.device, amp: bool | None = None
) -> torch.dtype | None:
    """The autocast dtype for training ``model`` on ``device``, or ``None`` for full precision."""
    if device.type != "cuda" or amp is False:
        return None
    if amp is None and sum(p.numel() for p in model.parameters()) < AMP_MIN_PARAMS:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for a CUDA dtype, else a no-op context."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- helpers
@torch.no_grad()
def evaluate_sums(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None = None,
    loss: Loss | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss (``loss``, default cross-entropy, times each chunk's rows) and number of
    argmax-correct rows of ``model`` on ``x (n, d)``, ``y (n,)``, as 0-d device tensors (no
    synchronisation)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    with autocast(x.device, dtype):
        for start in range(0, x.shape[0], EVAL_CHUNK):
            logits = model(x[start : start + EVAL_CHUNK])
            target = y[start : start + EVAL_CHUNK]
            if loss is None:
                loss_sum += nn.functional.cross_entropy(logits.float(), target, reduction="sum")
            else:
                loss_sum += loss(logits.float(), target).float() * len(target)
            correct += (logits.argmax(dim=1) == target).sum()
    model.train(was_training)
    return loss_sum, correct


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``x (n, d)``, ``y (n,)``."""
    loss_sum, correct = evaluate_sums(model, x, y)
    n = x.shape[0]
    return loss_sum.item() / n, correct.item() / n


# --------------------------------------------------------------------------- the loop
def train(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    on_epoch: Callable[[EpochStats], None] | None = None,
    generator: torch.Generator | None = None,
    *,
    loss: Loss | None = None,
) -> list[EpochStats]:
    """Train ``model`` on ``data`` (both on the same device) and return per-epoch statistics.

    ``model`` is any ``nn.Module`` that maps a batch of rows ``(b, d)`` of ``data.x_*`` to
    class scores ``(b, n_classes)``. ``loss(scores, labels)`` is the batch's mean loss to
    minimise (default: cross-entropy; e.g. ``functools.partial(F.cross_entropy,
    label_smoothing=0.1)`` or a focal loss); the statistics' ``train_loss`` and ``val_loss``
    are that loss, ``val_accuracy`` the share of argmax-correct validation rows.
    ``on_epoch`` runs after every epoch (a pruner hook may raise there to stop). Raises
    :class:`Diverged` as soon as an epoch's training loss is not finite.
    """
    criterion = nn.functional.cross_entropy if loss is None else loss
    x, y, n = data.x_train, data.y_train, data.n_train
    device = x.device
    if device.type == "cpu":
        use_cpu_threads()
    dtype = amp_dtype(model, device, cfg.amp)
    # float16 needs loss scaling against underflowing gradients; bfloat16 does not.
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    optimizer = make_optimizer(model, cfg, solo=scaler is None)
    step = bare_step(optimizer) if scaler is None else None
    params = [p for p in model.parameters() if p.requires_grad]
    history: list[EpochStats] = []
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        # -- one pass over a fresh permutation, gathered once per epoch: the batches are then
        #    contiguous views (the same rows, in the same order, as indexing batch by batch)
        perm = torch.randperm(n, device=device, generator=generator)
        xs, ys = x[perm].split(cfg.batch_size), y[perm].split(cfg.batch_size)
        loss_sum = torch.zeros((), device=device)
        try:
            for xb, yb in zip(xs, ys, strict=True):
                with autocast(device, dtype):
                    batch_loss = criterion(model(xb), yb)
                for p in params:  # = optimizer.zero_grad(set_to_none=True), minus its profiler
                    p.grad = None
                if step is not None:
                    # no explicit d loss/d loss: passing one makes autograd import
                    # torch.fx.experimental.symbolic_shapes (0.5-1 s per process), for no speed
                    batch_loss.backward()
                    step()
                else:
                    scaler.scale(batch_loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                loss_sum.add_(batch_loss.detach().float(), alpha=len(yb))
        except RuntimeError as e:  # "value cannot be converted to type float without overflow"
            if "overflow" not in str(e):
                raise
            raise Diverged(epoch, math.inf) from None
        # -- evaluate, then read all three numbers in one synchronisation
        val_loss_sum, correct = evaluate_sums(model, data.x_val, data.y_val, dtype, loss)
        train_sum, val_sum, n_correct = torch.stack(
            [loss_sum, val_loss_sum, correct.to(loss_sum.dtype)]
        ).tolist()
        train_loss = train_sum / n
        if not math.isfinite(train_loss):
            raise Diverged(epoch, train_loss)
        n_val = data.x_val.shape[0]
        stats = EpochStats(epoch, train_loss, val_sum / n_val, n_correct / n_val)
        history.append(stats)
        # -- let the caller report or prune
        if on_epoch is not None:
            on_epoch(stats)
    return history
