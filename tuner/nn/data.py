"""Datasets that ship offline, held as in-memory tensors.

Every dataset is a table of features ``X (n, d)`` and a target: integer class ids ``y (n,)``
for a classification task, float32 values ``y (n,)`` or ``y (n, k)`` for a regression task.
Image datasets also say their ``(C, H, W)`` shape so a CNN can unflatten rows. Features are
standardised with the training split's mean/std (the target is left as it is); the
train/validation split is seeded, and stratified for classification.

The task: ``task = "classification" | "regression"`` when given; else a built-in dataset's own;
else (``csv``, ``npz``) the target decides: text, or whole numbers with at most
:data:`MAX_AUTO_CLASSES` distinct values, is classification; any fractional value (or a 2-D
target) is regression; whole numbers with more distinct values are ambiguous, and an error asks
for ``task``. A target is never re-coded silently.
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
from tuner.core.metrics import TASKS
from tuner.core.registry import Registry
from tuner.nn import data_cache
from tuner.nn.data_files import label_ids, load_csv, load_npz

MAX_AUTO_CLASSES = 20  # whole-number targets with more distinct values need [objective] task


@dataclass(frozen=True)
class Dataset:
    """Standardised train/validation tensors on one device.

    ``x_*`` are float32 ``(n, d)``. Classification (``task``): ``y_*`` are int64 ``(n,)`` labels
    in ``[0, n_classes)``. Regression: ``y_*`` are float32 ``(n,)`` or ``(n, k)`` and
    ``n_classes`` is 0. ``n_outputs`` is what a model's last layer must give: ``n_classes``, or
    ``k`` (1 for ``(n,)``). Build one from arrays of your own with :meth:`from_arrays`.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    image_shape: tuple[int, int, int] | None = None
    task: str = "classification"

    @classmethod
    def from_arrays(cls, x_train: Any, y_train: Any, x_val: Any, y_val: Any, *,
                    task: str | None = None, name: str = "own",
                    image_shape: tuple[int, int, int] | None = None) -> Dataset:
        """A dataset of your own (numpy arrays, tensors or lists), for ``train()`` and the
        toolkit: features as float32; targets as int64 class ids (classification) or float32
        values (regression). ``task`` defaults to regression for a float target, else
        classification. Nothing is split or standardised here: give the rows as they should be
        used."""
        as_x = [torch.as_tensor(np.asarray(v), dtype=torch.float32) for v in (x_train, x_val)]
        ys = [torch.as_tensor(np.asarray(v)) for v in (y_train, y_val)]
        if task is None:
            task = "regression" if ys[0].is_floating_point() else "classification"
        if task not in TASKS:
            raise ValueError(f"Dataset.from_arrays: task must be one of {', '.join(TASKS)}, "
                             f"got {task!r}")
        for what, x, y in (("train", as_x[0], ys[0]), ("val", as_x[1], ys[1])):
            if x.ndim != 2 or len(x) != len(y):
                raise ValueError(f"Dataset.from_arrays: x_{what} must be (n, features) with one "
                                 f"target per row; got x {tuple(x.shape)} and y {tuple(y.shape)}")
        if task == "classification":
            if ys[0].is_floating_point() and not torch.equal(ys[0], ys[0].round()):
                raise ValueError("Dataset.from_arrays: classification targets must be whole "
                                 "numbers (class ids 0..k-1); use task='regression' for values")
            ys = [y.to(torch.int64) for y in ys]
            if min(int(y.min()) for y in ys if len(y)) < 0:
                raise ValueError("Dataset.from_arrays: class ids must be >= 0")
            n_classes = int(max(int(y.max()) for y in ys if len(y))) + 1
        else:
            ys = [y.to(torch.float32) for y in ys]
            n_classes = 0
        return cls(name, as_x[0], ys[0], as_x[1], ys[1], n_classes, image_shape, task)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_outputs(self) -> int:
        """Outputs a model gives per row: the class count, or the regression target's width."""
        if self.task == "classification":
            return self.n_classes
        return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1])

    def to(self, device: torch.device | str) -> Dataset:
        move = functools.partial(torch.Tensor.to, device=device)
        return Dataset(
            self.name, move(self.x_train), move(self.y_train), move(self.x_val),
            move(self.y_val), self.n_classes, self.image_shape, self.task,
        )


Loader = Callable[..., tuple[np.ndarray, np.ndarray, tuple[int, int, int] | None]]
"""``load(seed=..., **options) -> (X (n, d), y (n,), image_shape or None)``."""


@dataclass(frozen=True)
class DatasetSpec:
    """A loader and the options it takes (name -> default); ``required`` options have no
    default. ``task``: the dataset's own task; ``None``, its target decides (files)."""

    load: Loader
    options: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    task: str | None = "classification"


DATASETS: Registry[DatasetSpec] = Registry("dataset")
COMMON_OPTIONS = {"val_fraction": 0.25, "classes": None, "task": None}


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
DATASETS.add("diabetes", DatasetSpec(_sklearn("load_diabetes"), task="regression"))
DATASETS.add(
    "regression",
    DatasetSpec(
        _synthetic("make_regression"),
        {"n_samples": 1000, "noise": 10.0, "n_features": 20, "n_informative": 10,
         "n_targets": 1},
        task="regression",
    ),
)
DATASETS.add("csv", DatasetSpec(load_csv, {"target": "target"}, required=("path",), task=None))
DATASETS.add("npz", DatasetSpec(load_npz, {"target": "y"}, required=("path",), task=None))


def known_task(name: str, task: str | None = None) -> str | None:
    """The task of dataset ``name`` as far as it is known before reading it: ``task`` when
    given, else the dataset's own (``None`` for a file: its target decides)."""
    return task if task is not None else DATASETS.get(name).task


def dataset_options(name: str) -> dict[str, Any]:
    """All options the named dataset accepts, with their defaults (``None`` = required)."""
    spec = DATASETS.get(name)
    return {**COMMON_OPTIONS, **spec.options, **dict.fromkeys(spec.required)}


def load_dataset(name: str, seed: int = 0, device: str = "cpu", **options: Any) -> Dataset:
    """Load, filter, split (seeded; stratified for classification) and standardise a dataset
    onto ``device``.

    ``options`` are the dataset's own (see :func:`dataset_options`) plus ``val_fraction``,
    ``task`` (see the module doc) and ``classes`` (keep only these labels, renumbered 0..k-1:
    e.g. digits 0–4 for pre-training).
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
        arrays, n_classes, image_shape, task = _prepare(name, seed, options)
        data_cache.write(key, arrays, n_classes, image_shape, task)
    else:
        arrays = {k: stored[k] for k in data_cache.ARRAYS}
        n_classes, image_shape, task = stored["n_classes"], stored["image_shape"], stored["task"]
    return Dataset(name=name, n_classes=n_classes, image_shape=image_shape, task=task,
                   **{k: torch.as_tensor(v) for k, v in arrays.items()})


def _decide_task(name: str, y: np.ndarray, task: str | None) -> str:
    """The task of a dataset whose target is ``y`` (see the module doc)."""
    if task is not None:
        if task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        return task
    if DATASETS.get(name).task is not None:
        return DATASETS.get(name).task
    if y.dtype.kind in "US" or (y.dtype == object and any(isinstance(v, str) for v in y)):
        numeric = [_is_number(v) for v in y]
        if sum(numeric) > len(y) / 2:  # numbers with a few stray cells: not text labels
            bad = numeric.index(False)
            raise ConfigError(
                f"dataset {name!r}: the target is numbers but for {len(y) - sum(numeric)} "
                f"value(s), the first {str(y[bad])!r} in data row {bad + 1} (counting from 1); "
                "fix or drop those rows (or, if these are class labels, set task = "
                '"classification")')
        return "classification"
    if y.ndim == 2:
        return "regression"
    values = y.astype(np.float64)
    if not np.all(values == np.round(values)):
        return "regression"
    distinct = np.unique(values)
    if len(distinct) <= MAX_AUTO_CLASSES:
        return "classification"
    raise ConfigError(
        f"dataset {name!r}: the target has {len(distinct)} distinct whole-number values "
        f"({_g(distinct[0])} … {_g(distinct[-1])}): classes or a quantity? set [objective] "
        'task = "classification" or task = "regression"'
    )


def _g(v: float) -> str:
    return f"{v:g}"


def _regression_target(name: str, y: np.ndarray) -> np.ndarray:
    """``y`` as float64 values, or a ConfigError naming the first value that is not a number."""
    try:
        values = y.astype(np.float64)
    except (TypeError, ValueError):
        bad = next((i for i, v in enumerate(y.ravel()) if not _is_number(v)), 0)
        raise ConfigError(
            f"dataset {name!r}: a regression target must be numbers; row {bad + 1} (counting "
            f"data rows from 1) is {str(y.ravel()[bad])!r}"
        ) from None
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))[0])
        raise ConfigError(f"dataset {name!r}: the target has a non-finite value in row "
                          f"{bad + 1} (counting data rows from 1); clean or drop it")
    return values


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _prepare(name: str, seed: int, options: dict[str, Any]
             ) -> tuple[dict[str, np.ndarray], int, tuple[int, int, int] | None, str]:
    """Load, filter, split and standardise: float32 features and the target (int64 labels or
    float32 values), the class count, the image shape and the task (what
    :mod:`tuner.nn.data_cache` keeps)."""
    from sklearn.model_selection import train_test_split

    spec = DATASETS.get(name)
    options = dict(options)
    val_fraction = options.pop("val_fraction")
    classes = options.pop("classes")
    task = options.pop("task")
    missing = [k for k in spec.required if options.get(k) is None]
    if missing:
        raise ConfigError(f"dataset {name!r} needs option(s) {', '.join(missing)}")
    x, y, image_shape = spec.load(seed=seed, **options)
    y = np.asarray(y)
    task = _decide_task(name, y, task)
    if task == "regression":
        if classes is not None:
            raise ConfigError(f"dataset {name!r}: classes = {classes} keeps classes, but the "
                              "task is regression; drop classes or set task = "
                              '"classification"')
        y = _regression_target(name, y)
        n_classes, stratify = 0, None
    else:
        if y.ndim != 1:
            raise ConfigError(f"dataset {name!r}: a classification target has one label per "
                              f"row, got shape {y.shape}; set task = \"regression\"")
        if classes is not None:
            keep = np.isin(y, classes)
            x, y = x[keep], y[keep]
        y = label_ids(y.tolist())
        n_classes = int(y.max()) + 1 if len(y) else 0
        if n_classes < 2:
            kept = f" (classes = {classes} kept {n_classes})" if classes is not None else ""
            raise ConfigError(f"dataset {name!r} has fewer than two classes{kept}")
        rarest = int(np.bincount(y).min())
        if rarest < 2:
            raise ConfigError(f"dataset {name!r}: every class needs at least 2 rows for a "
                              f"stratified train/validation split; the rarest has {rarest}"
                              "; a quantity to predict? set task = \"regression\"")
        stratify = y
    if len(y) < 4:
        raise ConfigError(f"dataset {name!r} has {len(y)} rows; it needs at least 4 to split")
    try:
        x_tr, x_va, y_tr, y_va = train_test_split(
            x.astype(np.float64), y, test_size=val_fraction, random_state=seed,
            stratify=stratify,
        )
    except ValueError as e:  # e.g. a validation share smaller than the number of classes
        raise ConfigError(f"dataset {name!r} cannot be split with val_fraction = "
                          f"{val_fraction}: {e}") from None
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std[std == 0] = 1.0  # constant pixels/columns stay 0 instead of dividing by zero

    def a(values: np.ndarray, dtype: type) -> np.ndarray:
        return np.ascontiguousarray(values, dtype=dtype)

    y_type = np.int64 if task == "classification" else np.float32
    arrays = {"x_train": a((x_tr - mean) / std, np.float32), "y_train": a(y_tr, y_type),
              "x_val": a((x_va - mean) / std, np.float32), "y_val": a(y_va, y_type)}
    return arrays, n_classes, image_shape, task
