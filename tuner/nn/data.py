"""Datasets that ship offline, held as in-memory tensors.

Every dataset is a table of features ``X (n, d)`` and integer labels ``y (n,)``; image datasets
also say their ``(C, H, W)`` shape so a CNN can unflatten rows. Features are standardised with
the training split's mean/std, and the train/validation split is stratified and seeded.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tuner.core.errors import ConfigError
from tuner.core.registry import Registry
from tuner.nn import data_cache
from tuner.nn.data_files import label_ids, load_csv, load_npz


@dataclass(frozen=True)
class Dataset:
    """Standardised train/validation tensors on one device.

    ``x_*`` are float32 ``(n, d)``; ``y_*`` are int64 ``(n,)`` labels in ``[0, n_classes)``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    image_shape: tuple[int, int, int] | None = None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    def to(self, device: torch.device | str) -> Dataset:
        move = functools.partial(torch.Tensor.to, device=device)
        return Dataset(
            self.name, move(self.x_train), move(self.y_train), move(self.x_val),
            move(self.y_val), self.n_classes, self.image_shape,
        )


Loader = Callable[..., tuple[np.ndarray, np.ndarray, tuple[int, int, int] | None]]
"""``load(seed=..., **options) -> (X (n, d), y (n,), image_shape or None)``."""


@dataclass(frozen=True)
class DatasetSpec:
    """A loader and the options it takes (name -> default); ``required`` options have no default."""

    load: Loader
    options: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()


DATASETS: Registry[DatasetSpec] = Registry("dataset")
COMMON_OPTIONS = {"val_fraction": 0.25, "classes": None}


def _sklearn(loader_name: str, image_shape: tuple[int, int, int] | None = None) -> Loader:
    def load(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int] | None]:
        from sklearn import datasets

        bunch = getattr(datasets, loader_name)()
        return bunch.data, bunch.target, image_shape

    return load


def _synthetic(maker: str) -> Loader:
    def load(n_samples: int, noise: float, seed: int, **kw: Any):
        from sklearn import datasets

        make = getattr(datasets, maker)
        if maker == "make_classification":
            x, y = make(n_samples=n_samples, random_state=seed, flip_y=noise, **kw)
        else:
            x, y = make(n_samples=n_samples, noise=noise, random_state=seed, **kw)
        return x, y, None

    return load


DATASETS.add("digits", DatasetSpec(_sklearn("load_digits", (1, 8, 8))))
DATASETS.add("iris", DatasetSpec(_sklearn("load_iris")))
DATASETS.add("wine", DatasetSpec(_sklearn("load_wine")))
DATASETS.add("breast_cancer", DatasetSpec(_sklearn("load_breast_cancer")))
DATASETS.add("moons", DatasetSpec(_synthetic("make_moons"), {"n_samples": 1000, "noise": 0.2}))
DATASETS.add("circles", DatasetSpec(_synthetic("make_circles"), {"n_samples": 1000, "noise": 0.1}))
DATASETS.add(
    "classification",
    DatasetSpec(
        _synthetic("make_classification"),
        {"n_samples": 2000, "noise": 0.01, "n_features": 20, "n_informative": 10, "n_classes": 4},
    ),
)
DATASETS.add("csv", DatasetSpec(load_csv, {"target": "target"}, required=("path",)))
DATASETS.add("npz", DatasetSpec(load_npz, {"target": "y"}, required=("path",)))


def dataset_options(name: str) -> dict[str, Any]:
    """All options the named dataset accepts, with their defaults (``None`` = required)."""
    spec = DATASETS.get(name)
    return {**COMMON_OPTIONS, **spec.options, **dict.fromkeys(spec.required)}


def load_dataset(name: str, seed: int = 0, device: str = "cpu", **options: Any) -> Dataset:
    """Load, filter, split (stratified, seeded) and standardise a dataset onto ``device``.

    ``options`` are the dataset's own (see :func:`dataset_options`) plus ``val_fraction`` and
    ``classes`` (keep only these labels, renumbered 0..k-1: e.g. digits 0–4 for pre-training).
    Results are cached per process: trials of a study share one copy.
    """
    key = json.dumps(options, sort_keys=True, default=str)
    return _load_cached(name, seed, key).to(device)


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, seed: int, options_json: str) -> Dataset:
    options = {**dataset_options(name), **json.loads(options_json)}
    key = data_cache.cache_key(name, seed, options)
    stored = data_cache.read(key)
    if stored is None:
        arrays, n_classes, image_shape = _prepare(name, seed, options)
        data_cache.write(key, arrays, n_classes, image_shape)
    else:
        arrays = {k: stored[k] for k in data_cache.ARRAYS}
        n_classes, image_shape = stored["n_classes"], stored["image_shape"]
    return Dataset(name=name, n_classes=n_classes, image_shape=image_shape,
                   **{k: torch.as_tensor(v) for k, v in arrays.items()})


def _prepare(name: str, seed: int, options: dict[str, Any]
             ) -> tuple[dict[str, np.ndarray], int, tuple[int, int, int] | None]:
    """Load, filter, split and standardise: float32 features and int64 labels, the class count
    and the image shape (what :mod:`tuner.nn.data_cache` keeps)."""
    from sklearn.model_selection import train_test_split

    spec = DATASETS.get(name)
    options = dict(options)
    val_fraction = options.pop("val_fraction")
    classes = options.pop("classes")
    missing = [k for k in spec.required if options.get(k) is None]
    if missing:
        raise ConfigError(f"dataset {name!r} needs option(s) {', '.join(missing)}")
    x, y, image_shape = spec.load(seed=seed, **options)
    if classes is not None:
        keep = np.isin(y, classes)
        x, y = x[keep], label_ids(list(y[keep]))
    n_classes = int(y.max()) + 1 if len(y) else 0
    if n_classes < 2:
        kept = f" (classes = {classes} kept {n_classes})" if classes is not None else ""
        raise ConfigError(f"dataset {name!r} has fewer than two classes{kept}")
    rarest = int(np.bincount(y).min())
    if rarest < 2:
        raise ConfigError(f"dataset {name!r}: every class needs at least 2 rows for a "
                          f"stratified train/validation split; the rarest has {rarest}")
    try:
        x_tr, x_va, y_tr, y_va = train_test_split(
            x.astype(np.float64), y, test_size=val_fraction, random_state=seed, stratify=y
        )
    except ValueError as e:  # e.g. a validation share smaller than the number of classes
        raise ConfigError(f"dataset {name!r} cannot be split with val_fraction = "
                          f"{val_fraction}: {e}") from None
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std[std == 0] = 1.0  # constant pixels/columns stay 0 instead of dividing by zero

    def a(values: np.ndarray, dtype: type) -> np.ndarray:
        return np.ascontiguousarray(values, dtype=dtype)

    arrays = {"x_train": a((x_tr - mean) / std, np.float32), "y_train": a(y_tr, np.int64),
              "x_val": a((x_va - mean) / std, np.float32), "y_val": a(y_va, np.int64)}
    return arrays, n_classes, image_shape
