"""Offline datasets: loading, filtering, seeded stratified split, standardisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tuner.data import DATASETS, load_dataset
from tuner.errors import ConfigError


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if n not in ("csv", "npz")])
def test_builtin_datasets_load_offline(name):
    data = load_dataset(name, seed=0)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.x_train.shape[1] == data.x_val.shape[1] == data.n_features
    assert set(data.y_train.unique().tolist()) == set(range(data.n_classes))
    # standardised with the training split's statistics
    assert data.x_train.mean(0).abs().max() < 1e-4
    std = data.x_train.std(0, unbiased=False)
    # (constant columns, like digits' always-blank corner pixels, stay 0 rather than divide by 0)
    assert torch.all(((std - 1).abs() < 1e-3) | (std == 0))


def test_split_is_seeded_stratified_and_digits_are_images():
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.image_shape == (1, 8, 8) and a.n_train == 1347 and a.x_val.shape[0] == 450
    train_share = torch.bincount(a.y_train) / a.n_train
    val_share = torch.bincount(a.y_val) / a.y_val.shape[0]
    assert torch.allclose(train_share, val_share, atol=0.01)


def test_classes_keeps_a_subset_renumbered():
    data = load_dataset("digits", seed=0, classes=[5, 6, 7, 8, 9])
    assert data.n_classes == 5 and data.y_train.max().item() == 4
    assert data.n_train + data.x_val.shape[0] == 1797 - 901  # digits 0-4 are 901 images


def test_csv_with_string_labels(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    labels = np.where(x[:, 0] > 0, "cat", "dog")
    lines = ["f1,f2,kind,f3"] + [f"{a},{b},{k},{c}" for (a, b, c), k in zip(x, labels, strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(lines))
    data = load_dataset("csv", path=str(tmp_path / "d.csv"), target="kind")
    assert data.n_features == 3 and data.n_classes == 2 and data.n_train == 60


def test_npz_images_keep_their_shape(tmp_path: Path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(40, 1, 4, 4)), y=rng.integers(0, 2, 40))
    data = load_dataset("npz", path=str(tmp_path / "d.npz"))
    assert data.image_shape == (1, 4, 4) and data.n_features == 16


@pytest.mark.parametrize(
    ("content", "options", "match"),
    [
        ("a,b\n1,2\n", {"target": "label"}, r"has no column 'label'"),
        ("a,label\nx,1\ny,0\n", {"target": "label"}, r"feature columns must be numeric"),
        ("a,label\n", {"target": "label"}, r"has no data rows"),
    ],
)
def test_bad_csv_files(tmp_path: Path, content, options, match):
    (tmp_path / "d.csv").write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_dataset("csv", path=str(tmp_path / "d.csv"), **options)


def test_bad_npz_file(tmp_path: Path):
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"not a readable \.npz"):
        load_dataset("npz", path=str(tmp_path / "d.npz"))
    np.savez(tmp_path / "e.npz", data=np.zeros((4, 2)))
    with pytest.raises(ConfigError, match=r"needs arrays 'X' and 'y'"):
        load_dataset("npz", path=str(tmp_path / "e.npz"))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"classes": [42]}, r"fewer than two classes \(classes = \[42\] kept 0\)"),
        ({"classes": [3]}, r"fewer than two classes \(classes = \[3\] kept 1\)"),
        ({"val_fraction": 0.001}, r"cannot be split with val_fraction = 0.001"),
    ],
)
def test_filters_and_splits_that_cannot_work(options, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset("digits", **options)


def test_a_class_with_a_single_row_cannot_be_split(tmp_path: Path):
    rows = ["a,label"] + [f"{i},{'x' if i < 10 else 'y'}" for i in range(11)]
    (tmp_path / "d.csv").write_text("\n".join(rows))
    with pytest.raises(ConfigError, match=r"every class needs at least 2 rows.*rarest has 1"):
        load_dataset("csv", path=str(tmp_path / "d.csv"), target="label")
