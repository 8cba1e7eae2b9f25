"""A disk cache of prepared datasets: the split, standardised arrays a study trains on.

Preparing a dataset imports scikit-learn (its loaders and its stratified split): 1.3-3 s of
every process that trains, for a split that is the same every time. The arrays are kept in
``$TUNER_CACHE_DIR`` (default ``$XDG_CACHE_HOME/tuner`` or ``~/.cache/tuner``) under a key made
of everything that decides them: the dataset's name, seed and options, the versions of
scikit-learn and NumPy, the cache format, and for a dataset read from a file its path, size and
modification time. A later process reads them back as the very same numbers. Set
``TUNER_CACHE_DIR=off`` to turn the cache off. A missing, unreadable or corrupt entry is
prepared again; a cache that cannot be written is skipped (training never fails for it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

CACHE_ENV = "TUNER_CACHE_DIR"
FORMAT = 2  # bump when what a dataset's preparation produces changes
ARRAYS = ("x_train", "y_train", "x_val", "y_val")


def cache_dir() -> Path | None:
    """Where prepared datasets are kept (``None``: the cache is off)."""
    raw = os.environ.get(CACHE_ENV)
    if raw is not None and raw.strip().lower() in ("off", "0", "none", "false"):
        return None
    if raw:
        return Path(raw).expanduser() / "datasets"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tuner" / "datasets"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def cache_key(name: str, seed: int, options: dict[str, Any]) -> str:
    parts: dict[str, Any] = {"format": FORMAT, "name": name, "seed": seed, "options": options,
                             "scikit-learn": _version("scikit-learn"),
                             "numpy": np.__version__}
    path = options.get("path")
    if isinstance(path, str):
        try:
            st = Path(path).expanduser().stat()
            parts["file"] = [str(Path(path).expanduser().resolve()), st.st_size, st.st_mtime_ns]
        except OSError:
            parts["file"] = [path, None, None]
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read(key: str) -> dict[str, Any] | None:
    """The arrays and facts stored under ``key``, or ``None``."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        with np.load(folder / f"{key}.npz", allow_pickle=False) as z:
            out: dict[str, Any] = {k: z[k] for k in ARRAYS}
            out["n_classes"] = int(z["n_classes"])
            shape = tuple(int(v) for v in z["image_shape"])
            out["image_shape"] = shape if shape else None
            out["task"] = str(z["task"])
            return out
    except Exception:  # missing, half-written by a killed process, an older layout: prepare again
        return None


def write(key: str, arrays: dict[str, np.ndarray], n_classes: int,
          image_shape: tuple[int, ...] | None, task: str = "classification") -> None:
    """Store a prepared dataset under ``key``, atomically (a reader never sees half a file);
    a folder that cannot be written is skipped."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays, n_classes=np.int64(n_classes), task=np.str_(task),
                         image_shape=np.array(image_shape or (), dtype=np.int64))
            os.replace(tmp, folder / f"{key}.npz")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return
