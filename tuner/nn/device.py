"""Choosing the training device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``,
``cuda:N``; pinning worker processes to GPUs; the largest batch size that fits a GPU; the opt-in
deterministic mode.

Every CUDA call here is behind ``torch.cuda.is_available()`` or a device whose type is
``cuda``, so CPU-only machines never touch the CUDA runtime.

A GPU that is asked for by name and cannot be used (its context or a cuBLAS handle cannot be
made, it is full or busy) is a :class:`ConfigError` naming ``--device cpu``; with ``auto`` this
process falls back to the CPU with a warning instead (:func:`fall_back_to_cpu`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import torch

from tuner.core.errors import ConfigError
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.training import EVAL_CHUNK

_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
MEMORY_HEADROOM = 0.8  # share of a GPU's free memory a trial may plan to use
BUSY_FREE_SHARE = 0.5  # a GPU with less than this share of its memory free is busy (others use it)
SHARERS_ENV = "TUNER_DEVICE_SHARERS"  # processes training on this process's GPU (run --jobs)
CPU_HINT = "--device cpu"  # how a user trains on the CPU instead (``tuner pretrain``: --set)
log = logging.getLogger("tuner")
_cpu_fallback: str | None = None  # why ``auto`` means the CPU in this process (None: it does not)


class GpuUnusable(RuntimeError):
    """A CUDA device failed when tuner tried it (not out of memory): the message says how."""


# how the CUDA runtime, cuBLAS and cuDNN word their failures (a bug's message, e.g. tensors on
# "cuda:0 and cpu", has none of these)
_CUDA_FAILURES = ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "cuDNN error", "CUDA driver",
                  "CUDA-capable device", "CUDA out of memory")


def is_cuda_failure(error: BaseException) -> bool:
    """Whether ``error`` is the CUDA runtime failing (a context, cuBLAS or cuDNN handle that
    cannot be made, a device busy or lost) rather than a bug: ``torch.AcceleratorError``, or a
    ``RuntimeError`` worded as CUDA, cuBLAS or cuDNN word their failures."""
    accelerator = getattr(torch, "AcceleratorError", None)
    if accelerator is not None and isinstance(error, accelerator):
        return True
    return isinstance(error, RuntimeError) and any(w in str(error) for w in _CUDA_FAILURES)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def fall_back_to_cpu(reason: str) -> None:
    """Make ``auto`` mean the CPU in this process from now on, with a warning saying why."""
    global _cpu_fallback
    if _cpu_fallback is None:
        log.warning("device auto: %s; training on the CPU instead", reason)
    _cpu_fallback = reason


def check_device_name(name: str, where: str = "device") -> str:
    """Check the spelling of a device name (no probing: a study file is checked this way when
    it is read; :func:`check_device` asks the machine)."""
    if not isinstance(name, str) or not _PATTERN.match(name):
        raise ConfigError(f"{where}: must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def check_device(name: str, where: str = "device", hint: str = CPU_HINT) -> str:
    """Validate a device name; a CUDA device must exist on this machine and answer (its
    context is made: :func:`probe_cuda`). A CUDA device that cannot be used is a
    :class:`ConfigError` ending in ``hint`` (how to train on the CPU instead); ``auto`` on a
    machine whose GPU fails falls back to the CPU (:func:`fall_back_to_cpu`)."""
    check_device_name(name, where)
    if name == "auto":
        if _cpu_fallback is None and torch.cuda.is_available():
            failure = probe_cuda(torch.device("cuda"))
            if failure is not None:
                fall_back_to_cpu(f"the GPU cannot be used ({failure})")
        return name
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{where}: {name!r} asked for, but this machine has no CUDA GPU; "
                              f"train on the CPU with {hint}")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{where}: {name!r} asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s); train on the CPU with {hint}"
            )
        failure = probe_cuda(torch.device("cuda", index))
        if failure is not None:
            raise ConfigError(f"{where}: {name!r} cannot be used ({failure}); free it, or train "
                              f"on the CPU with {hint}")
    return name


def probe_cuda(device: torch.device) -> str | None:
    """``None`` when ``device`` answers (its free memory is read, which makes its context), else
    the first line of the CUDA error it raised (busy, lost, out of memory for a context)."""
    try:
        torch.cuda.mem_get_info(device)
    except RuntimeError as e:  # torch.OutOfMemoryError and torch.AcceleratorError among them
        if isinstance(e, torch.OutOfMemoryError) or is_cuda_failure(e):
            return _first_line(e)
        raise
    return None


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a checked name (``auto`` picks CUDA when available, unless this
    process found its GPU unusable: :func:`fall_back_to_cpu`)."""
    if name == "auto":
        usable = _cpu_fallback is None and torch.cuda.is_available()
        return torch.device("cuda" if usable else "cpu")
    return torch.device(name)


def use_device(name: str = "auto") -> torch.device:
    """:func:`resolve_device`, and a CUDA device with an index made this process's current
    one (``torch.cuda.set_device``), so that whatever uses the current device (a default
    ``torch.Generator("cuda")``, cuBLAS handles, a user's ``.cuda()``) lands on it too, not on
    GPU 0. A worker of ``run --jobs`` on ``cuda:N`` trains there and nowhere else."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def device_sharers() -> int:
    """How many processes train on this process's device at once (``$TUNER_DEVICE_SHARERS``,
    which ``run --jobs`` sets for its workers; default 1): each may plan its share of the
    device's free memory."""
    try:
        return max(1, int(os.environ.get(SHARERS_ENV) or 1))
    except ValueError:
        return 1


def use_deterministic(on: bool) -> None:
    """The opt-in deterministic mode (``[objective] deterministic = true``): deterministic
    kernels only (an operation without one raises), cuDNN deterministic and not benchmarking,
    TF32 off for matrix products and convolutions, cuBLAS's fixed workspace. A rerun on the same
    GPU, torch and driver then reproduces its trials; CPU and GPU still differ from each other
    (other kernels, and weights drawn from another generator). Off: torch's defaults, untouched."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def worker_device(index: int, requested: str = "auto", n_gpus: int | None = None) -> str:
    """The device of local worker ``index`` (from 0) when workers share a machine: with
    ``auto`` or ``cuda`` and several GPUs, worker ``i`` gets ``cuda:(i mod n_gpus)``, so N
    workers spread over the GPUs; ``cpu`` and an explicit ``cuda:N`` are kept as asked."""
    if requested not in ("auto", "cuda"):
        return requested
    count = torch.cuda.device_count() if n_gpus is None else n_gpus
    if count == 0:
        return "cpu" if requested == "auto" else requested
    return f"cuda:{index % count}"


# --------------------------------------------------------------------------- batch-size bound
def largest_pow2(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest power of two in ``[low, high]`` for which ``fits`` holds, assuming what fits
    at one size fits at every smaller one; 0 when not even ``low`` fits."""
    best, size = 0, low
    while size <= high and fits(size):
        best, size = size, size * 2
    return best


def cuda_step_fits(make_model: Callable[[], torch.nn.Module], n_features: int,
                   device: torch.device, reserved_bytes: int = 0, *,
                   eval_rows: int = 0) -> Callable[[int], bool]:
    """``fits(batch)``: one Adam training step at that batch size, and a forward pass of
    ``eval_rows`` rows without gradients (an evaluation chunk), run on ``device`` within
    :data:`MEMORY_HEADROOM` of this process's share of its memory (:func:`memory_budget`),
    ``reserved_bytes`` (the data kept on the GPU, and its permuted copy) included. Tried for
    real: an out-of-memory error means no. What a step needs is measured as the drop in the
    device's free memory (the allocator's cache, fragmentation, cuBLAS's workspace and anything
    else outside the allocator count) or the allocator's peak, whichever is larger. The model
    and its optimizer are built once and stepped at each batch size in turn; ``fits.close()``
    lets them go. A CUDA failure other than out of memory raises :class:`GpuUnusable`."""
    state: dict[str, Any] = {}

    def fits(batch: int) -> bool:
        try:
            if "model" not in state:
                free, total = torch.cuda.mem_get_info(device)
                state.update(free=free, budget=memory_budget(free, total),
                             base=torch.cuda.memory_reserved(device))
                state["model"] = make_model().to(device)
                state["optimizer"] = torch.optim.Adam(state["model"].parameters())
            model, optimizer = state["model"], state["optimizer"]
            torch.cuda.reset_peak_memory_stats(device)
            x = torch.randn(batch, n_features, device=device)
            # any task's loss: the step's memory is the model's, not its loss's
            model(x).float().square().mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            x = None
            if eval_rows:
                with torch.no_grad():
                    model(torch.randn(eval_rows, n_features, device=device))
            torch.cuda.synchronize(device)
            drop = state["free"] - torch.cuda.mem_get_info(device)[0]
            peak = torch.cuda.max_memory_reserved(device) - state["base"]
            return max(drop, peak) + reserved_bytes <= state["budget"]
        except torch.OutOfMemoryError:
            return False
        except RuntimeError as e:
            if is_cuda_failure(e):
                raise GpuUnusable(_first_line(e)) from None
            raise

    def close() -> None:
        state.clear()
        with contextlib.suppress(RuntimeError):  # a failed device may fail here too
            torch.cuda.empty_cache()

    fits.close = close  # type: ignore[attr-defined]
    return fits


def memory_budget(free: int, total: int, sharers: int | None = None) -> float:
    """The bytes one process may plan to use on a GPU with ``free`` of ``total`` bytes free,
    when ``sharers`` processes (default :func:`device_sharers`) train on it at once: its share of
    the whole (``total / sharers``), no more than what is free, times :data:`MEMORY_HEADROOM`.
    Alone on the device this is ``MEMORY_HEADROOM × free``, as before ``--jobs`` shared it."""
    sharers = device_sharers() if sharers is None else max(1, sharers)
    return MEMORY_HEADROOM * min(free, total / sharers)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def fit_batch_size(space: Any, settings: dict[str, Any], data: Any, where: str) -> Any:
    """``space`` with the ``batch_size`` range's upper bound lowered to the largest power of two
    that fits the device (CUDA only: on a CPU the training set is the bound). Raises
    :class:`ConfigError` when not even the smallest batch size of the range fits, or the GPU
    is busy or fails (naming ``--device cpu``); with ``device = "auto"`` a busy or failing GPU
    makes this process train on the CPU instead (:func:`fall_back_to_cpu`)."""
    device = use_device(settings["device"])
    if device.type != "cuda" or "batch_size" not in space:
        return space

    def biggest(name: str) -> int:
        return int(max(space[name].values())) if name in space else 1

    auto = settings["device"] == "auto"
    param = space["batch_size"]
    sizes = [int(v) for v in param.values()]
    low, high = min(sizes), max(sizes)
    activation = space["activation"].values()[0] if "activation" in space else "relu"
    spec = ModelSpec(data.n_features, data.n_outputs, data.image_shape, biggest("depth"),
                     biggest("width"), activation)
    train_bytes = sum(t.numel() * t.element_size() for t in (data.x_train, data.y_train))
    data_bytes = train_bytes * 2 + sum(t.numel() * t.element_size()  # + the permuted copy
                                       for t in (data.x_val, data.y_val))
    eval_rows = min(EVAL_CHUNK, int(data.x_val.shape[0]))
    fits = cuda_step_fits(lambda: MODELS.get(settings["model"])(spec), data.n_features, device,
                          data_bytes, eval_rows=eval_rows)
    try:
        bound = largest_pow2(fits, low, high)
    except GpuUnusable as e:
        return _unusable(space, device, auto, str(e), where)
    finally:
        close = getattr(fits, "close", None)
        if close is not None:  # the probe's model and optimizer go before anything else
            close()
    if bound == 0:
        try:
            free, total = torch.cuda.mem_get_info(device)
        except RuntimeError as e:
            if not is_cuda_failure(e):
                raise
            return _unusable(space, device, auto, _first_line(e), where)
        busy = total > 0 and free < BUSY_FREE_SHARE * total
        if busy and auto:
            fall_back_to_cpu(f"the GPU is busy ({_gib(free)} of its {_gib(total)} free)")
            return space
        if busy:
            raise ConfigError(
                f"{where}: {device} is busy: {_gib(free)} of its {_gib(total)} free (other "
                f"processes use the rest), and not even batch_size {low} fits; free it, or train "
                f"on the CPU with {CPU_HINT}")
        raise ConfigError(
            f"{where}: [space] batch_size: not even {low} fits in the memory of {device} "
            f"(a training step of the largest model of the space); lower the range, or train "
            f"on the CPU with {CPU_HINT}"
        )
    if bound == high:
        return space
    if param.kind != "pow2":  # a list: Optuna refuses changed choices within one study
        raise ConfigError(
            f"{where}: [space] batch_size: {high} does not fit in the memory of {device}; the "
            f"largest power of two that fits is {bound}: drop the larger choices"
        )
    log.info("%s: batch_size upper bound lowered from %d to %d, the largest power of two that "
             "fits in the memory of %s", where, high, bound, device)
    narrowed = dataclasses.replace(param, high=bound)
    params = tuple(narrowed if p.name == param.name else p for p in space.params)
    return dataclasses.replace(space, params=params)


def _unusable(space: Any, device: torch.device, auto: bool, reason: str, where: str) -> Any:
    """A GPU that failed during the fit: with ``auto``, ``space`` as it is and the CPU from now
    on; else the :class:`ConfigError` that names ``--device cpu``."""
    if auto:
        fall_back_to_cpu(f"the GPU cannot be used ({reason})")
        return space
    raise ConfigError(f"{where}: {device} cannot be used ({reason}); free it, or train on the "
                      f"CPU with {CPU_HINT}")
