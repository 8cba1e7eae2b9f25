"""Optimisers for a population of K stacked models, each member with its own lr and weight decay,
and (:class:`SoloOptimizer`, K = 1) for one ordinary model on the CPU.

Every parameter is one tensor ``(K, ...)``; member ``k`` owns row ``k``. Each update is the one
``torch.optim`` makes (single-tensor code path, default betas/eps/alpha as tuner's
:data:`tuner.nn.models.OPTIMIZERS` builds them), with the per-member scalars broadcast as
``(K, 1, …)`` tensors. The ops are chosen to round as torch's do on CPU, checked bit for bit:
``p.add_(g, alpha=s)`` is ``p.addcmul_(g, s)`` and ``p.addcdiv_(a, b, value=s)`` is
``p.addcdiv_(a * s, b)`` (a fused multiply-add rounds once; ``p + g * s`` rounds twice).
Per-member scalars are computed in float64 and rounded once to float32, as torch rounds a
Python float. A member thus follows its solo trajectory to the last bit of its gradients.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from tuner.core.registry import Registry


class StackedOptimizer:
    """Base: ``params`` leaves ``(K, ...)`` with ``.grad``; ``lr``, ``weight_decay`` ``(K,)``."""

    uses_momentum: ClassVar[bool] = False  # Adam, AdamW: ``momentum`` is ignored, as by torch

    def __init__(self, params: list[Tensor], lr: Tensor, weight_decay: Tensor,
                 momentum: float, *, solo: bool = False) -> None:
        self.params = params
        self.solo = solo  # one member, ordinary parameter shapes: the scalars broadcast as ()
        device = params[0].device
        self.lr = lr.to(device=device, dtype=torch.float64)
        self.weight_decay = weight_decay.to(device=device, dtype=torch.float64)
        self.momentum = momentum
        self.state: list[dict[str, Tensor]] = [{} for _ in params]
        self.steps = 0
        self._no_decay = not bool(weight_decay.any())
        self._rounded()

    def _rounded(self) -> None:
        # Rounded to float32 once (not per step and parameter): -lr, wd, 1 - lr·wd.
        self.neg_lr = (-self.lr).float()
        self.wd = self.weight_decay.float()
        self.decay = (1 - self.lr * self.weight_decay).float()

    def per_member(self, values: Tensor, like: Tensor) -> Tensor:
        """``values (K,)`` as a ``(K, 1, …)`` view, to broadcast over parameter ``like`` (solo:
        the one value as a 0-d tensor, which broadcasts over any shape)."""
        if self.solo:
            return values.view(())
        return values.view(-1, *([1] * (like.dim() - 1)))

    def _decayed(self, p: Tensor, grad: Tensor) -> Tensor:
        """``grad + wd·p`` (L2 in the gradient, as torch's non-decoupled weight decay)."""
        if self._no_decay:
            return grad
        return grad.addcmul(p, self.per_member(self.wd, p))  # = grad.add(p, alpha=wd)

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        self.begin_step()
        for p, state in zip(self.params, self.state, strict=True):
            self.update(p, p.grad, state)

    def begin_step(self) -> None:
        """Per-step scalars shared by every parameter (Adam's bias-corrected step size)."""

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        raise NotImplementedError

    def keep(self, rows: Tensor, params: list[Tensor]) -> None:
        """Keep only members ``rows`` (an index tensor); ``params`` are the new leaves."""
        self.params = params
        self.lr = self.lr[rows]
        self.weight_decay = self.weight_decay[rows]
        self.state = [{k: v[rows] for k, v in s.items()} for s in self.state]
        self._rounded()


class StackedSGD(StackedOptimizer):
    """``torch.optim.SGD(lr, momentum, weight_decay)``, dampening 0, no Nesterov."""

    uses_momentum = True

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        grad = self._decayed(p, grad)
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:
                buf.mul_(self.momentum).add_(grad)
            grad = buf
        p.addcmul_(grad, self.per_member(self.neg_lr, p))  # = p.add_(grad, alpha=-lr)


class StackedAdam(StackedOptimizer):
    """``torch.optim.Adam(lr, weight_decay)``: betas (0.9, 0.999), eps 1e-8, L2 weight decay."""

    betas = (0.9, 0.999)
    eps = 1e-8
    decoupled = False

    def begin_step(self) -> None:
        self.neg_step_size = (-(self.lr / (1 - self.betas[0] ** self.steps))).float()

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        beta1, beta2 = self.betas
        if self.decoupled:
            if not self._no_decay:
                p.mul_(self.per_member(self.decay, p))  # = p.mul_(1 - lr·wd)
        else:
            grad = self._decayed(p, grad)
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction2_sqrt = (1 - beta2**self.steps) ** 0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        step_size = self.per_member(self.neg_step_size, p)  # -lr / (1 - beta1^t)
        p.addcdiv_(exp_avg * step_size, denom)  # = p.addcdiv_(exp_avg, denom, value=-step)


class StackedAdamW(StackedAdam):
    """``torch.optim.AdamW(lr, weight_decay)``: decoupled weight decay ``p ← p·(1 − lr·wd)``."""

    decoupled = True


class StackedRMSprop(StackedOptimizer):
    """``torch.optim.RMSprop(lr, weight_decay, momentum)``: alpha 0.99, eps 1e-8, not centred."""

    uses_momentum = True

    alpha = 0.99
    eps = 1e-8

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        grad = self._decayed(p, grad)
        if not state:
            state["square_avg"] = torch.zeros_like(p)
            if self.momentum > 0:
                state["momentum_buffer"] = torch.zeros_like(p)
        square_avg = state["square_avg"]
        square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        avg = square_avg.sqrt().add_(self.eps)
        neg_lr = self.per_member(self.neg_lr, p)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf.mul_(self.momentum).addcdiv_(grad, avg)
            p.addcmul_(buf, neg_lr)  # = p.add_(buf, alpha=-lr)
        else:
            p.addcdiv_(grad * neg_lr, avg)  # = p.addcdiv_(grad, avg, value=-lr)


class SoloOptimizer:
    """``torch.optim.SGD/Adam/AdamW/RMSprop`` for one ordinary model, without ``torch.optim``:
    one stacked optimizer of a single member per parameter group (a group has its own lr, as
    fine-tuning's ``lr_scales`` give). The updates are torch's own, bit for bit on the CPU
    (``tests/unit/nn/test_packing.py``).

    Why: building any ``torch.optim`` optimizer imports ``torch._dynamo`` (its ``add_param_group``
    is wrapped by ``torch._disable_dynamo``), 2-4 s of every fresh process that trains: each
    run, resume, worker and ``--jobs`` worker. Only ``step``, ``zero_grad`` and
    ``param_groups`` are offered; anything that needs a real optimizer (a ``GradScaler``, a
    CUDA device, where torch's multi-tensor kernels are faster) gets ``torch.optim``'s.
    """

    def __init__(self, name: str, param_groups: list[dict], weight_decay: float,
                 momentum: float) -> None:
        kind = STACKED_OPTIMIZERS.get(name)
        self.param_groups = param_groups
        self._groups = [
            kind(list(g["params"]), torch.tensor([g["lr"]], dtype=torch.float64),
                 torch.tensor([weight_decay], dtype=torch.float64), momentum, solo=True)
            for g in param_groups
        ]

    def step(self) -> None:
        for group in self._groups:
            group.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self._groups:
            for p in group.params:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()


STACKED_OPTIMIZERS: Registry[type[StackedOptimizer]] = Registry("packable optimizer")
STACKED_OPTIMIZERS.add("sgd", StackedSGD)
STACKED_OPTIMIZERS.add("adam", StackedAdam)
STACKED_OPTIMIZERS.add("adamw", StackedAdamW)
STACKED_OPTIMIZERS.add("rmsprop", StackedRMSprop)
