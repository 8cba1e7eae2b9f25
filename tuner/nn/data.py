"""Datasets that ship offline, held as in-memory tensors.

Every dataset is a table of features ``X (n, d)`` and integer labels ``y (n,)``; image datasets
also say their ``(C, H, W)`` shape so a CNN can unflatten rows. Features are standardised with
the training split's mean/std, and the train/validation split is stratified and seeded.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuner.core.errors import ConfigError
from tuner.core.registry import Registry
from tuner.nn import data_cache


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


def _load_csv(seed: int, path: str, target: str):
    import csv
    import io

    p = _existing(path)
    _check_target(target)
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
            text = f.read()
    except UnicodeDecodeError:
        raise ConfigError(f"dataset file {p} is not a UTF-8 text CSV file") from None
    except OSError as e:
        raise ConfigError(f"dataset file {p} cannot be read ({e.strerror or e})") from None
    if "\0" in text:
        raise ConfigError(f"dataset file {p} is not a UTF-8 text CSV file (it has NUL bytes)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        # (file line number, fields) of every non-blank row
        rows = [(reader.line_num, r) for r in reader if any(v.strip() for v in r)]
    except csv.Error as e:
        raise ConfigError(f"dataset file {p} is not a readable CSV file "
                          f"(line {reader.line_num}: {e})") from None
    if not rows:
        raise ConfigError(f"dataset file {p} is empty; it needs a header row and data rows")
    (_, header), body = rows[0], rows[1:]
    header = [h.strip() for h in header]
    if not body:
        raise ConfigError(f"dataset file {p} has no data rows (only a header)")
    if target not in header:
        raise ConfigError(f"dataset file {p} has no column {target!r}; columns: {header}")
    if len(header) < 2:
        raise ConfigError(f"dataset file {p} has no feature columns, only {target!r}")
    t = header.index(target)
    columns = [f"dataset file {p}: column {h!r}" for h in header]
    features = [k for k in range(len(header)) if k != t]
    x = np.empty((len(body), len(features)))
    labels = []
    for i, (line, r) in enumerate(body):
        if len(r) != len(header):
            raise ConfigError(f"dataset file {p}: line {line} has {len(r)} fields, the header "
                              f"has {len(header)}")
        label = r[t].strip()
        if not label:
            raise ConfigError(f"{columns[t]} (the label) is empty on line {line}; "
                              "every row needs a label")
        labels.append(label)
        for j, k in enumerate(features):
            x[i, j] = _cell(r[k], line, columns[k])
    return x, _labels(_csv_labels(labels, [line for line, _ in body], columns[t])), None


def _cell(value: str, line: int, where: str) -> float:
    """One CSV feature cell as a finite float (``where`` names the file and column)."""
    v = value.strip()
    if not v:
        raise ConfigError(f"{where} is empty on line {line}; fill or drop the row")
    try:
        number = float(v)
    except ValueError:
        raise ConfigError(f"{where} has a non-numeric value {v!r} on line {line}; "
                          "feature columns must be numeric") from None
    if not np.isfinite(number):
        raise ConfigError(f"{where} has a non-finite value ({v}) on line {line}; "
                          "clean or drop it")
    return number


def _csv_labels(labels: list[str], lines: list[int], where: str) -> list:
    """Numeric labels as numbers (so 2 sorts before 10), anything else as the strings they are."""
    try:
        numbers = [float(v) for v in labels]
    except ValueError:
        return labels
    bad = next((i for i, n in enumerate(numbers) if not np.isfinite(n)), None)
    if bad is not None:
        raise ConfigError(f"{where} (the label) has a non-finite value ({labels[bad]}) on "
                          f"line {lines[bad]}; clean or drop it")
    return [int(n) if n.is_integer() else n for n in numbers]


def _load_npz(seed: int, path: str, target: str):
    import zipfile
    import zlib

    p = _existing(path)
    _check_target(target)
    try:
        z = np.load(p, allow_pickle=False)
        if isinstance(z, np.ndarray):  # a .npy file, whatever its name
            raise ConfigError(f"dataset file {p} is a single .npy array, not a .npz archive; "
                              f"save one with numpy.savez(file, X=..., {target}=...)")
        with z:
            keys = list(z.keys())
            if "X" not in z or target not in z:
                raise ConfigError(f"dataset file {p} needs arrays 'X' and {target!r}; has {keys}")
            x, y = z["X"], z[target]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ConfigError(f"dataset file {p} is not a readable .npz file ({e})") from None
    if x.ndim == 0 or x.dtype.kind not in "biuf":
        raise ConfigError(f"dataset file {p}: array 'X' must be numbers with one row per sample, "
                          f"got dtype {x.dtype} and shape {x.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise ConfigError(f"dataset file {p}: array {target!r} must hold one label per row of "
                          f"'X' (shape ({len(x)},)), got shape {y.shape}")
    if y.dtype.kind not in "biufUS":
        raise ConfigError(f"dataset file {p}: array {target!r} must be numbers or strings, got "
                          f"dtype {y.dtype}")
    image_shape = tuple(x.shape[1:]) if x.ndim == 4 else None
    x = x.reshape(len(x), -1)
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        row, col = (int(i) for i in bad[0])
        raise ConfigError(f"dataset file {p}: array 'X' has a non-finite value ({x[row, col]}) "
                          f"in row {row}, feature {col} (counting from 0); clean or drop it")
    if y.dtype.kind == "f":
        bad_y = np.flatnonzero(~np.isfinite(y))
        if len(bad_y):
            raise ConfigError(f"dataset file {p}: array {target!r} has a non-finite label "
                              f"({y[bad_y[0]]}) in row {bad_y[0]} (counting from 0)")
    return x, _labels(y.tolist()), image_shape


def _existing(path: Any) -> Path:
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise ConfigError(f"path must be a file name, got {path!r}")
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"dataset file {p} is a folder, not a file")
    if not p.exists():
        raise ConfigError(f"dataset file {p} does not exist")
    if not p.is_file():
        raise ConfigError(f"dataset file {p} is not a regular file")
    return p


def _check_target(target: Any) -> None:
    if not isinstance(target, str) or not target:
        raise ConfigError(f"target must be a column name, got {target!r}")


def _labels(values: list) -> np.ndarray:
    """Maps arbitrary labels (strings or numbers) to 0..k-1 in sorted order."""
    classes = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in values], dtype=np.int64)


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
DATASETS.add("csv", DatasetSpec(_load_csv, {"target": "target"}, required=("path",)))
DATASETS.add("npz", DatasetSpec(_load_npz, {"target": "y"}, required=("path",)))


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
        x, y = x[keep], _labels(list(y[keep]))
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
