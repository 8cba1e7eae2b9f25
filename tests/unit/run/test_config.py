"""Study files: every kind of bad input is one clear ConfigError naming file, key and value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY, merged, to_toml
from tuner.core.errors import ConfigError, TunerError
from tuner.run.config import config_from_dict, config_on_device, load_config
from tuner.run.study import run

BAD = [
    # (tables to update in the tiny study, expected message)
    ({"study": {"sampler": "bayes"}}, r"unknown sampler 'bayes'; valid: cmaes, gp, grid, nsga2, qmc, random, tpe"),
    ({"study": {"pruner": "median", "sampler": "tpe"}, "pruner": {"warmup": 1}}, r"\[pruner\]: unknown option\(s\) warmup; did you mean 'n_warmup_steps'\?; valid:"),
    ({"study": {"pruner": "early"}}, r"unknown pruner 'early'; valid: .*median"),
    ({"space": {"init": ["zeros", "he_normal"]}}, r"\[space\] init: unknown init scheme 'he_normal'"),
    ({"space": {"activation": "swish"}}, r"\[space\] activation: unknown activation 'swish'"),
    ({"space": {"optimizer": ["sgd", "lbfgs"]}}, r"unknown optimizer 'lbfgs'"),
    ({"objective": {"dataset": "mnist"}}, r"unknown dataset 'mnist'; valid: breast_cancer"),
    ({"objective": {"model": "resnet"}}, r"unknown model 'resnet'; valid: cnn, mlp"),
    ({"objective": {"name": "predictor"}}, r"unknown objective 'predictor'; valid: classifier, regressor"),
    ({"objective": {"name": "no_such_module_xyz:fn"}}, r"cannot import module 'no_such_module_xyz'"),
    ({"objective": {"name": "json:no_such_fn"}}, r"module 'json' has no attribute 'no_such_fn'"),
    ({"space": {"lr": {"low": -0.1, "high": 0.1, "log": False}}}, r"\[space\] lr: must be > 0"),
    ({"space": {"lr": {"low": 0.1, "high": 0.01}}}, r"`low <= high` must hold, but got \(low=0.1, high=0.01\)"),
    ({"space": {"lr": 0}}, r"\[space\] lr: must be > 0, got 0"),
    ({"space": {"batch_size": {"low": 12, "high": 32}}}, r"\[space\] batch_size: bounds must be powers of two, got 12"),
    ({"space": {"batch_size": {"low": 16, "high": 256}}}, r"batch_size: 256 is larger than the training set \(112 rows of 'iris'\)"),
    ({"study": {"n_trials": 0}}, r"\[study\] n_trials must be a whole number >= 1, got 0"),
    ({"study": {"n_trials": -3}}, r"n_trials must be a whole number >= 1, got -3"),
    ({"study": {"n_trials": 2.5}}, r"n_trials must be a whole number >= 1, got 2.5"),
    ({"study": {"timeout": -1}}, r"\[study\] timeout must be a positive number"),
    ({"study": {"seed": "x"}}, r"\[study\] seed must be a whole number"),
    ({"study": {"seed": 2**63 - 1}}, r"\[study\] seed must be a whole number from 0 to 2\*\*32 - 1"),
    ({"study": {"timeout": float("nan")}}, r"\[study\] timeout must be a positive number of seconds, got nan"),
    ({"space": {"lr": float("inf")}}, r"\[space\] lr: values must be finite numbers, got inf"),
    ({"space": {"weight_decay": float("nan")}}, r"\[space\] weight_decay: values must be finite"),
    ({"space": {"init": {"low": 1, "high": 2}}}, r"\[space\] init: a range does not apply to init"),
    ({"study": {"sampler": "tpe"}, "sampler": {"n_startup_trials": "x"}}, r"\[sampler\]: n_startup_trials must be a whole number >= 0, got 'x'"),
    ({"study": {"sampler": "tpe"}, "sampler": {"n_ei_candidates": 0}}, r"n_ei_candidates must be a whole number >= 1, got 0"),
    ({"study": {"sampler": "gp"}, "sampler": {"n_startup_trials": -1}}, r"n_startup_trials must be a whole number >= 0, got -1"),
    ({"study": {"sampler": "tpe"}, "sampler": {"multivariate": "yes"}}, r"multivariate must be true or false, got 'yes'"),
    ({"study": {"sampler": "cmaes"}, "sampler": {"sigma0": -1}}, r"sigma0 must be a number > 0, got -1"),
    ({"study": {"sampler": "tpe"}, "sampler": {"gamma": 0}}, r"gamma must be a number > 0, got 0"),
    ({"study": {"sampler": "tpe"}, "sampler": {"gamma": 1.5}}, r"gamma is the share of trials modelled as good, in \(0, 1\]; got 1.5"),
    ({"study": {"sampler": "gp"}, "sampler": {"gamma": 0.25}}, r"unknown option\(s\) gamma; valid: deterministic_objective"),
    ({"study": {"sampler": "qmc"}, "sampler": {"qmc_type": "lattice"}}, r"qmc_type must be one of sobol, halton"),
    ({"study": {"direction": "up"}}, r"direction must be 'maximize' or 'minimize', got 'up'"),
    ({"study": {"direction": "minimize"}}, r"direction 'minimize' contradicts metric 'val_accuracy'"),
    ({"study": {"metric": "f1"}}, r"metric 'f1' is not one objective 'classifier' returns"),
    ({"study": {"name": "has space"}}, r"\[study\] name must be"),
    ({"study": {"n_trail": 5}}, r"\[study\] unknown key\(s\) n_trail; did you mean 'n_trials'\?; valid: name, direction"),
    ({"objective": {"epoch": 3}}, r"\[objective\] unknown key\(s\) epoch for dataset 'iris'; did you mean 'epochs'\?; valid: .*epochs"),
    ({"objective": {"epochs": 0}}, r"\[objective\] epochs must be a whole number >= 1, got 0"),
    ({"objective": {"val_fraction": 1.5}}, r"val_fraction must be in \(0, 1\), got 1.5"),
    ({"objective": {"device": "tpu"}}, r"device: must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ({"objective": {"dataset": "csv"}}, r"dataset 'csv' needs path"),
    ({"objective": {"dataset": "csv", "path": "missing.csv"}}, r"dataset file .*missing.csv does not exist"),
    ({"objective": {"model": "cnn"}}, r"model 'cnn' needs image data; 'iris' is tabular"),
    ({"space": {"learning_rate": 0.1}}, r"\[space\] unknown parameter 'learning_rate'; valid: lr, batch_size"),
    ({"space": {"lr": {"low": 1e-3, "high": 0.1, "scale": "log"}}}, r"\[space\] lr: unknown key\(s\) scale"),
    ({"study": {"sampler": "tpe"}, "sampler": {"n_startup": 3}}, r"\[sampler\]: unknown option\(s\) n_startup; did you mean 'n_startup_trials'\?; valid: .*n_startup_trials"),
    ({"sampler": {"n_startup_trials": 3}}, r"\[sampler\]: unknown option\(s\) n_startup_trials; valid: none"),
    ({"pruner": {"warmup": 3}}, r"\[pruner\]: unknown option\(s\) warmup"),
    ({"study": {"pruner": "median"}, "pruner": {"n_warmup_steps": -1}}, r"\[pruner\]: .*n_warmup_steps"),
    ({"study": {"sampler": "grid"}}, r"grid sampler needs a finite set of values, but \[space\] lr is a continuous range"),
    ({"extra": {"a": 1}}, r"unknown table\(s\) \[extra\]; valid: \[study\]"),
    ({"space": {"lr": 0.01, "batch_size": 16, "init": "zeros"}}, r"\[space\] searches nothing"),
    ({"space": {"lr": {"low": 1e-4, "high": 1e308, "log": True}}}, r"\[space\] lr: must be <= 3\.40282e\+38 \(the largest float32.*got 1e\+308"),
    ({"space": {"init": ["xavier"]}}, r"unknown init scheme 'xavier'; did you mean 'xavier_\w+'\?; valid:"),
]


@pytest.mark.parametrize(("updates", "match"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_study_file(tmp_path: Path, updates, match):
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(merged(TINY, **updates)))
    with pytest.raises(TunerError, match=match) as e:
        load_config(path).bind()  # reading the file, or binding it for a run (the data)
    assert "\n" not in str(e.value)
    assert str(path) in str(e.value), "the message names the file"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[study\nname = 'x'", r"invalid TOML"),
        ("[study]\nname = 'x'\n", r"missing table \[objective\]"),
        ("study = 3\n[objective]\nname='classifier'\n[space]\nlr=0.1", r"\[study\] must be a table"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, match: str):
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_study_file(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"study file .*nope.toml does not exist"):
        load_config(tmp_path / "nope.toml")


def test_a_folder_or_a_device_is_no_study_file(tmp_path: Path):
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match=r"study file .*dir.toml is a folder; give a .toml file"):
        load_config(tmp_path / "dir.toml")
    with pytest.raises(ConfigError, match=r"study file /dev/null is not a regular file"):
        load_config("/dev/null")


def test_a_study_file_saved_with_a_byte_order_mark_loads(tmp_path: Path):
    path = tmp_path / "bom.toml"
    path.write_text("\ufeff" + to_toml(TINY), encoding="utf-8")  # Windows editors do this
    assert load_config(path).name == "tiny"


def test_a_stored_study_whose_data_file_is_elsewhere_says_where_it_must_be(tmp_path: Path):
    # resume/worker on another machine: the stored config names the creator's absolute path
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    raw = merged(TINY, objective={"dataset": "csv", "path": str(csv), "target": "label"},
                 space={"batch_size": 8})
    config_from_dict(raw, "<stored study 'tiny'>")  # there: fine
    csv.unlink()
    with pytest.raises(ConfigError, match=rf"dataset file {csv} does not exist; a stored study "
                                          r"reads its files at the absolute paths it was created"):
        config_from_dict(raw, "<stored study 'tiny'>")
    with pytest.raises(ConfigError, match=r"data.csv does not exist$"):  # a study file: no hint
        config_from_dict(raw, str(tmp_path / "study.toml"))


def test_defaults_and_overrides(study_file):
    config = load_config(study_file(study={"name": None, "sampler": None}), seed=7, n_trials=4)
    assert config.name == "study"  # the file's stem
    assert config.sampler == "tpe"
    assert (config.seed, config.n_trials) == (7, 4)
    assert config.direction == "maximize" and config.metric == "val_accuracy"
    assert config.objective_settings["epochs"] == 2
    assert config.objective_settings["val_fraction"] == 0.25
    # every classifier parameter is present, searched or fixed
    assert set(config.space.names()) >= {"lr", "batch_size", "init", "optimizer", "momentum"}


def test_a_sampler_flag_keeps_only_the_file_options_its_sampler_takes(study_file, caplog):
    path = study_file(study={"sampler": "tpe"},
                      sampler={"n_ei_candidates": 96, "n_startup_trials": 5})
    assert load_config(path).sampler_options == {"n_ei_candidates": 96, "n_startup_trials": 5}
    gp = load_config(path, sampler="gp")  # the quickstart's tpe options once stopped this
    assert (gp.sampler, gp.sampler_options) == ("gp", {"n_startup_trials": 5})
    assert "n_ei_candidates left out: --sampler gp does not take it" in caplog.text
    load_config(path, sampler="random")
    assert "n_ei_candidates, n_startup_trials left out: --sampler random does not take them" \
        in caplog.text
    assert load_config(path, sampler="tpe").sampler_options["n_ei_candidates"] == 96
    with pytest.raises(ConfigError, match="unknown option"):  # the file's own sampler: checked
        load_config(study_file(study={"sampler": "gp"}, sampler={"n_ei_candidates": 96}))


def test_val_loss_metric_is_minimised(study_file):
    config = load_config(study_file(study={"metric": "val_loss"}))
    assert config.direction == "minimize"


def test_config_round_trips_through_its_dict(study_file):
    config = load_config(study_file())
    again = config_from_dict(config.to_dict(), "<stored>")
    assert again.to_dict() == config.to_dict()
    assert again.fingerprint() == config.fingerprint()
    changed = config.with_overrides(n_trials=50, sampler="random")
    assert changed.fingerprint() == config.fingerprint(), "budget and sampler may change"


def test_csv_path_is_resolved_against_the_study_file(tmp_path: Path):
    (tmp_path / "data").mkdir()
    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{'yes' if i % 2 else 'no'}" for i in range(60)]
    (tmp_path / "data" / "d.csv").write_text("\n".join(rows) + "\n")
    path = tmp_path / "s.toml"
    path.write_text(to_toml(merged(TINY, objective={"dataset": "csv", "path": "data/d.csv",
                                                    "target": "label"},
                                   space={"batch_size": 16})))
    config = load_config(path)
    assert config.objective_settings["path"] == str(tmp_path / "data" / "d.csv")


def test_every_shipped_study_file_loads_without_a_warning(cli, tmp_path: Path, caplog):
    import logging
    import shutil

    from tuner.core import errors

    shipped = sorted((Path(__file__).parents[3] / "studies").glob("*.toml"))
    assert {p.stem for p in shipped} >= {"quickstart", "init-schemes", "weight-decay", "finetune"}
    for p in shipped:
        shutil.copy(p, tmp_path)
    # finetune.toml's checkpoint, made as its header says
    made = cli("pretrain", "--dataset", "digits", "--classes", "0-4", "-o", "digits-0-4.pt")
    assert made.returncode == 0, made.stderr
    errors._said.clear()
    with caplog.at_level(logging.WARNING, logger="tuner"):
        configs = {p.stem: load_config(tmp_path / p.name) for p in shipped}
    assert caplog.text == ""  # e.g. gp with a pruner that starves it
    assert configs["quickstart"].n_trials * configs["quickstart"].objective_settings["epochs"] \
        <= 400  # "under a minute on 2 CPU cores" (measured: BENCHMARKS.md)
    assert configs["init-schemes"].space["depth"].values() == [8]  # deep: the init matters
    assert "weight_decay" in configs["weight-decay"].space


@pytest.mark.parametrize(("space", "objective", "said"), [
    ({"momentum": 0.5, "optimizer": "adam"}, {},
     r"\[space\] momentum has no effect: optimizer adam does not use it"),
    ({"momentum": 0.5, "optimizer": ["adam", "adamw"]}, {}, r"momentum has no effect"),
    ({"freeze_layers": [0, 1], "head_lr_mult": 10.0}, {},
     r"\[space\] freeze_layers, head_lr_mult has no effect: no \[space\] init is 'pretrained'"),
    ({}, {"checkpoint": "some.pt"}, r"\[objective\] checkpoint is not used"),
    ({"momentum": 0.5, "optimizer": ["adam", "sgd"]}, {}, None),  # sgd trials use it
    ({"optimizer": "adam"}, {}, None),  # momentum's default is no mistake
])
def test_settings_that_cannot_change_a_trial_are_said(study_file, caplog, space, objective, said):
    import logging

    from tuner.core import errors

    errors._said.clear()
    with caplog.at_level(logging.WARNING, logger="tuner"):
        path = study_file(space=space, objective=objective)
        load_config(path)
        load_config(path)  # validated again (as run/resume do): said once
    warnings = [r.getMessage() for r in caplog.records]
    if said is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(f"{path}: ")
        assert re.search(said, warnings[0]), warnings[0]


PHASES = """
import sys
from tuner.run.config import load_config
config = load_config(sys.argv[1])
print("read:", "sklearn" in sys.modules, config.bound)
bound = config.bind()
print("bound:", "sklearn" in sys.modules, bound.bound, bound.bind() is bound)
"""


def test_reading_a_study_file_loads_no_data_binding_it_does(tmp_path: Path) -> None:
    """The two phases: reading a file is static (no dataset, so no sklearn); binding loads the
    data, once (a bound config binds to itself)."""
    (tmp_path / "s.toml").write_text(to_toml(TINY))
    r = subprocess.run([sys.executable, "-c", PHASES, str(tmp_path / "s.toml")],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "TUNER_CACHE_DIR": "off"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["read: False False", "bound: True True True"]


def test_a_study_that_fails_to_bind_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(to_toml(merged(TINY, space={"batch_size": {"low": 16, "high": 256}})))
    config = load_config(path)  # static: fine
    with pytest.raises(ConfigError, match=r"batch_size: 256 is larger than the training set"):
        run(config, f"sqlite:///{tmp_path / 'tuner.db'}")
    assert not (tmp_path / "tuner.db").exists()


def test_a_bound_config_moved_to_another_device_is_bound_again_from_the_file(tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(to_toml(TINY))
    bound = load_config(path).bind()
    assert bound.bound and bound.static_space is not None
    moved = config_on_device(bound, "cpu")
    assert not moved.bound and moved.objective_settings["device"] == "cpu"
    assert moved.space is bound.static_space  # not the space fitted to the first device
    assert moved.bind().bound
