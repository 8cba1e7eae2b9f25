"""A study stored by tuner before the layered package (commit c8e71b2) still works after it.

``fixtures/stored-before-layers.db`` was written by that commit's ``tuner run`` (iris, 3
complete trials, tpe + median). Stored keys are a file format (tuner/core/keys.py): if one is
renamed, these tests fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from conftest import run_tuner
from optuna.trial import TrialState

FIXTURE = Path(__file__).parent / "fixtures" / "stored-before-layers.db"
NAME = "stored-before-layers"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE, tmp_path / "tuner.db")  # the default storage of a command in tmp_path
    return tmp_path


def test_show_reads_the_old_study(folder: Path) -> None:
    r = run_tuner("show", NAME, "--json", cwd=folder)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["states"] == {"COMPLETE": 3} and shown["metric"] == "val_accuracy"
    assert shown["created_by_tuner"] and shown["budget"] == 3
    assert {t["params"]["batch_size"] for t in shown["top"]} <= {16, 32}


@pytest.mark.slow
def test_the_old_study_resumes_with_its_stored_file(folder: Path) -> None:
    r = run_tuner("resume", NAME, "--n-trials", "2", "--quiet", cwd=folder)
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name=NAME, storage=f"sqlite:///{folder / 'tuner.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 5 and all(s in (TrialState.COMPLETE, TrialState.PRUNED)
                                    for s in states)
    assert study.user_attrs["tuner:config"]["study"]["n_trials"] == 5
    r = run_tuner("report", NAME, "-o", "r.html", cwd=folder)
    assert r.returncode == 0, r.stderr
    assert "Optimisation history" in (folder / "r.html").read_text()
