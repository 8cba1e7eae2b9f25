"""store.snapshot: stored studies read from a plain SQLite file without Optuna give the same
summaries as the same studies read through Optuna; anything the reader does not know makes it
step aside (``None``) rather than guess. Real SQLite files written by Optuna and tuner."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from sqlalchemy.engine import make_url

from tuner.core.errors import ConfigError, StudyNotFoundError
from tuner.core.keys import CONFIG_ATTR, FAIL_REASON
from tuner.store.sqlite_reader import read_sqlite
from tuner.store.storage import open_storage
from tuner.store.studies import snapshots
from tuner.store.urls import plain_sqlite_path
from tuner.views.summaries import export_trials, list_studies, study_summary

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # ask/tell
SCHEMES = ["zeros", "xavier_uniform", "orthogonal"]


def _suggest(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    exponent = trial.suggest_int("batch_size_log2", 4, 8)
    trial.set_user_attr("batch_size", 2 ** exponent)
    trial.suggest_categorical("init", SCHEMES)
    trial.suggest_int("width", 32, 256, step=32)


@pytest.fixture
def stored(tmp_path: Path) -> tuple[str, Any]:
    """A storage with a tuner-like study holding a trial of every state, a minimising study with
    no trials and another Optuna user's multi-objective study."""
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    storage = open_storage(url)
    study = optuna.create_study(study_name="mixed", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr(CONFIG_ATTR, {"study": {"metric": "val_accuracy", "sampler": "random",
                                                "pruner": "median", "n_trials": 9},
                                      "objective": {"name": "classifier"}})
    for i, (state, value) in enumerate([("COMPLETE", 0.91), ("PRUNED", None), ("FAIL", None),
                                        ("COMPLETE", math.inf), ("COMPLETE", 0.95),
                                        ("RUNNING", None)]):
        trial = study.ask()
        _suggest(trial)
        trial.set_user_attr("curve", {"val_accuracy": [0.1 * i, 0.2 * i]})
        for step in range(i + 1):
            trial.report(0.1 * step, step)
        if state == "RUNNING":
            storage.record_heartbeat(trial._trial_id)
            continue
        if state == "FAIL":
            trial.set_user_attr(FAIL_REASON, "RuntimeError: boom")
        study.tell(trial, value, state=getattr(optuna.trial.TrialState, state))
    study.enqueue_trial({"lr": 0.01})  # WAITING
    optuna.create_study(study_name="empty", storage=storage, direction="minimize")
    multi = optuna.create_study(study_name="pareto", storage=storage,
                                directions=["maximize", "minimize"])
    multi.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    return url, storage


def _timeless(summary: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[float, ...]]]:
    """``summary`` without its running trials' ages (they grow between two reads), and the
    ages apart."""
    ages = [(r.pop("heartbeat_age_s") or 0.0, r.pop("started_s_ago") or 0.0)
            for r in summary["running"]]
    return summary, ages


def test_both_readers_give_the_same_summaries(stored: tuple[str, Any]) -> None:
    url, _ = stored
    # what another process sees: the running trial's buffered attributes are not stored yet
    storage = open_storage(url, must_exist=True)
    for name in ("mixed", "empty"):
        [fast], [slow] = read_sqlite(url, name), snapshots(storage, name)
        (a, ages_a), (b, ages_b) = _timeless(study_summary(fast, top=10)), \
            _timeless(study_summary(slow, top=10))
        assert a == b
        assert all(abs(x - y) < 2 for pa, pb in zip(ages_a, ages_b, strict=True)
                   for x, y in zip(pa, pb, strict=True))
        assert export_trials(fast, "csv") == export_trials(slow, "csv")
        assert export_trials(fast, "json") == export_trials(slow, "json")
    assert list_studies(read_sqlite(url, details=False)) == list_studies(snapshots(storage))


def test_what_the_fast_reader_found_is_the_stored_study(stored: tuple[str, Any]) -> None:
    url, _ = stored
    [mixed] = read_sqlite(url, "mixed")
    summary = study_summary(mixed, top=10)
    assert summary["states"] == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1, "RUNNING": 1,
                                 "WAITING": 1}
    assert summary["best"]["value"] is None  # inf: no finite number to show
    assert summary["best"]["number"] == 3
    assert [t["number"] for t in summary["top"]] == [3, 4, 0]
    assert summary["failed"] == [{"number": 2, "reason": "RuntimeError: boom"}]
    [running] = summary["running"]
    assert running["number"] == 5 and not running["stale"] and running["heartbeat_age_s"] < 60
    best = summary["top"][1]
    assert set(best["params"]) == {"lr", "batch_size", "init", "width"}  # the real name
    assert best["params"]["batch_size"] == best["user_attrs"]["batch_size"]
    assert best["params"]["init"] in SCHEMES and best["params"]["width"] % 32 == 0
    assert best["last_step"] == 4 and best["user_attrs"]["curve"]["val_accuracy"][1] == 0.8
    assert summary["metric"] == "val_accuracy" and summary["budget"] == 9


def test_missing_and_multi_objective_studies_are_refused_with_optunas_words(
        stored: tuple[str, Any]) -> None:
    url, storage = stored
    for read in (lambda n: read_sqlite(url, n), lambda n: snapshots(storage, n)):
        with pytest.raises(StudyNotFoundError,
                           match="no study named 'nope'; stored studies: empty, mixed, pareto"
                           .replace("'; ", "' in this storage; ")):
            read("nope")
        with pytest.raises(ConfigError, match="'pareto' has 2 objectives"):
            read("pareto")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # Optuna's word on the legacy names
def test_legacy_distributions_read_as_optuna_reads_them(stored: tuple[str, Any]) -> None:
    url, _ = stored
    legacy = {"lr": {"name": "LogUniformDistribution",
                     "attributes": {"low": 0.0001, "high": 0.1}},
              "batch_size_log2": {"name": "IntUniformDistribution",
                                  "attributes": {"low": 4, "high": 8, "step": 1}},
              "width": {"name": "DiscreteUniformDistribution",
                        "attributes": {"low": 32.0, "high": 256.0, "q": 32.0}}}
    db = make_url(url).database
    with sqlite3.connect(db) as conn:
        for param, dist in legacy.items():
            conn.execute("UPDATE trial_params SET distribution_json = ? WHERE param_name = ?",
                         (json.dumps(dist), param))
    fresh = open_storage(url, must_exist=True)  # Optuna caches what it read before
    [fast], [slow] = read_sqlite(url, "mixed"), snapshots(fresh, "mixed")
    assert export_trials(fast, "json") == export_trials(slow, "json")
    for a, b in zip(fast.trials, slow.trials, strict=True):
        for name, dist in b.distributions.items():
            mine = a.distributions[name]
            if name == "init":
                assert mine.choices == dist.choices
                continue
            assert (mine.low, mine.high, mine.log, mine.step) == (
                dist.low, dist.high, dist.log, dist.step), name


def _stamp(db: str, sql: str, *args: Any) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, args)


def test_the_fast_reader_steps_aside_when_it_cannot_be_sure(stored: tuple[str, Any],
                                                            tmp_path: Path) -> None:
    url, _ = stored
    db = make_url(url).database
    assert read_sqlite(url) is not None
    assert read_sqlite(url + "?timeout=5") is None  # options only SQLAlchemy reads
    assert read_sqlite(f"sqlite:///{tmp_path / 'missing.db'}") is None
    (tmp_path / "text.db").write_text("not a database\n")
    assert read_sqlite(f"sqlite:///{tmp_path / 'text.db'}") is None
    _stamp(db, "UPDATE trial_params SET distribution_json = ? WHERE param_id = 1",
           json.dumps({"name": "FancyDistribution", "attributes": {}}))
    assert read_sqlite(url) is None
    _stamp(db, "UPDATE alembic_version SET version_num = 'v3.0.0.d'")  # an older schema
    assert read_sqlite(url) is None


def test_reading_changes_nothing_and_does_not_wait_for_a_writer(stored: tuple[str, Any]) -> None:
    url, storage = stored
    db = Path(make_url(url).database)
    storage.engine.dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = db.read_bytes()
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    writer.execute("UPDATE studies SET study_name = 'renamed' WHERE study_name = 'empty'")
    try:
        names = [s.study_name for s in read_sqlite(url, details=False)]
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert names == ["empty", "mixed", "pareto"]  # what was committed
    assert db.read_bytes() == before


@pytest.mark.parametrize("url", ["sqlite:///tuner.db", "sqlite:////abs/dir/t.db",
                                 "sqlite:///a dir/b@c.db", "sqlite:///./x.sqlite3"])
def test_a_plain_sqlite_url_names_the_file_sqlalchemy_would_open(url: str) -> None:
    assert plain_sqlite_path(url) == Path(make_url(url).database)


@pytest.mark.parametrize("url", ["sqlite:///t.db?timeout=5", "sqlite:///a%20b.db",
                                 "sqlite:///:memory:", "sqlite://", "postgresql://u@h/db"])
def test_other_urls_are_left_to_sqlalchemy(url: str) -> None:
    assert plain_sqlite_path(url) is None


def test_show_says_the_same_through_either_reader(stored: tuple[str, Any],
                                                  tmp_path: Path) -> None:
    """The command itself, in two processes: a plain URL takes the fast reader, the same file
    with a query option goes through Optuna."""
    url, _ = stored
    outputs = []
    for storage in (url, url + "?timeout=30"):
        r = subprocess.run([sys.executable, "-m", "tuner", "show", "mixed", "--json", "--top",
                            "10", "--storage", storage], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        outputs.append(_timeless(json.loads(r.stdout))[0])
    assert outputs[0] == outputs[1]
