"""Offline datasets: loading, filtering, seeded stratified split, standardisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, merged
from tuner.core.errors import ConfigError
from tuner.nn import data as data_module
from tuner.nn.data import DATASETS, _load_cached, load_dataset
from tuner.run.config import config_from_dict


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if n not in ("csv", "npz")])
def test_builtin_datasets_load_offline(name):
    data = load_dataset(name, seed=0)
    assert data.task == DATASETS.get(name).task
    assert data.x_train.shape[1] == data.x_val.shape[1] == data.n_features
    if data.task == "classification":
        assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
        assert set(data.y_train.unique().tolist()) == set(range(data.n_classes))
    else:  # the target as it is: float32 values, one output
        assert data.y_train.dtype == data.y_val.dtype == torch.float32
        assert data.n_classes == 0 and data.n_outputs == 1 and data.y_train.ndim == 1
        assert data.y_train.std() > 10  # not standardised (diabetes: ~77, regression: ~200)
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


BAD_CSV = [
    # (file content: text or bytes, expected message after "dataset file <path>")
    ("a,b\n1,2\n", r" has no column 'label'"),
    ("a,label\nx,1\ny,0\n",
     r": column 'a' has a non-numeric value 'x' on line 2; feature columns must be numeric"),
    ("a,label\n", r" has no data rows \(only a header\)"),
    ("", r" is empty; it needs a header row"),
    ("\n\n", r" is empty; it needs a header row"),
    ("label\n1\n2\n", r" has no feature columns, only 'label'"),
    ("a,b,label\n1,2,0\n3,inf,1\n", r": column 'b' has a non-finite value \(inf\) on line 3; clean"),
    ("a,b,label\n1,2,0\nnan,4,1\n", r": column 'a' has a non-finite value \(nan\) on line 3"),
    ("a,b,label\n1,2,0\n3,,1\n", r": column 'b' is empty on line 3; fill or drop the row"),
    ("a,b,label\n1,2,0\n3,4, \n", r": column 'label' \(the label\) is empty on line 3"),
    ("a,label\n1,0\n2,nan\n", r": column 'label' \(the label\) has a non-finite value \(nan\) on line 3"),
    ("a,b,label\n1,2,0\n3,1\n", r": line 3 has 2 fields, the header has 3"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary", r" is not a UTF-8 text CSV file$"),
    (b"a,label\n1,\x000\n", r" is not a UTF-8 text CSV file \(it has NUL bytes\)"),
]


@pytest.mark.parametrize(("content", "match"), BAD_CSV, ids=[m[:40] for _, m in BAD_CSV])
def test_bad_csv_files(tmp_path: Path, content, match):
    f = tmp_path / "d.csv"
    f.write_bytes(content) if isinstance(content, bytes) else f.write_text(content)
    with pytest.raises(ConfigError, match=rf"^dataset file {f}{match}"):
        load_dataset("csv", path=str(f), target="label")


def test_an_npz_given_as_csv_is_not_text(tmp_path: Path):
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.arange(4))
    with pytest.raises(ConfigError, match=r"d\.npz is not a UTF-8 text CSV file"):
        load_dataset("csv", path=str(tmp_path / "d.npz"), target="y")


@pytest.mark.parametrize("name", ["csv", "npz"])
@pytest.mark.parametrize(
    ("path", "match"),
    [
        (5, r"^path must be a file name, got 5$"),
        ("", r"^path must be a file name, got ''$"),
        ("{tmp}", r"^dataset file {tmp} is a folder, not a file$"),
        ("{tmp}/nope", r"^dataset file {tmp}/nope does not exist$"),
    ],
)
def test_bad_dataset_paths(tmp_path: Path, name, path, match):
    if isinstance(path, str):
        path = path.format(tmp=tmp_path)
    with pytest.raises(ConfigError, match=match.format(tmp=tmp_path)):
        load_dataset(name, path=path)


@pytest.mark.parametrize(
    ("path", "match"),
    [
        (5, r"study\.toml: \[objective\] path must be a file name, got 5$"),
        (".", r"study\.toml: \[objective\] dataset file .* is a folder, not a file$"),
        ("bin.csv", r"study\.toml: \[objective\] dataset file .*bin\.csv is not a UTF-8 text CSV"),
    ],
)
def test_bad_dataset_paths_in_a_study_file(tmp_path: Path, path, match):
    (tmp_path / "bin.csv").write_bytes(bytes(range(256)))
    raw = merged(TINY, objective={"dataset": "csv", "path": path, "target": "label"})
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw, str(tmp_path / "study.toml")).bind()


def test_csv_blank_lines_bom_and_numeric_labels(tmp_path: Path):
    # labels 0..11 sort as numbers (2 before 10), so classes = [2, 3] keeps labels 2 and 3
    # (4 rows each), not "10" and "11" as strings would (6 + 4 rows)
    rows = [f"{i}, {i % 5} ,{i % 12}" for i in range(48)] + ["1,1,10", "\n", "2,2,10.0"]
    (tmp_path / "d.csv").write_text("\ufeffa,b,label\n" + "\n".join(rows) + "\n\n")
    data = load_dataset("csv", path=str(tmp_path / "d.csv"), target="label", classes=[2, 3])
    assert data.n_classes == 2 and data.n_features == 2
    assert data.n_train + data.x_val.shape[0] == 8


def test_bad_npz_file(tmp_path: Path):
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"not a readable \.npz"):
        load_dataset("npz", path=str(tmp_path / "d.npz"))
    np.savez(tmp_path / "e.npz", data=np.zeros((4, 2)))
    with pytest.raises(ConfigError, match=r"needs arrays 'X' and 'y'"):
        load_dataset("npz", path=str(tmp_path / "e.npz"))


def _nan_at(shape, index):
    x = np.ones(shape)
    x[index] = np.nan
    return x


def _bad_npz(f: Path, what: str):
    ok = np.arange(8) % 2
    if what == "empty":
        f.write_bytes(b"")
    elif what == "truncated":
        np.savez(f, X=np.zeros((8, 2)), y=ok)
        f.write_bytes(f.read_bytes()[:60])
    elif what == "npy":
        with f.open("wb") as h:
            np.save(h, np.zeros((8, 2)))
    elif what == "nan":
        np.savez(f, X=_nan_at((8, 3), (5, 2)), y=ok)
    elif what == "inf-image":
        np.savez(f, X=np.where(np.arange(8 * 4).reshape(8, 1, 2, 2) == 9, np.inf, 0.0), y=ok)
    elif what == "nan-label":
        np.savez(f, X=np.zeros((8, 2)), y=_nan_at((8,), 3))
    elif what == "short-labels":
        np.savez(f, X=np.zeros((8, 2)), y=ok[:6])
    elif what == "text-features":
        np.savez(f, X=np.array([["a", "b"]] * 8), y=ok)


BAD_NPZ = [
    ("empty", r" is not a readable \.npz file"),
    ("truncated", r" is not a readable \.npz file"),
    ("npy", r" is a single \.npy array, not a \.npz archive"),
    ("nan", r": array 'X' has a non-finite value \(nan\) in row 5, feature 2 \(counting from 0\)"),
    ("inf-image", r": array 'X' has a non-finite value \(inf\) in row 2, feature 1 "),
    ("nan-label", r": array 'y' has a non-finite value in row 3 \(counting from 0\)"),
    ("short-labels", r": array 'y' must hold one label or value per row of 'X' \(shape \(8,\), or \(8, k\) numbers for a regression\), got shape \(6,\)"),
    ("text-features", r": array 'X' must be numbers with one row per sample, got dtype <U1"),
]


@pytest.mark.parametrize(("what", "match"), BAD_NPZ, ids=[w for w, _ in BAD_NPZ])
def test_bad_npz_contents(tmp_path: Path, what, match):
    f = tmp_path / "d.npz"
    _bad_npz(f, what)
    with pytest.raises(ConfigError, match=rf"^dataset file {f}{match}"):
        load_dataset("npz", path=str(f))


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


# --------------------------------------------------------------------------- the disk cache
@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache folder, and no per-process copies: every load goes to the disk cache."""
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "cache"))
    _load_cached.cache_clear()
    yield tmp_path / "cache" / "datasets"
    _load_cached.cache_clear()


def _same(a, b) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k))
               for k in ("x_train", "y_train", "x_val", "y_val")) and (
        a.n_classes, a.image_shape) == (b.n_classes, b.image_shape)


def test_a_cached_dataset_is_the_prepared_one_to_the_bit(cache: Path, monkeypatch):
    first = load_dataset("digits", seed=3, classes=[1, 2, 3])
    assert len(list(cache.glob("*.npz"))) == 1
    _load_cached.cache_clear()
    prepared = []
    monkeypatch.setattr(data_module, "_prepare",
                        lambda *a: prepared.append(a) or pytest.fail("not read from the cache"))
    again = load_dataset("digits", seed=3, classes=[1, 2, 3])
    assert prepared == [] and _same(first, again)
    monkeypatch.undo()  # the real _prepare again, and the cache off
    _load_cached.cache_clear()
    monkeypatch.setenv("TUNER_CACHE_DIR", "off")
    assert _same(first, load_dataset("digits", seed=3, classes=[1, 2, 3]))
    other = load_dataset("digits", seed=4, classes=[1, 2, 3])
    assert not torch.equal(first.x_train, other.x_train), "the seed is in the key"
    assert len(list(cache.glob("*.npz"))) == 1, "off writes nothing"


def test_an_edited_dataset_file_is_prepared_again(cache: Path, tmp_path: Path):
    path = tmp_path / "d.csv"
    rows = [f"{i % 7},{(i * 3) % 5},{'ab'[i % 2]}" for i in range(40)]
    path.write_text("f1,f2,target\n" + "\n".join(rows) + "\n")
    before = load_dataset("csv", seed=0, path=str(path))
    _load_cached.cache_clear()
    path.write_text("f1,f2,target\n" + "\n".join(r.replace(",a", ",b").replace(",b", ",a")
                                                  if i < 4 else r
                                                  for i, r in enumerate(rows)) + "\n10,10,a\n")
    after = load_dataset("csv", seed=0, path=str(path))
    assert after.n_train + after.x_val.shape[0] == 41 != before.n_train + before.x_val.shape[0]
    assert len(list(cache.glob("*.npz"))) == 2


def test_a_corrupt_or_unwritable_cache_is_prepared_again(cache: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    good = load_dataset("iris", seed=0)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # a process killed mid-write (or a bad disk)
    _load_cached.cache_clear()
    assert _same(good, load_dataset("iris", seed=0))
    _load_cached.cache_clear()
    assert _same(good, load_dataset("iris", seed=0)), "the entry was written again, whole"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("TUNER_CACHE_DIR", str(blocker))
    _load_cached.cache_clear()
    assert _same(good, load_dataset("iris", seed=0))
