"""Choosing the training device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``,
``cuda:N``."""

from __future__ import annotations

import re

import torch

from tuner.errors import ConfigError

_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_device(name: str, where: str = "device") -> str:
    """Validate a device name; a CUDA device must exist on this machine."""
    if not isinstance(name, str) or not _PATTERN.match(name):
        raise ConfigError(f"{where}: must be auto, cpu, cuda or cuda:N, got {name!r}")
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
