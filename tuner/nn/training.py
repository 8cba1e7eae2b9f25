"""The training loop: in-memory tensors, a fresh permutation per epoch, no DataLoader.

For the small models tuner trains, Python overhead dominates the arithmetic, so the loop keeps
per-batch work to slicing, forward, backward and step, and synchronises with the device once per
epoch (to read the losses), not once per batch. The data stays where it was put (on the GPU for a
CUDA run); nothing is copied per batch.

Two device policies live here:

* **CUDA**: automatic mixed precision (bfloat16 where the training GPU has it natively, compute
  capability 8.0 or later; else float16 with a gradient scaler and a fused optimizer, which
  skips an overflowing step without a sync per batch) for models of at least
  :data:`AMP_MIN_PARAMS` parameters whose steps have at least :data:`AMP_MIN_WORK` rows ×
  parameters; smaller steps are bound by kernel launches, where casts only add work.
  ``TrainConfig.amp`` forces it on or off. Only the model's forward runs under autocast: the
  loss gets float32 outputs, and a float16 run evaluates in float32 (float16's range is
  65504: a large validation loss would otherwise read as "diverged").
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

from tuner.core.errors import ConfigError, Diverged
from tuner.nn.data import Dataset
from tuner.nn.models import OPTIMIZERS
from tuner.nn.stacked_optim import STACKED_OPTIMIZERS, SoloOptimizer

EVAL_CHUNK = 8192  # rows per forward pass when evaluating; bounds memory on big validation sets
BLOWN_UP = 1e4  # a validation loss this many times the untrained network's: diverged
AMP_MIN_PARAMS = 250_000  # below this, CUDA autocast costs more in casts than it saves
AMP_MIN_WORK = 2**28  # rows × parameters of one step below which a step is launch-bound
CPU_THREADS_ENV = "TUNER_CPU_THREADS"
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (scores, labels) -> mean loss


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run (lr is the raw, not log, value).

    ``amp``: mixed precision on CUDA; ``None`` decides by model and batch size (see the module
    doc).
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
    """What one epoch produced. ``epoch`` counts from 1; ``train_loss`` and ``val_loss`` are
    the training loss. A classification run has ``val_accuracy``; a regression run has
    ``val_mse``, ``val_rmse``, ``val_mae`` and ``val_r2`` (over every output, R² averaged over
    outputs); the others are ``None``."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float | None = None
    val_mse: float | None = None
    val_rmse: float | None = None
    val_mae: float | None = None
    val_r2: float | None = None

    def as_dict(self) -> dict[str, float]:
        """Every number this epoch has (``None`` left out), ``epoch`` included."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def metrics(self) -> dict[str, float]:
        """The numbers of this epoch by name, without ``epoch``: ready for ``ctx.report(trial,
        stats.epoch, value, **stats.metrics())``."""
        out = self.as_dict()
        del out["epoch"]
        return out

    def value(self, metric: str) -> float:
        """The number named ``metric`` (e.g. a study's ``val_mse``)."""
        numbers = self.metrics()
        if metric not in numbers:
            raise KeyError(f"epoch statistics have no {metric!r}; they have "
                           f"{', '.join(numbers)}")
        return numbers[metric]


# torch.optim's fused kernels take a GradScaler's scale and inf check on the device (no sync)
_FUSED: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda p, lr, wd, m: torch.optim.SGD(p, lr=lr, weight_decay=wd, momentum=m, fused=True),
    "adam": lambda p, lr, wd, m: torch.optim.Adam(p, lr=lr, weight_decay=wd, fused=True),
    "adamw": lambda p, lr, wd, m: torch.optim.AdamW(p, lr=lr, weight_decay=wd, fused=True),
}


def make_optimizer(model: nn.Module, cfg: TrainConfig, *, solo: bool = True,
                   fused: bool = False) -> torch.optim.Optimizer | SoloOptimizer:
    """The optimizer over ``model``'s trainable parameters (frozen ones, ``requires_grad``
    false, are left out), each at ``cfg.lr`` times its factor in ``cfg.lr_scales`` (default 1).

    On the CPU the built-in optimizers are tuner's :class:`SoloOptimizer` (the same updates,
    without importing ``torch._dynamo``) unless ``solo`` is false (a ``GradScaler`` needs
    ``torch.optim``'s). ``fused``: torch's fused kernel where the optimizer has one (sgd, adam,
    adamw), which a ``GradScaler`` steps without reading its inf check back every batch."""
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
    if fused and groups and cfg.optimizer in _FUSED:
        factory = _FUSED[cfg.optimizer]
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
    model: nn.Module, device: torch.device, amp: bool | None = None,
    batch_size: int | None = None,
) -> torch.dtype | None:
    """The autocast dtype for training ``model`` on ``device`` in batches of ``batch_size``
    rows, or ``None`` for full precision. With ``amp`` ``None``, mixed precision needs
    :data:`AMP_MIN_PARAMS` parameters and (a batch size given) :data:`AMP_MIN_WORK` rows ×
    parameters per step; ``True`` forces it on a GPU, ``False`` off."""
    if device.type != "cuda" or amp is False:
        return None
    if amp is None:
        n_params = sum(p.numel() for p in model.parameters())
        if n_params < AMP_MIN_PARAMS or (batch_size is not None
                                         and batch_size * n_params < AMP_MIN_WORK):
            return None
    return torch.bfloat16 if native_bf16(device) else torch.float16


def native_bf16(device: torch.device) -> bool:
    """Whether the GPU ``device`` (not GPU 0, not the current one) does bfloat16 arithmetic in
    hardware: compute capability 8.0 (Ampere) or later, or ROCm. Older GPUs (V100, T4) only
    emulate it, without tensor cores, which ``torch.cuda.is_bf16_supported()`` accepts too:
    there float16 with a gradient scaler is the fast mixed precision."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for a CUDA dtype, else a no-op context."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- helpers
def fit_outputs(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A regression model's outputs in the target's shape: ``(b, 1)`` for a ``(b,)`` target
    becomes ``(b,)`` (mean squared error would otherwise broadcast to ``(b, b)``)."""
    if out.shape != y.shape and out.numel() == y.numel():
        return out.reshape(y.shape)
    return out


def mse_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of outputs ``(b, k)`` or ``(b,)`` against ``y`` (regression's
    default loss)."""
    return nn.functional.mse_loss(fit_outputs(out, y).float(), y)


def default_loss(task: str) -> Loss:
    """The loss a task trains with unless told otherwise: cross-entropy, or mean squared
    error for a regression."""
    return mse_loss if task == "regression" else nn.functional.cross_entropy


@torch.no_grad()
def _eval_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str,
               dtype: torch.dtype | None, loss: Loss) -> torch.Tensor:
    """Summed statistics of ``model`` on ``x``, ``y`` as one device tensor (no sync):
    classification ``[loss, correct]``; regression ``[loss, |error|, squared error per
    output…]``."""
    was_training = model.training
    model.eval()
    k = 1 if y.ndim == 1 else y.shape[1]
    sums = torch.zeros(2 if task == "classification" else 2 + k, device=x.device)
    for start in range(0, x.shape[0], EVAL_CHUNK):
        with autocast(x.device, dtype):  # the forward only: the loss and metrics in float32
            out = model(x[start : start + EVAL_CHUNK]).float()
        target = y[start : start + EVAL_CHUNK]
        sums[0] += loss(out, target).float() * len(target)
        if task == "classification":
            sums[1] += (out.argmax(dim=1) == target).sum()
        else:
            error = (fit_outputs(out, target) - target).reshape(len(target), k)
            sums[1] += error.abs().sum()
            sums[2:] += error.square().sum(dim=0)
    model.train(was_training)
    return sums


def val_numbers(sums: list[float], y: torch.Tensor, task: str,
                sst: list[float] | None) -> dict[str, float]:
    """The validation numbers of :class:`EpochStats` from summed statistics (synced):
    classification ``[loss, correct]``, regression ``[loss, |error|, squared error per
    output…]`` over the rows of ``y``; ``sst``: :func:`total_squares` of ``y`` (for R²)."""
    n = y.shape[0]
    if task == "classification":
        return {"val_loss": sums[0] / n, "val_accuracy": sums[1] / n}
    k = len(sums) - 2
    mse = sum(sums[2:]) / (n * k)
    r2 = [1 - e / t for e, t in zip(sums[2:], sst or [], strict=False) if t > 0]
    return {"val_loss": sums[0] / n, "val_mse": mse,
            "val_rmse": math.sqrt(mse) if math.isfinite(mse) and mse >= 0 else math.inf,
            "val_mae": sums[1] / (n * k), "val_r2": sum(r2) / len(r2) if r2 else math.nan}


def total_squares(y: torch.Tensor) -> list[float]:
    """Sum of squares about the mean, per output, of a regression target (R²'s denominator)."""
    y2 = y.reshape(len(y), -1).double()
    return (y2 - y2.mean(dim=0)).square().sum(dim=0).tolist()


def evaluate_sums(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None = None,
    loss: Loss | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss (``loss``, default cross-entropy, times each chunk's rows) and number of
    argmax-correct rows of a classifier on ``x (n, d)``, ``y (n,)``, as 0-d device tensors (no
    synchronisation)."""
    sums = _eval_sums(model, x, y, "classification", dtype,
                      nn.functional.cross_entropy if loss is None else loss)
    return sums[0], sums[1].to(torch.int64)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a classifier on ``x (n, d)``, ``y (n,)``."""
    loss_sum, correct = evaluate_sums(model, x, y)
    n = x.shape[0]
    return loss_sum.item() / n, correct.item() / n


def evaluate_metrics(model: nn.Module, data: Dataset, loss: Loss | None = None
                     ) -> dict[str, float]:
    """The validation numbers an epoch of :func:`train` reports (``val_loss`` and the task's
    metrics), for ``model`` as it is now: e.g. an untrained network's, the baseline a
    trained one must beat."""
    return evaluate_rows(model, data.x_val, data.y_val, data.task, loss)


def evaluate_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str,
                  loss: Loss | None = None) -> dict[str, float]:
    """:func:`evaluate_metrics` on rows ``x``, targets ``y`` of a ``task``."""
    criterion = default_loss(task) if loss is None else loss
    sums = _eval_sums(model, x, y, task, None, criterion).tolist()
    return val_numbers(sums, y, task, total_squares(y) if task == "regression" else None)


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

    ``data`` is a :class:`~tuner.nn.data.Dataset` (``ctx.load_data()``, or your own arrays
    through :meth:`Dataset.from_arrays`); its ``task`` decides the loss and the statistics.
    ``model`` is any ``nn.Module`` that maps a batch of rows ``(b, d)`` of ``data.x_*`` to
    ``(b, data.n_outputs)``: class scores, or predicted values (``(b, 1)`` and ``(b,)`` both
    serve a ``(n,)`` target). ``loss(outputs, targets)`` is the batch's mean loss to minimise
    (default: cross-entropy, or mean squared error for a regression; e.g.
    ``functools.partial(F.cross_entropy, label_smoothing=0.1)``); the statistics'
    ``train_loss`` and ``val_loss`` are that loss, and the task's metrics are in
    :class:`EpochStats`. ``on_epoch`` runs after every epoch (a pruner hook may raise there to
    stop). Raises :class:`Diverged` as soon as an epoch's training or validation loss (or a
    metric) is not finite.
    """
    criterion = default_loss(data.task) if loss is None else loss
    x, y, n = data.x_train, data.y_train, data.n_train
    device = x.device
    if device.type == "cpu":
        use_cpu_threads()
    dtype = amp_dtype(model, device, cfg.amp, cfg.batch_size)
    # float16 needs loss scaling against underflowing gradients; bfloat16 does not. A fused
    # optimizer lets the scaler skip an overflowing step on the device (no sync per batch).
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    optimizer = make_optimizer(model, cfg, solo=scaler is None, fused=scaler is not None)
    step = bare_step(optimizer) if scaler is None else None
    # float16 overflows at 65504: evaluate in float32 then (bfloat16 has float32's range)
    eval_dtype = None if dtype == torch.float16 else dtype
    params = [p for p in model.parameters() if p.requires_grad]
    sst = total_squares(data.y_val) if data.task == "regression" else None
    # the untrained network's validation loss, read with the first epoch's numbers (no sync)
    start = _eval_sums(model, data.x_val, data.y_val, data.task, eval_dtype, criterion)[:1]
    n_val = data.x_val.shape[0]
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
                if dtype is None:
                    batch_loss = criterion(model(xb), yb)
                else:  # the model's forward in mixed precision, the loss in float32
                    with autocast(device, dtype):
                        out = model(xb)
                    batch_loss = criterion(out.float(), yb)
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
        # -- evaluate, then read every number in one synchronisation
        val_sums = _eval_sums(model, data.x_val, data.y_val, data.task, eval_dtype, criterion)
        numbers = torch.cat([start, loss_sum.reshape(1), val_sums]).tolist()
        train_loss = numbers[1] / n
        if not math.isfinite(train_loss):
            raise Diverged(epoch, train_loss)
        stats = epoch_stats(epoch, train_loss, val_numbers(numbers[2:], data.y_val, data.task,
                                                           sst), numbers[0] / n_val)
        history.append(stats)
        # -- let the caller report or prune
        if on_epoch is not None:
            on_epoch(stats)
    return history


def epoch_stats(epoch: int, train_loss: float, val: dict[str, float],
                untrained_loss: float | None = None) -> EpochStats:
    """One epoch's statistics, or :class:`Diverged` when a validation number is not finite
    (R² aside: it is NaN for a constant target) or the validation loss has grown to
    :data:`BLOWN_UP` times the untrained network's ``untrained_loss`` (a regression whose SGD
    steps blew up reaches 1e16 against 4e4 before any NaN: a number no plot or sampler can use)."""
    bad = next((k for k, v in val.items() if not math.isfinite(v) and k != "val_r2"), None)
    if bad is not None:
        raise Diverged(epoch, val[bad], "validation")
    if (untrained_loss is not None and math.isfinite(untrained_loss) and untrained_loss > 0
            and val["val_loss"] > BLOWN_UP * untrained_loss):
        raise Diverged(epoch, val["val_loss"], "validation",
                       f", {val['val_loss'] / untrained_loss:.2g} times the untrained network's")
    return EpochStats(epoch, train_loss, **val)
