"""Dataset files a study names (``dataset = "csv"`` or ``"npz"``, with ``path``): a CSV with a
header row and a ``target`` column, or an NPZ archive with arrays ``X`` and ``target`` (``y`` by
default). Read with the standard library and numpy and checked with errors that say which file
and where. The target comes back as it is in the file (numbers, or strings for text labels):
:mod:`tuner.nn.data` decides the task and maps class labels to 0..k-1 (:func:`label_ids`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tuner.core.errors import ConfigError


def load_csv(seed: int, path: str, target: str):
    """``(X, y, None)`` from a CSV file: every column but ``target`` is a numeric feature."""
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
    return x, np.asarray(_csv_labels(labels, [line for line, _ in body], columns[t])), None


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
    """Numeric labels as floats (so 2 sorts before 10), anything else as the strings they are."""
    try:
        numbers = [float(v) for v in labels]
    except ValueError:
        return labels
    bad = next((i for i, n in enumerate(numbers) if not np.isfinite(n)), None)
    if bad is not None:
        raise ConfigError(f"{where} (the label) has a non-finite value ({labels[bad]}) on "
                          f"line {lines[bad]}; clean or drop it")
    return numbers


def load_npz(seed: int, path: str, target: str):
    """``(X, y, None)`` from an NPZ archive's ``X`` and ``target`` arrays."""
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
    if y.ndim not in (1, 2) or len(y) != len(x) or (y.ndim == 2 and y.dtype.kind not in "biuf"):
        raise ConfigError(f"dataset file {p}: array {target!r} must hold one label or value per "
                          f"row of 'X' (shape ({len(x)},), or ({len(x)}, k) numbers for a "
                          f"regression), got shape {y.shape}")
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
        bad_y = np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(axis=1))
        if len(bad_y):
            raise ConfigError(f"dataset file {p}: array {target!r} has a non-finite value "
                              f"in row {bad_y[0]} (counting from 0)")
    return x, y, image_shape


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


def label_ids(values: list) -> np.ndarray:
    """Maps arbitrary labels (strings or numbers) to 0..k-1 in sorted order."""
    classes = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in values], dtype=np.int64)
