"""Per-trial pictures: where they go, what they show, and that they never break a trial."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
import pytest
import torch

from tests.conftest import TINY, merged, run_tuner, to_toml
from tuner.core.errors import ConfigError
from tuner.nn.pictures import activations_svg, learning_curve_svg, nice_ticks
from tuner.objectives import ObjectiveContext
from tuner.run.config import load_config
from tuner.store.artifacts import (
    INIT_ACTIVATIONS,
    LEARNING_CURVE,
    artifact_dir,
    open_store,
    read_artifact,
    storage_url,
    trial_artifacts,
)
from tuner.store.storage import open_storage

# Grid over the init scheme only: exactly one zeros and one kaiming_normal trial.
INIT_GRID = merged(TINY, study={"sampler": "grid", "n_trials": 2},
                   space={"lr": 0.05, "batch_size": 16, "init": ["zeros", "kaiming_normal"]})


def _texts(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)  # also proves the picture is well-formed XML
    return ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    (folder / "study.toml").write_text(to_toml(INIT_GRID))
    proc = run_tuner("run", "study.toml", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder


@pytest.mark.slow
def test_every_trial_stores_both_pictures_beside_the_default_storage(grid_run):
    study = optuna.load_study(study_name="tiny", storage=open_storage(
        f"sqlite:///{grid_run / 'tuner.db'}"))
    store = open_store(grid_run / "tuner-artifacts", create=False)
    n_files = 0
    for trial in study.trials:
        ids = trial_artifacts(study, trial)
        n_files += len(ids)
        if trial.user_attrs.get("curve", {}).get("train_loss"):
            assert set(ids) == {INIT_ACTIVATIONS, LEARNING_CURVE}
            curve = _texts(read_artifact(store, ids[LEARNING_CURVE]))
            assert f"trial {trial.number}: learning curve" in curve
            assert "validation accuracy per epoch" in curve and "train_loss" in curve
        else:  # pruned before its first epoch (a dead init): nothing to draw but the init
            assert set(ids) == {INIT_ACTIVATIONS}
        init = _texts(read_artifact(store, ids[INIT_ACTIVATIONS]))
        assert "layer 1" in init and "std per layer (log)" in init
        assert f"init {trial.params['init']} · activation relu" in init
    assert len(list((grid_run / "tuner-artifacts").iterdir())) == n_files >= 3


@pytest.mark.slow
def test_the_init_picture_of_an_all_zero_network_is_all_zero(grid_run):
    study = optuna.load_study(study_name="tiny", storage=open_storage(
        f"sqlite:///{grid_run / 'tuner.db'}"))
    store = open_store(grid_run / "tuner-artifacts", create=False)
    by_init = {t.params["init"]: t for t in study.trials}
    zeros = _texts(read_artifact(store, trial_artifacts(study, by_init["zeros"])[
        INIT_ACTIVATIONS]))
    assert "mean 0 · std 0" in zeros
    kaiming = _texts(read_artifact(store, trial_artifacts(study, by_init["kaiming_normal"])[
        INIT_ACTIVATIONS]))
    assert not any(t.endswith("std 0") for t in kaiming if t.startswith("mean"))


def test_pictures_show_the_network_as_captured_not_as_trained(tmp_path):
    # All-zero weights make every hidden activation exactly 0; "training" after the capture
    # (here: new random weights) must not change the saved picture.
    config = load_config(_write(tmp_path, INIT_GRID))
    ctx = ObjectiveContext(settings=config.objective_settings, space=config.space)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'p.db'}")
    trial = study.ask()
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    ctx.settings["prune_dead_inits"] = False
    ctx.check_init(trial, model, torch.randn(32, 4))
    for p in model.parameters():
        torch.nn.init.normal_(p)
    ctx.report(trial, 1, 0.3, train_loss=1.0, val_loss=1.0, val_accuracy=0.3)
    ctx.finish_trial(trial)
    store = open_store(tmp_path / "p-artifacts", create=False)
    ids = trial_artifacts(study, study.trials[0])
    assert "mean 0 · std 0" in _texts(read_artifact(store, ids[INIT_ACTIVATIONS]))


def _write(folder: Path, config: dict) -> Path:
    path = folder / "study.toml"
    path.write_text(to_toml(config))
    return path


@pytest.mark.slow
def test_artifacts_false_stores_no_pictures(tmp_path):
    (tmp_path / "study.toml").write_text(to_toml(merged(
        INIT_GRID, study={"n_trials": 1}, objective={"artifacts": False})))
    proc = run_tuner("run", "study.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "tuner-artifacts").exists()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    assert trial_artifacts(study, study.trials[0]) == {}


@pytest.mark.slow
def test_an_unusable_artifact_folder_warns_once_and_the_trials_still_run(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "study.toml").write_text(to_toml(INIT_GRID))
    proc = run_tuner("run", "study.toml", cwd=tmp_path,
                  env={"TUNER_ARTIFACT_DIR": str(tmp_path / "a-file" / "pictures")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("will not save pictures") == 1, proc.stderr
    assert "2 trials this run" in proc.stdout


@pytest.mark.parametrize("value", ["yes", 1, [True]])
def test_artifacts_setting_must_be_true_or_false(tmp_path, value):
    path = tmp_path / "study.toml"
    path.write_text(to_toml(merged(TINY, objective={"artifacts": value})))
    with pytest.raises(ConfigError, match=r"\[objective\] artifacts must be true or false"):
        load_config(path)


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///{tmp}/runs/a.db", "{tmp}/runs/a-artifacts"),
    ("journal:{tmp}/j.log", "{tmp}/j-artifacts"),
    ("postgresql://u@db.example/t", "{cwd}/tuner-artifacts"),
    ("sqlite://", None),
])
def test_artifact_dir_sits_beside_the_storage(tmp_path, monkeypatch, url, expected):
    monkeypatch.delenv("TUNER_ARTIFACT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    fill = {"tmp": tmp_path, "cwd": tmp_path}
    got = artifact_dir(url.format(**fill))
    assert got == (Path(expected.format(**fill)).resolve() if expected else None)


def test_artifact_dir_explicit_beats_environment_beats_default(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("TUNER_ARTIFACT_DIR", str(tmp_path / "env"))
    assert artifact_dir(url) == tmp_path / "env"
    assert artifact_dir(url, tmp_path / "flag") == tmp_path / "flag"
    assert artifact_dir(None) == tmp_path / "env"


def test_storage_url_of_opened_storages(tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'a.db'}"
    study = optuna.create_study(storage=open_storage(sqlite))
    assert artifact_dir(storage_url(study._storage)) == tmp_path / "a-artifacts"
    journal = f"journal:{tmp_path / 'j.log'}"
    study = optuna.create_study(storage=open_storage(journal))
    assert storage_url(study._storage) == journal
    assert storage_url(optuna.create_study()._storage) is None


@pytest.mark.parametrize("lo, hi, expected", [
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (1, 5, [1, 2, 3, 4, 5]),
    (0, 0.98, [0, 0.5]),
    (2, 2, [2]),
])
def test_nice_ticks(lo, hi, expected):
    assert nice_ticks(lo, hi, 6 if hi == 1 else 5) == pytest.approx(expected)


@pytest.mark.parametrize("curve, expected", [
    ({}, "no epoch finished"),
    ({"train_loss": [1.0], "val_loss": [0.9], "val_accuracy": [0.5]}, "loss per epoch"),
    ({"train_loss": [1.0, math.nan], "val_loss": [0.9, math.inf],
      "val_accuracy": [0.5, 0.1]}, "validation accuracy per epoch"),
])
def test_learning_curve_svg_handles_empty_single_and_diverged_curves(curve, expected):
    assert expected in _texts(learning_curve_svg(curve, "t", "s").encode())


def test_activations_svg_without_hidden_layers():
    texts = _texts(activations_svg([], "t").encode())
    assert "the network has no hidden activations" in texts
