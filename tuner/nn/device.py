"""Choosing the training device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``,
``cuda:N``; pinning worker processes to GPUs; the largest batch size that fits a GPU.

Every CUDA call here is behind ``torch.cuda.is_available()`` or a device whose type is
``cuda``, so CPU-only machines never touch the CUDA runtime.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Any

import torch

from tuner.core.errors import ConfigError
from tuner.nn.models import MODELS, ModelSpec

_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
MEMORY_HEADROOM = 0.8  # share of a GPU's free memory a trial may plan to use
log = logging.getLogger("tuner")


def check_device_name(name: str, where: str = "device") -> str:
    """Check the spelling of a device name (no probing: a study file is checked this way when
    it is read; :func:`check_device` asks the machine)."""
    if not isinstance(name, str) or not _PATTERN.match(name):
        raise ConfigError(f"{where}: must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def check_device(name: str, where: str = "device") -> str:
    """Validate a device name; a CUDA device must exist on this machine."""
    check_device_name(name, where)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{where}: {name!r} asked for, but this machine has no CUDA GPU")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{where}: {name!r} asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return name


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a checked name (``auto`` picks CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
                   device: torch.device, reserved_bytes: int = 0) -> Callable[[int], bool]:
    """``fits(batch)``: one Adam training step of a fresh model at that batch size runs on
    ``device`` within :data:`MEMORY_HEADROOM` of its free memory, ``reserved_bytes`` (the data
    kept on the GPU) included. Tried for real: an out-of-memory error means no."""

    def fits(batch: int) -> bool:
        free, _ = torch.cuda.mem_get_info(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        try:
            model = make_model().to(device)
            optimizer = torch.optim.Adam(model.parameters())
            x = torch.randn(batch, n_features, device=device)
            # any task's loss: the step's memory is the model's, not its loss's
            model(x).float().square().mean().backward()
            optimizer.step()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - before
            return peak + reserved_bytes <= MEMORY_HEADROOM * free
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            model = optimizer = x = None
            torch.cuda.empty_cache()

    return fits


def fit_batch_size(space: Any, settings: dict[str, Any], data: Any, where: str) -> Any:
    """``space`` with the ``batch_size`` range's upper bound lowered to the largest power of two
    that fits the device (CUDA only: on a CPU the training set is the bound). Raises
    :class:`ConfigError` when not even the smallest batch size of the range fits."""
    device = resolve_device(settings["device"])
    if device.type != "cuda" or "batch_size" not in space:
        return space
    def biggest(name: str) -> int:
        return int(max(space[name].values())) if name in space else 1

    param = space["batch_size"]
    sizes = [int(v) for v in param.values()]
    low, high = min(sizes), max(sizes)
    activation = space["activation"].values()[0] if "activation" in space else "relu"
    spec = ModelSpec(data.n_features, data.n_outputs, data.image_shape, biggest("depth"),
                     biggest("width"), activation)
    data_bytes = sum(t.numel() * t.element_size()
                     for t in (data.x_train, data.y_train, data.x_val, data.y_val))
    fits = cuda_step_fits(lambda: MODELS.get(settings["model"])(spec), data.n_features, device,
                          data_bytes)
    bound = largest_pow2(fits, low, high)
    if bound == 0:
        raise ConfigError(
            f"{where}: [space] batch_size: not even {low} fits in the memory of {device} "
            f"(a training step of the largest model of the space); lower the range"
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
