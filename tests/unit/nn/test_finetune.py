"""Pretrained inits: tuner checkpoints, copying layers, freezing and head learning rates, and
every way a checkpoint can be wrong (one ``error:`` line, exit 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from tuner.core.errors import CheckpointError, ConfigError, TunerError
from tuner.nn.checkpoint import FORMAT, read_checkpoint, save_checkpoint
from tuner.nn.data import load_dataset
from tuner.nn.finetune import configure
from tuner.nn.models import MODELS, ModelSpec, mlp
from tuner.nn.schemes import load_pretrained
from tuner.nn.training import TrainConfig, make_optimizer, train
from tuner.run.config import config_from_dict, load_config
from tuner.run.pretrain import pretrain
from tuner.run.study import run

SOURCE = {"dataset": "digits", "classes": [0, 1, 2, 3, 4], "epochs": 3}
SPEC = ModelSpec(64, 5, (1, 8, 8), 2, 32, "relu")  # digits: 8x8 images, flattened


def write_ckpt(path: Path, spec: ModelSpec = SPEC, model: str = "mlp") -> Path:
    """An untrained (seeded) checkpoint: the format and checks do not need training."""
    torch.manual_seed(0)
    return save_checkpoint(path, mlp(spec), model, spec, {"dataset": "digits"})


def finetune_study(study_file, ckpt: str, **space):
    return study_file(
        study={"sampler": "random", "n_trials": 3, "pruner": "none"},
        objective={"dataset": "digits", "classes": [5, 6, 7, 8, 9], "epochs": 1,
                   "checkpoint": ckpt},
        space={"init": "pretrained", "depth": 2, "width": 32, "activation": "relu",
               "lr": {"low": 1e-3, "high": 1e-2, "log": True}, "batch_size": 32,
               "freeze_layers": {"low": 0, "high": 2}, "head_lr_mult": [1.0, 10.0], **space},
    )


def test_pretrain_writes_a_weights_only_checkpoint(tmp_path):
    result = pretrain(SOURCE, {"width": 32, "lr": 0.01}, tmp_path / "src.pt")
    assert result.val_accuracy > 0.9, "digits 0-4 are easy"
    raw = torch.load(result.path, weights_only=True)
    assert raw["format"] == FORMAT and raw["model"] == "mlp" and raw["head"] == ["4.weight",
                                                                                "4.bias"]
    assert raw["source"]["classes"] == [0, 1, 2, 3, 4] and raw["source"]["params"]["lr"] == 0.01
    ckpt = read_checkpoint(result.path)
    assert ckpt.spec == SPEC and len(ckpt.sha256) == 64
    assert ckpt.describe() == "mlp, depth 2, width 32, relu, 64 features -> 5 classes"


@pytest.mark.parametrize(
    ("params", "output", "error", "match"),
    [({"lr": 1e6, "optimizer": "sgd"}, "src.pt", ConfigError,
      r"diverged in epoch 1 .*with lr = 1e\+06; lower lr"),
     ({}, "nodir/src.pt", CheckpointError, r"src.pt: folder .*nodir does not exist"),
     ({}, ".", CheckpointError, r"cannot write checkpoint .*: it is a folder")],
)
def test_bad_pretrain_input_is_a_tuner_error(tmp_path, params, output, error, match):
    with pytest.raises(error, match=match):
        pretrain(SOURCE, {"width": 32, **params}, tmp_path / output)


def test_an_unreadable_checkpoint_is_a_checkpoint_error(tmp_path, monkeypatch):
    path = write_ckpt(tmp_path / "c.pt")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*c.pt: Permission denied"):
        read_checkpoint(path)


def test_validating_a_pretrained_study_builds_its_model_once(study_file, tmp_path, monkeypatch):
    write_ckpt(tmp_path / "digits-0-4.pt")
    built: list[ModelSpec] = []
    monkeypatch.setitem(MODELS._items, "mlp", lambda spec: built.append(spec) or mlp(spec))
    config = load_config(finetune_study(study_file, "digits-0-4.pt"))
    assert built == []  # reading the file builds nothing
    config.bind()
    config.bind()  # once per process
    config.with_overrides(n_trials=3).bind()  # the same objective and space: bound already
    assert len(built) == 1


def test_load_pretrained_copies_the_body_and_starts_a_fresh_head(tmp_path):
    path = write_ckpt(tmp_path / "c.pt")
    ckpt = read_checkpoint(path)
    model = load_pretrained(mlp(ModelSpec(64, 3, None, 2, 32, "relu")), path, "relu")
    state = model.state_dict()
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert torch.equal(state[name], ckpt.state_dict[name])
    assert state["4.weight"].shape == (3, 32) and torch.all(state["4.bias"] == 0)
    bound = (6 / (32 + 3)) ** 0.5  # Xavier-uniform head
    assert state["4.weight"].abs().max() <= bound


def test_freezing_keeps_early_layers_and_the_head_learns_faster(tmp_path):
    path = write_ckpt(tmp_path / "c.pt")
    data = load_dataset("digits", seed=0, classes=[5, 6, 7, 8, 9])
    model = load_pretrained(mlp(SPEC), path, "relu")
    lr_scales = configure(model, freeze_layers=1, head_lr_mult=10.0)
    assert lr_scales == {"4.weight": 10.0, "4.bias": 10.0}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(lr=0.01, batch_size=32, epochs=1, optimizer="adam", lr_scales=lr_scales)
    groups = sorted((g["lr"], {id(p) for p in g["params"]})
                    for g in make_optimizer(model, cfg).param_groups)
    assert [lr for lr, _ in groups] == [0.01, pytest.approx(0.1)]
    assert groups[0][1] == {id(model[2].weight), id(model[2].bias)}, "frozen layer 1 left out"
    assert groups[1][1] == {id(model[4].weight), id(model[4].bias)}, "the head at 10x"
    train(model, data, cfg)
    after = model.state_dict()
    assert torch.equal(after["0.weight"], before["0.weight"]), "frozen"
    assert not torch.equal(after["2.weight"], before["2.weight"]), "fine-tuned"
    assert not torch.equal(after["4.weight"], before["4.weight"])


def test_a_pretrained_study_runs(study_file, sqlite_url, tmp_path):
    write_ckpt(tmp_path / "digits-0-4.pt")
    config = load_config(finetune_study(study_file, "digits-0-4.pt"))
    assert config.objective_settings["checkpoint"] == str(tmp_path / "digits-0-4.pt")
    trials = run(config, sqlite_url).study.trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["init_verdict"] == "healthy" for t in trials)
    assert {t.params["freeze_layers"] for t in trials} <= {0, 1, 2}


@pytest.mark.slow
def test_cli_pretrain_then_finetune(cli, study_file, tmp_path):
    r = cli("pretrain", "--classes", "0-4", "--epochs", "1", "-p", "width=32", "-o", "src.pt")
    assert r.returncode == 0, r.stderr
    assert re.search(r"wrote .*src\.pt: mlp, depth 2, width 32, relu, 64 features -> 5 classes",
                     r.stdout)
    r = cli("run", str(finetune_study(study_file, "src.pt")), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "3 trials this run (3 complete)" in r.stdout


def _garbage(p: Path) -> None:
    p.write_bytes(b"not a checkpoint at all\n")


def _truncated(p: Path) -> None:
    write_ckpt(p)
    p.write_bytes(p.read_bytes()[:600])


def _plain_state_dict(p: Path) -> None:
    torch.save(mlp(SPEC).state_dict(), p)


def _pickled_module(p: Path) -> None:
    torch.save(nn.Linear(2, 2), p)


def _newer(p: Path) -> None:
    write_ckpt(p)
    raw = torch.load(p, weights_only=True)
    torch.save({**raw, "version": 99}, p)


BAD_CHECKPOINTS = [
    (None, {}, r"checkpoint .*digits-0-4\.pt does not exist; make one with: tuner pretrain"),
    (_garbage, {}, r"cannot be loaded with torch\.load\(weights_only=True\) \(UnpicklingError\)"),
    (lambda p: p.write_bytes(b"hello\n"), {}, r"cannot be loaded .*\(KeyError\)"),  # was exit 1
    (_truncated, {}, r"cannot be loaded .*corrupt, truncated"),
    (_plain_state_dict, {}, r"is not a tuner checkpoint"),
    (_pickled_module, {}, r"holds pickled objects"),
    (_newer, {}, r"format version 99; this tuner reads version 1"),
    (lambda p: write_ckpt(p, ModelSpec(64, 5, None, 2, 48, "relu")), {},
     r"\[space\] width: init 'pretrained' needs width = 48 \(the checkpoint's, digits-0-4.pt\)"),
    (lambda p: write_ckpt(p, ModelSpec(4, 3, None, 2, 32, "relu")), {},
     r"layer '0\.weight' has shape \(32, 4\), the model needs \(32, 64\)"),
    (lambda p: write_ckpt(p, ModelSpec(64, 5, None, 2, 32, "tanh")), {},
     r"\[space\] activation: init 'pretrained' needs activation = 'tanh'"),
    (write_ckpt, {"freeze_layers": 3},
     r"freeze_layers reaches 3, but the model of digits-0-4.pt reuses 2"),
    (write_ckpt, {"depth": [1, 2]}, r"\[space\] depth: init 'pretrained' needs depth = 2"),
]


@pytest.mark.parametrize(("make", "space", "match"), BAD_CHECKPOINTS)
def test_bad_checkpoints_fail_when_the_study_is_bound(make, space, match, study_file, tmp_path):
    if make is not None:
        make(tmp_path / "digits-0-4.pt")
    config = load_config(finetune_study(study_file, "digits-0-4.pt", **space))  # reads no file
    with pytest.raises(TunerError, match=match):
        config.bind()


def test_a_stored_study_whose_checkpoint_is_elsewhere_says_where_it_must_be(study_file, tmp_path):
    write_ckpt(tmp_path / "digits-0-4.pt")
    raw = load_config(finetune_study(study_file, "digits-0-4.pt")).to_dict()
    (tmp_path / "digits-0-4.pt").unlink()  # resumed on a machine without it
    with pytest.raises(TunerError, match=r"digits-0-4\.pt does not exist; make one with: tuner "
                                         r"pretrain.*; a stored study reads its files at the abs"):
        config_from_dict(raw, "<stored study 'ft'>").bind()


def test_pretrained_without_a_checkpoint_setting(study_file):
    path = study_file(space={"init": ["pretrained", "xavier_uniform"]})
    with pytest.raises(TunerError, match=r"init 'pretrained' needs \[objective\] checkpoint"):
        load_config(path)


@pytest.mark.parametrize("make", [None, _plain_state_dict])  # the library table has the rest
def test_cli_bad_checkpoint_is_one_error_line(make, cli, study_file, tmp_path):
    if make is not None:
        make(tmp_path / "digits-0-4.pt")
    r = cli("run", str(finetune_study(study_file, "digits-0-4.pt")))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "digits-0-4.pt" in lines[0]


def test_checkpoint_error_inside_a_library_call(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="was trained with activation 'relu'"):
        load_pretrained(mlp(ModelSpec(64, 5, None, 2, 32, "tanh")), write_ckpt(tmp_path / "c.pt"),
                        "tanh")


@pytest.mark.parametrize(("args", "match"), [
    (["--epochs", "1", "--set", "epochs=3"], r"--set epochs=…: give epochs with --epochs instead"),
    (["--set", "dataset=iris"], r"give dataset with --dataset"),
    (["-p", "lr=nan"], r"\[space\] lr: values must be finite numbers, got nan"),
])
def test_cli_pretrain_bad_input(args, match, capsys, tmp_path):
    from tuner.cli import main

    assert main(["pretrain", "-o", str(tmp_path / "p.pt"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(match, lines[0]), lines
    assert not (tmp_path / "p.pt").exists()
