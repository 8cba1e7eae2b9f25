"""store.sqlite_delete: deleting a study from a plain SQLite file without Optuna leaves the file
exactly as ``optuna.delete_study`` leaves it, names the same pictures, refuses a missing study
with the same words, and steps aside (``None``) wherever it is not sure. Real SQLite files."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from tuner.core.errors import StudyNotFoundError
from tuner.store import artifacts
from tuner.store.sqlite_delete import count_trials, delete_study
from tuner.store.storage import open_storage

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _tables(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr)
                for n in names}


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """Three studies in one file; each trial of 'pics' has a picture in tuner-artifacts/."""
    db = tmp_path / "tuner.db"
    storage = open_storage(f"sqlite:///{db}")
    store = FileSystemArtifactStore(str(artifacts.artifact_dir(f"sqlite:///{db}")))
    (tmp_path / "tuner-artifacts").mkdir()
    picture = tmp_path / "curve.svg"
    picture.write_text("<svg/>")
    for name in ("keep", "pics", "other"):
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        study.set_user_attr("note", name)
        for i in range(3):
            trial = study.ask()
            trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            trial.set_user_attr("curve", [i])
            trial.report(0.1 * i, 1)
            if name == "pics":
                upload_artifact(study_or_trial=trial, file_path=str(picture),
                                artifact_store=store)
            study.tell(trial, 0.1 * i)
        study.enqueue_trial({"lr": 0.01})
    storage.engine.dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the copies below hold everything
    return db


def test_the_file_left_is_the_one_optuna_leaves(stored: Path, tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine.db", tmp_path / "theirs.db"
    shutil.copy(stored, mine)
    shutil.copy(stored, theirs)
    expected = artifacts.study_artifact_ids(
        optuna.load_study(study_name="pics", storage=f"sqlite:///{theirs}"))
    assert len(expected) == 3
    assert count_trials(f"sqlite:///{mine}", "pics") == 4  # 3 finished, 1 queued
    assert sorted(delete_study(f"sqlite:///{mine}", "pics")) == sorted(expected)
    optuna.delete_study(study_name="pics", storage=f"sqlite:///{theirs}")
    after = _tables(mine)
    assert after == _tables(theirs)
    assert after["studies"] != _tables(stored)["studies"]  # something was deleted
    assert sorted(optuna.get_all_study_names(f"sqlite:///{mine}")) == ["keep", "other"]


def test_a_missing_study_is_refused_as_optuna_does_and_nothing_changes(stored: Path) -> None:
    before = _tables(stored)
    url = f"sqlite:///{stored}"
    for call in (count_trials, delete_study):
        with pytest.raises(StudyNotFoundError, match="no study named 'nope' in this storage; "
                           "stored studies: keep, other, pics"):
            call(url, "nope")
    assert _tables(stored) == before


def test_it_steps_aside_where_it_is_not_sure(stored: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{stored}"
    assert delete_study(url + "?timeout=5", "pics") is None
    assert count_trials(f"sqlite:///{tmp_path / 'missing.db'}", "pics") is None
    with sqlite3.connect(stored) as conn:
        conn.execute("CREATE TABLE mine (x INTEGER)")  # a table Optuna's schema lacks
    before = _tables(stored)
    assert count_trials(url, "pics") is None and delete_study(url, "pics") is None
    assert _tables(stored) == before


def test_tuner_delete_removes_the_rows_and_the_pictures(stored: Path) -> None:
    folder = stored.parent / "tuner-artifacts"
    assert len(list(folder.iterdir())) == 3
    r = subprocess.run([sys.executable, "-m", "tuner", "delete", "pics", "--yes", "--storage",
                        f"sqlite:///{stored}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"deleted study 'pics' (4 trials) and 3 trial pictures from {folder}" in r.stdout
    assert list(folder.iterdir()) == []
    assert sorted(optuna.get_all_study_names(f"sqlite:///{stored}")) == ["keep", "other"]
