"""Tuner checkpoints: a trained network plus what it takes to reuse it safely.

A checkpoint is one ``torch.save`` file holding only plain data, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs)::

    {
      "format": "tuner-checkpoint", "version": 1, "tuner_version": "0.1.0",
      "model": "mlp",                                   # a tuner.nn.models.MODELS name
      "spec": {"n_features": 64, "n_classes": 5, "image_shape": None,
               "depth": 2, "width": 64, "activation": "relu"},
      "head": ["4.weight", "4.bias"],                   # the task-specific last layer
      "state_dict": {"0.weight": Tensor(64, 64), ...},  # float32, on the CPU
      "source": {"dataset": "digits", "classes": [0, 1, 2, 3, 4], "epochs": 20,
                 "val_accuracy": 0.99, "params": {...}},  # how it was trained (for people)
    }

Every way a file can be wrong — missing, unreadable, not a tuner checkpoint, a newer version,
a model that does not match — is a :class:`~tuner.core.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuner.core.errors import CheckpointError
from tuner.core.paths import replaced_on_write
from tuner.core.version import __version__
from tuner.nn.models import MODELS, ModelSpec, weight_layers

FORMAT = "tuner-checkpoint"
VERSION = 1
REQUIRED = {"model": str, "spec": dict, "head": list, "state_dict": dict, "source": dict}
SPEC_FIELDS = ("n_features", "n_classes", "depth", "width", "activation")


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint file (see the module doc for the fields)."""

    path: Path
    model: str
    spec: ModelSpec
    head: list[str]
    state_dict: dict[str, torch.Tensor]
    source: dict[str, Any]
    sha256: str

    def describe(self) -> str:
        s = self.spec
        return (f"{self.model}, depth {s.depth}, width {s.width}, {s.activation}, "
                f"{s.n_features} features -> {s.n_classes} classes")


def head_names(model: nn.Module) -> list[str]:
    """State-dict names of ``model``'s last weight layer: the head a new task replaces."""
    head = weight_layers(model)[-1]
    prefix = next(name for name, m in model.named_modules() if m is head)
    return [f"{prefix}.{n}" if prefix else n for n, _ in head.named_parameters()]


def save_checkpoint(
    path: str | Path, model: nn.Module, model_name: str, spec: ModelSpec,
    source: Mapping[str, Any],
) -> Path:
    """Write ``model`` (built by ``MODELS[model_name](spec)``) as a tuner checkpoint; atomic."""
    path = check_writable(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "tuner_version": __version__,
        "model": model_name,
        "spec": {**asdict(spec), "image_shape": list(spec.image_shape or []) or None},
        "head": head_names(model),
        "state_dict": {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()},
        "source": dict(source),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if not replaced_on_write(path):  # /dev/null, a FIFO: written into, never replaced
            torch.save(payload, path)
            return path
        torch.save(payload, tmp)
        tmp.replace(path)
    except (OSError, RuntimeError) as e:  # torch's file writer raises RuntimeError (disk full)
        tmp.unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) else "the file could not be written"
        raise CheckpointError(f"cannot write checkpoint {path}: {reason or e}") from None
    return path


def check_writable(path: str | Path) -> Path:
    """``path`` as a :class:`Path`, or :class:`CheckpointError` if no checkpoint can be written
    there (a folder, or in a folder that does not exist): checked before any training."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"cannot write checkpoint {path}: it is a folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CheckpointError(f"cannot write checkpoint {path}: folder {parent} does not exist")
    return path


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify a tuner checkpoint (``weights_only=True``); cached per file version."""
    p = Path(path).expanduser()
    try:
        stat = p.stat()
    except OSError:
        raise CheckpointError(f"checkpoint {p} does not exist; make one with: "
                              f"tuner pretrain -o {p}") from None
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} is not a file")
    return _read(str(p.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, size: int) -> Checkpoint:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p}: {e.strerror or e}") from None
    try:
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, BadZipFile, EOFError, KeyError ("hello" as a
        # file: a legacy pickle with a bad opcode), RuntimeError, …: whatever the bytes provoke
        # torch's own messages run to paragraphs (with terminal escapes); the kind is enough.
        raise CheckpointError(
            f"checkpoint {p} cannot be loaded with torch.load(weights_only=True) "
            f"({type(e).__name__}): it is corrupt, truncated, or holds pickled objects rather "
            "than plain tensors — not a tuner checkpoint"
        ) from None
    if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {p} is not a tuner checkpoint (no 'format': {FORMAT!r} entry); "
            "make one with 'tuner pretrain'"
        )
    version = raw.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"checkpoint {p} has format version {version!r}; this tuner "
                              f"reads version {VERSION} and older: upgrade tuner")
    for key, kind in REQUIRED.items():
        if not isinstance(raw.get(key), kind):
            raise CheckpointError(f"checkpoint {p} is damaged: {key!r} must be a "
                                  f"{kind.__name__}, got {type(raw.get(key)).__name__}")
    spec_raw = raw["spec"]
    missing = [f for f in SPEC_FIELDS if f not in spec_raw]
    if missing or raw["model"] not in MODELS:
        raise CheckpointError(f"checkpoint {p} is damaged: spec lacks {missing} or names an "
                              f"unknown model {raw['model']!r}")
    shape = spec_raw.get("image_shape")
    spec = ModelSpec(
        n_features=int(spec_raw["n_features"]), n_classes=int(spec_raw["n_classes"]),
        image_shape=tuple(shape) if shape else None, depth=int(spec_raw["depth"]),
        width=int(spec_raw["width"]), activation=str(spec_raw["activation"]),
    )
    state = raw["state_dict"]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {p} is damaged: state_dict holds non-tensors")
    return Checkpoint(p, raw["model"], spec, list(raw["head"]), dict(state), dict(raw["source"]),
                      hashlib.sha256(data).hexdigest())


def copy_body(model: nn.Module, ckpt: Checkpoint) -> list[str]:
    """Copy every parameter/buffer of ``model`` except its head from ``ckpt``, in place.

    Raises :class:`CheckpointError` naming the first layer that is missing, extra or of another
    shape. Returns the copied names.
    """
    own_head = set(head_names(model))
    body = {k: v for k, v in model.state_dict().items() if k not in own_head}
    theirs = {k: v for k, v in ckpt.state_dict.items() if k not in set(ckpt.head)}
    where = f"checkpoint {ckpt.path} ({ckpt.describe()})"
    for name in body:
        if name not in theirs:
            raise CheckpointError(f"{where} has no layer {name!r}: the model is deeper or "
                                  "built differently")
    extra = sorted(set(theirs) - set(body))
    if extra:
        raise CheckpointError(f"{where} has layers the model lacks ({', '.join(extra[:4])}): "
                              "the model is shallower or built differently")
    for name, tensor in body.items():
        if tuple(theirs[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: layer {name!r} has shape {tuple(theirs[name].shape)}, the model "
                f"needs {tuple(tensor.shape)}"
            )
    with torch.no_grad():
        for name, tensor in body.items():
            tensor.copy_(theirs[name].to(tensor.dtype))
    return list(body)


def copy_matching(model: nn.Module, ckpt: Checkpoint) -> list[str]:
    """Copy every tensor of ``ckpt`` but its head into ``model`` where ``model`` has one of the
    same name and shape (any architecture: what a pretrained init can reuse of it); returns
    the copied names."""
    ours = model.state_dict()
    head = set(ckpt.head)
    copied = [name for name, tensor in ckpt.state_dict.items() if name not in head
              and name in ours and tuple(ours[name].shape) == tuple(tensor.shape)]
    with torch.no_grad():
        for name in copied:
            ours[name].copy_(ckpt.state_dict[name].to(ours[name].dtype))
    return copied
