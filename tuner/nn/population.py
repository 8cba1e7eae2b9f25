"""Train K models of one architecture as one vectorised population.

The members' parameters are stacked (``torch.func.stack_module_state``): every tensor gets a
leading member dimension ``K``, and one ``vmap`` of the model's functional forward runs all of
them at once. Each member keeps everything that makes its run its own:

* its initial weights (built by the caller, e.g. under ``torch.manual_seed(trial_seed)``),
* its batch order: a generator per member, one ``randperm`` per epoch cut into batches in
  order, as :func:`tuner.nn.training.train` draws it, so member ``k`` sees the same batches as its
  model trained alone,
* its learning rate and weight decay (:mod:`tuner.nn.stacked_optim`),
* its fate: after every epoch the caller decides per member whether it goes on; stopped and
  diverged members leave the population, the others carry on.

Summing the members' mean losses before ``backward`` gives each member exactly its own gradient
(the members share no parameter), so a member's trajectory equals its solo trajectory up to
float rounding.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from tuner.nn.data import Dataset
from tuner.nn.models import ACTIVATION_TYPES
from tuner.nn.stacked_optim import STACKED_OPTIMIZERS
from tuner.nn.training import (
    EVAL_CHUNK,
    Diverged,
    EpochStats,
    TrainConfig,
    amp_dtype,
    autocast,
    epoch_stats,
    total_squares,
    use_cpu_threads,
    val_numbers,
)

MemberHook = Callable[[int, EpochStats], bool]
"""``hook(member, stats) -> go_on``: runs after each epoch of each live member."""


@dataclass
class MemberRun:
    """What happened to one member: its per-epoch statistics, and why it stopped early."""

    history: list[EpochStats] = field(default_factory=list)
    diverged: Diverged | None = None
    stopped: bool = False  # the hook said stop (pruned)


def can_stack(models: list[nn.Module]) -> bool:
    """Whether ``models`` can train as one population: same structure, every parameter
    trainable, no buffers (a buffer updated in training, like batch-norm statistics, would need
    per-member bookkeeping that is not worth it here)."""
    first = models[0]
    shapes = [(n, p.shape) for n, p in first.named_parameters()]
    return (
        all(p.requires_grad for m in models for p in m.parameters())
        and not any(True for m in models for _ in m.buffers())
        and all([(n, p.shape) for n, p in m.named_parameters()] == shapes for m in models)
    )


class _Stacked:
    """The members' parameters as leaves ``(K, ...)`` and a forward over all members."""

    params: list[Tensor]

    def forward(self, x: Tensor, shared: bool) -> Tensor:
        raise NotImplementedError

    def train(self, mode: bool) -> None:
        pass


class _StackedMLP(_Stacked):
    """A ``Sequential`` of ``Linear`` layers and parameterless element-wise modules, run with
    batched matrix products. Weights are kept transposed, ``(K, in, out)``, so their gradients
    come out contiguous (no copy per step); biases as ``(K, 1, out)``."""

    def __init__(self, models: list[nn.Module]) -> None:
        self.steps: list[nn.Module | int] = []  # a module, or the index of a linear layer
        self.params = []
        for i, module in enumerate(models[0]):
            if isinstance(module, nn.Linear):
                group = [m[i] for m in models]
                self.steps.append(len(self.params))
                self.params.append(torch.stack([m.weight.detach().t() for m in group])
                                   .contiguous().requires_grad_())
                self.params.append(torch.stack([m.bias.detach() for m in group])
                                   .unsqueeze(1).contiguous().requires_grad_())
            else:
                self.steps.append(module)

    @staticmethod
    def fits(model: nn.Module) -> bool:
        return isinstance(model, nn.Sequential) and all(
            (isinstance(m, nn.Linear) and m.bias is not None)
            or (not any(True for _ in m.parameters()) and isinstance(m, ACTIVATION_TYPES))
            for m in model
        )

    def forward(self, x: Tensor, shared: bool) -> Tensor:
        h = x.expand(len(self.params[0]), *x.shape) if shared else x
        for step in self.steps:
            if isinstance(step, int):
                h = torch.baddbmm(self.params[step + 1], h, self.params[step])
            else:
                h = step(h)
        return h


class _StackedVmap(_Stacked):
    """Any stackable model: ``torch.func.stack_module_state`` + ``vmap`` of its functional
    forward (slower per step than :class:`_StackedMLP` on CPU, but general: CNNs …)."""

    def __init__(self, models: list[nn.Module]) -> None:
        self.base = copy.deepcopy(models[0]).to("meta")  # structure only, for functional_call
        params, _ = stack_module_state(models)
        self.names = list(params)
        self.params = [params[n] for n in self.names]

    def _one(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.base, params, (x,))

    def forward(self, x: Tensor, shared: bool) -> Tensor:
        params = dict(zip(self.names, self.params, strict=True))
        return torch.vmap(self._one, in_dims=(0, None if shared else 0))(params, x)

    def train(self, mode: bool) -> None:
        self.base.train(mode)


class Population:
    """K models of one architecture, stacked; ``cfgs`` share batch size, epochs, optimizer and
    momentum (where the optimizer uses it) and differ in lr and weight decay."""

    def __init__(self, models: list[nn.Module], cfgs: list[TrainConfig]) -> None:
        momentum = STACKED_OPTIMIZERS.get(cfgs[0].optimizer).uses_momentum
        assert len({(c.batch_size, c.epochs, c.optimizer, c.momentum if momentum else None)
                    for c in cfgs}) == 1
        self.cfg = cfgs[0]
        self.net = _StackedMLP(models) if _StackedMLP.fits(models[0]) else _StackedVmap(models)
        self.device = self.params[0].device
        self.dtype = amp_dtype(models[0], self.device, self.cfg.amp, self.cfg.batch_size)
        if self.dtype == torch.float16:
            self.dtype = None  # float16 needs a per-member gradient scaler: full precision here
        self.optimizer = STACKED_OPTIMIZERS.get(self.cfg.optimizer)(
            self.params,
            torch.tensor([c.lr for c in cfgs], dtype=torch.float64),
            torch.tensor([c.weight_decay for c in cfgs], dtype=torch.float64),
            self.cfg.momentum,
        )

    @property
    def params(self) -> list[Tensor]:
        return self.net.params

    def forward(self, x: Tensor, shared: bool = False) -> Tensor:
        """Logits ``(K, b, classes)`` for ``x (K, b, d)``, or for ``x (b, d)`` given to every
        member when ``shared``."""
        return self.net.forward(x, shared)

    def keep(self, rows: list[int]) -> None:
        """Keep only the members at ``rows`` (positions in the current population)."""
        index = torch.tensor(rows, device=self.device)
        self.net.params = [p.detach()[index].requires_grad_() for p in self.params]
        self.optimizer.keep(index, self.params)

    def train_epoch(self, data: Dataset, generators: list[torch.Generator | None]) -> Tensor:
        """One epoch for every member; returns the summed training losses ``(K,)`` (no sync)."""
        x, y, n, b = data.x_train, data.y_train, data.n_train, self.cfg.batch_size
        perms = torch.stack([torch.randperm(n, device=self.device, generator=g)
                             for g in generators])  # (K, n): each member's own order
        loss_sums = torch.zeros(len(generators), device=self.device)
        self.net.train(True)
        for start in range(0, n, b):
            idx = perms[:, start : start + b]  # (K, b)
            with autocast(self.device, self.dtype):
                out = self.forward(x[idx])  # (K, b, outputs)
            losses = _member_losses(out.float(), y[idx], data.task)  # (K,): mean batch losses
            for p in self.params:
                p.grad = None
            losses.sum().backward()
            self.optimizer.step()
            loss_sums.add_(losses.detach(), alpha=idx.shape[1])
        return loss_sums

    @torch.no_grad()
    def evaluate_sums(self, x: Tensor, y: Tensor, task: str = "classification") -> Tensor:
        """Summed validation statistics per member, ``(K, s)`` (no sync), in the order of
        :func:`tuner.nn.training.val_numbers`: classification ``[loss, correct]``, regression
        ``[loss, |error|, squared error per output…]``."""
        self.net.train(False)
        k = len(self.params[0])
        width = 1 if y.ndim == 1 else y.shape[1]
        sums = torch.zeros(k, 2 if task == "classification" else 2 + width, device=self.device)
        with autocast(self.device, self.dtype):
            for start in range(0, x.shape[0], EVAL_CHUNK):
                out = self.forward(x[start : start + EVAL_CHUNK], shared=True).float()
                target = y[start : start + EVAL_CHUNK]
                rows = len(target)
                if task == "classification":
                    sums[:, 0] += nn.functional.cross_entropy(
                        out.flatten(0, 1), target.repeat(k), reduction="none"
                    ).view(k, -1).sum(dim=1)
                    sums[:, 1] += (out.argmax(dim=-1) == target).sum(dim=1)
                else:
                    error = out.reshape(k, rows, width) - target.reshape(1, rows, width)
                    sums[:, 0] += error.square().mean(dim=2).sum(dim=1)
                    sums[:, 1] += error.abs().sum(dim=(1, 2))
                    sums[:, 2:] += error.square().sum(dim=1)
        return sums


def _member_losses(out: Tensor, y: Tensor, task: str) -> Tensor:
    """Each member's mean loss on its batch ``(K,)``: cross-entropy, or mean squared error
    (the default losses of :func:`tuner.nn.training.train`)."""
    if task == "classification":
        return nn.functional.cross_entropy(
            out.flatten(0, 1), y.flatten(), reduction="none"
        ).view(y.shape).mean(dim=1)
    k, b = y.shape[0], y.shape[1]
    return (out.reshape(k, b, -1) - y.reshape(k, b, -1)).square().mean(dim=(1, 2))


def train_population(
    models: list[nn.Module],
    data: Dataset,
    cfgs: list[TrainConfig],
    generators: list[torch.Generator | None],
    on_epoch: MemberHook | None = None,
    histories: list[list[EpochStats]] | None = None,
) -> list[MemberRun]:
    """Train ``models`` (one architecture, on ``data``'s device) together; member ``k`` gets
    ``cfgs[k]`` and batch order ``generators[k]``. ``on_epoch(k, stats)`` returning False stops
    member ``k`` (e.g. pruned); a member whose training or validation loss is not finite stops
    as diverged. The loss is the task's default (:func:`tuner.nn.training.default_loss`).
    Member ``k``'s epochs are appended to ``histories[k]`` (default: new lists), which stay the
    caller's if training raises. Returns one :class:`MemberRun` per model, in order."""
    if data.x_train.device.type == "cpu":
        use_cpu_threads()
    runs = [MemberRun(history) for history in histories or [[] for _ in models]]
    pop = Population(models, cfgs)
    live = list(range(len(models)))  # original member numbers, in population order
    n = data.n_train
    sst = total_squares(data.y_val) if data.task == "regression" else None
    n_val = data.x_val.shape[0]
    start = pop.evaluate_sums(data.x_val, data.y_val, data.task)[:, 0]  # untrained losses
    untrained = start.tolist()  # one sync, before training: each member's (as train() reads)
    for epoch in range(1, pop.cfg.epochs + 1):
        train_sums = pop.train_epoch(data, [generators[k] for k in live])
        val_sums = pop.evaluate_sums(data.x_val, data.y_val, data.task)
        # -- one synchronisation per epoch for the whole population
        rows = torch.cat([train_sums[:, None], val_sums], dim=1).tolist()
        keep: list[int] = []
        for row, k in enumerate(live):
            train_loss = rows[row][0] / n
            if not math.isfinite(train_loss):
                runs[k].diverged = Diverged(epoch, train_loss)
                continue
            try:
                stats = epoch_stats(epoch, train_loss,
                                    val_numbers(rows[row][1:], data.y_val, data.task, sst),
                                    untrained[k] / n_val)
            except Diverged as e:
                runs[k].diverged = e
                continue
            runs[k].history.append(stats)
            if on_epoch is not None and not on_epoch(k, stats):
                runs[k].stopped = True
                continue
            keep.append(row)
        if not keep:
            break
        if len(keep) < len(live):
            pop.keep(keep)
            live = [live[row] for row in keep]
    return runs
