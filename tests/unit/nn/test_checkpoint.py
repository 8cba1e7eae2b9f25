"""nn.checkpoint on real files: the format round-trips, loads with ``weights_only=True`` only,
every way a file is wrong is one CheckpointError naming it, and layers copy by name and shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuner.core.errors import CheckpointError
from tuner.nn.checkpoint import (
    FORMAT,
    VERSION,
    copy_body,
    copy_matching,
    head_names,
    read_checkpoint,
    save_checkpoint,
)
from tuner.nn.models import ModelSpec, cnn, mlp


def spec(depth: int = 2, width: int = 8, n_classes: int = 3, activation: str = "tanh",
         image_shape: tuple[int, int, int] | None = None) -> ModelSpec:
    return ModelSpec(64 if image_shape else 6, n_classes, image_shape, depth, width, activation)


SPEC = spec()


def _saved(tmp_path: Path, made: ModelSpec = SPEC) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = mlp(made)
    return save_checkpoint(tmp_path / "c.pt", model, "mlp", made, {"dataset": "iris"}), model


def test_a_checkpoint_round_trips_its_model_and_what_it_came_from(tmp_path: Path) -> None:
    path, model = _saved(tmp_path)
    ckpt = read_checkpoint(path)
    assert (ckpt.model, ckpt.spec, ckpt.source) == ("mlp", SPEC, {"dataset": "iris"})
    assert ckpt.head == head_names(model) == ["4.weight", "4.bias"]
    assert set(ckpt.state_dict) == set(model.state_dict())
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in model.state_dict().items())
    assert len(ckpt.sha256) == 64 and "depth 2, width 8, tanh" in ckpt.describe()
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left beside it


def test_a_rewritten_file_is_read_again(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    first = read_checkpoint(path)
    assert read_checkpoint(path) is first  # cached while the file is unchanged
    _saved(tmp_path, spec(depth=1, width=4))
    assert read_checkpoint(path).spec.depth == 1


class Evil:
    def __reduce__(self):  # would run code on a plain torch.load
        return (print, ("pickled code ran",))


@pytest.mark.parametrize(("payload", "match"), [
    ({"format": FORMAT, "version": VERSION, "model": "mlp", "evil": Evil()},
     r"cannot be loaded with torch.load\(weights_only=True\) .*holds pickled objects"),
    ({"weights": torch.zeros(2)}, r"is not a tuner checkpoint"),
    ({"format": FORMAT, "version": VERSION + 1}, r"format version 2; .* upgrade tuner"),
    ({"format": FORMAT, "version": VERSION, "model": "mlp", "spec": {}, "head": [],
      "state_dict": {}, "source": {}}, r"is damaged: spec lacks"),
    ({"format": FORMAT, "version": VERSION, "model": "mlp", "spec": [], "head": [],
      "state_dict": {}, "source": {}}, r"is damaged: 'spec' must be a dict, got list"),
])
def test_a_wrong_file_is_one_error_naming_it(tmp_path: Path, payload, match, capsys) -> None:
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=match) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)
    assert "pickled code ran" not in capsys.readouterr().out


@pytest.mark.parametrize(("make", "match"), [
    (lambda p: None, r"does not exist; make one with: tuner pretrain -o"),
    (lambda p: p.mkdir(), r"is not a file"),
    (lambda p: p.write_bytes(b"PK\x03\x04cut"), r"cannot be loaded .*corrupt, truncated"),
    (lambda p: p.write_bytes(b""), r"cannot be loaded"),
])
def test_a_missing_folder_or_truncated_file(tmp_path: Path, make, match) -> None:
    make(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(tmp_path / "x.pt")


def test_nothing_is_written_into_a_folder_or_a_missing_one(tmp_path: Path) -> None:
    model = mlp(SPEC)
    with pytest.raises(CheckpointError, match="it is a folder"):
        save_checkpoint(tmp_path, model, "mlp", SPEC, {})
    with pytest.raises(CheckpointError, match=r"folder .*nope does not exist"):
        save_checkpoint(tmp_path / "nope" / "c.pt", model, "mlp", SPEC, {})
    assert list(tmp_path.iterdir()) == []


def test_the_body_copies_and_the_head_stays(tmp_path: Path) -> None:
    path, source = _saved(tmp_path)
    torch.manual_seed(1)
    target = mlp(spec(n_classes=5))  # a new task: 5 classes
    head_before = target[4].weight.clone()
    copied = copy_body(target, read_checkpoint(path))
    assert copied == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert torch.equal(target[0].weight, source[0].weight)
    assert torch.equal(target[4].weight, head_before)


@pytest.mark.parametrize(("other", "match"), [
    (spec(depth=3), r"has no layer '4.weight': the model is deeper"),
    (spec(depth=1), r"has layers the model lacks \(2.bias, 2.weight\)"),
    (spec(width=16), r"layer '0.weight' has shape \(8, 6\), the model needs \(16, 6\)"),
])
def test_a_body_that_does_not_fit_is_refused_and_nothing_is_copied(tmp_path, other, match) -> None:
    path, _ = _saved(tmp_path)
    target = mlp(other)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match=match):
        copy_body(target, read_checkpoint(path))
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_copy_matching_takes_what_fits_in_any_architecture(tmp_path: Path) -> None:
    path, source = _saved(tmp_path)
    wider = mlp(spec(activation="relu"))
    assert copy_matching(wider, read_checkpoint(path)) == ["0.weight", "0.bias", "2.weight",
                                                             "2.bias"]
    assert torch.equal(wider[2].weight, source[2].weight)
    image = cnn(spec(depth=1, image_shape=(1, 8, 8)))
    assert copy_matching(image, read_checkpoint(path)) == []  # nothing of that shape
