"""Running, resuming and refusing studies through the library, on real storages."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import unique
from tuner.core.errors import ConfigError, StudyNotFoundError
from tuner.core.keys import CONFIG_ATTR
from tuner.run.config import load_config
from tuner.run.outcome import DivergedError
from tuner.run.study import resume, run
from tuner.store.storage import open_storage
from tuner.store.studies import n_finished


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def any_url(request, tmp_path) -> str:
    """The same contract on every storage kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tuner.db'}"
    if request.param == "journal":
        return f"journal:{tmp_path / 'tuner.journal'}"
    return request.getfixturevalue("pg_url")


def test_run_then_resume_adds_exactly_n(study_file, any_url):
    name = unique("spine")
    config = load_config(study_file(study={"name": name, "sampler": "tpe"}))
    first = run(config, any_url)
    assert n_finished(first.study) == 3
    again = resume(name, any_url, n_trials=2)
    assert len(again.trial_numbers) == 2
    study = optuna.load_study(study_name=name, storage=open_storage(any_url))
    assert n_finished(study) == 5
    assert [t.number for t in study.trials] == list(range(5))
    assert study.user_attrs[CONFIG_ATTR]["study"]["n_trials"] == 5, "the budget grew"
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    # the real batch size is on every trial, next to its searched exponent
    for t in study.trials:
        assert t.user_attrs["batch_size"] == 2 ** t.params["batch_size_log2"]


def test_rerun_continues_to_budget_then_does_nothing(study_file, sqlite_url):
    config = load_config(study_file())
    run(config.with_overrides(n_trials=2), sqlite_url)
    grown = run(config, sqlite_url)  # budget 3: one more
    assert len(grown.trial_numbers) == 1
    done = run(config, sqlite_url)
    assert done.trial_numbers == []
    assert n_finished(done.study) == 3
    # resume without --n-trials also stops at the stored budget
    assert resume("tiny", sqlite_url).trial_numbers == []


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"space": {"init": ["zeros", "orthogonal"]}}, r"different \[space\]"),
        ({"objective": {"epochs": 3}}, r"different \[objective\]"),
        ({"study": {"metric": "val_loss"}}, r"is to maximize, but .* says minimize"),
    ],
)
def test_run_refuses_to_mix_studies(study_file, sqlite_url, change, match):
    run(load_config(study_file()), sqlite_url)
    other = load_config(study_file("other.toml", **change))
    with pytest.raises(ConfigError, match=match):
        run(other.with_overrides(name="tiny"), sqlite_url)
    study = optuna.load_study(study_name="tiny", storage=open_storage(sqlite_url))
    assert n_finished(study) == 3, "nothing lost or added"
    assert study.user_attrs[CONFIG_ATTR]["objective"]["epochs"] == 2


def test_same_seed_reproduces_params_and_values(study_file, tmp_path):
    config = load_config(study_file(study={"sampler": "tpe", "n_trials": 4}))
    results = []
    for i in range(2):
        r = run(config, f"sqlite:///{tmp_path / f'r{i}.db'}")
        results.append([(t.params, t.value) for t in r.study.trials])
    assert results[0] == results[1]
    other = run(config.with_overrides(seed=1), f"sqlite:///{tmp_path / 'r2.db'}")
    assert [t.params for t in other.study.trials] != [p for p, _ in results[0]]


def test_resume_does_not_replay_the_first_run(study_file, sqlite_url):
    config = load_config(study_file(study={"n_trials": 3}))
    run(config, sqlite_url)
    resume("tiny", sqlite_url, n_trials=3)
    study = optuna.load_study(study_name="tiny", storage=open_storage(sqlite_url))
    first, second = study.trials[:3], study.trials[3:]
    assert [t.params for t in first] != [t.params for t in second]


def test_resume_unknown_study_lists_stored_names(study_file, sqlite_url):
    run(load_config(study_file()), sqlite_url)
    with pytest.raises(StudyNotFoundError, match=r"no study named 'nope'.*stored studies: tiny"):
        resume("nope", sqlite_url)


def test_resume_of_a_missing_storage_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(Exception, match="does not exist"):
        resume("x", url)
    assert not (tmp_path / "none.db").exists()


def test_plain_optuna_study_is_adopted_with_a_config(study_file, sqlite_url):
    storage = open_storage(sqlite_url)
    plain = optuna.create_study(study_name="plain", storage=storage, direction="maximize")
    plain.optimize(lambda t: t.suggest_float("lr", 1e-3, 0.1, log=True), n_trials=2)
    with pytest.raises(ConfigError, match=r"not created by tuner.*--config"):
        resume("plain", sqlite_url, n_trials=1)
    result = resume("plain", sqlite_url, n_trials=2, config=load_config(study_file()))
    assert len(result.trial_numbers) == 2
    study = optuna.load_study(study_name="plain", storage=open_storage(sqlite_url))
    assert len(study.trials) == 4 and CONFIG_ATTR in study.user_attrs


def test_a_plain_study_of_other_parameters_is_not_adopted(study_file, sqlite_url):
    storage = open_storage(sqlite_url)
    plain = optuna.create_study(study_name="plain", storage=storage, direction="maximize")
    plain.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    with pytest.raises(ConfigError, match=r"study 'plain' was not created by tuner, and its trials "
                                          r"search x, which .*study.toml's \[space\] does not"):
        resume("plain", sqlite_url, n_trials=1, config=load_config(study_file()))
    study = optuna.load_study(study_name="plain", storage=open_storage(sqlite_url))
    assert len(study.trials) == 3 and CONFIG_ATTR not in study.user_attrs  # untouched


def test_a_diverging_trial_is_pruned_with_its_reason_and_the_study_goes_on(study_file, sqlite_url):
    config = load_config(study_file(
        study={"n_trials": 8, "sampler": "random"},
        space={"lr": [0.01, 1e6], "optimizer": "sgd", "momentum": 0.0},
    ))
    result = run(config, sqlite_url)
    states = {t.params["lr"]: t.state for t in result.study.trials}
    assert states[1e6] == TrialState.PRUNED and states[0.01] == TrialState.COMPLETE
    diverged = [t for t in result.study.trials if t.params["lr"] == 1e6]
    assert "diverged" in diverged[0].user_attrs["prune_reason"]


def test_every_trial_diverging_is_an_error_that_keeps_the_trials(study_file, sqlite_url):
    config = load_config(study_file(space={"lr": [1e6, 1e7], "optimizer": "sgd", "momentum": 0.0}))
    with pytest.raises(DivergedError, match="lower the upper bound of \\[space\\] lr"):
        run(config, sqlite_url)
    study = optuna.load_study(study_name="tiny", storage=open_storage(sqlite_url))
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 3


def test_a_study_stored_for_another_device_runs_here_on_the_one_asked_for(study_file, sqlite_url):
    config = load_config(study_file())
    run(config.with_overrides(n_trials=1), sqlite_url)
    study = optuna.load_study(study_name="tiny", storage=open_storage(sqlite_url))
    raw = study.user_attrs[CONFIG_ATTR]
    raw["objective"]["device"] = "cuda:1"  # as a GPU machine would have stored it
    study.set_user_attr(CONFIG_ATTR, raw)
    assert len(run(config.with_overrides(n_trials=2), sqlite_url, device="cpu").trial_numbers) == 1
    assert len(resume("tiny", sqlite_url, n_trials=1, device="cpu").trial_numbers) == 1


def test_resume_overrides_belong_to_that_run_only(study_file, sqlite_url):
    run(load_config(study_file()), sqlite_url)
    resume("tiny", sqlite_url, n_trials=2, pack=2, device="cpu")
    stored = optuna.load_study(study_name="tiny", storage=open_storage(sqlite_url)).user_attrs
    assert stored[CONFIG_ATTR]["study"]["n_trials"] == 5, "the budget grew"
    assert stored[CONFIG_ATTR]["study"]["pack"] == 1
    assert stored[CONFIG_ATTR]["objective"]["device"] == "auto"


def test_a_multi_objective_study_in_the_storage_is_listed_and_refused_by_name(sqlite_url):
    from tuner.store.sqlite_reader import read_sqlite
    from tuner.store.studies import snapshots
    from tuner.views.summaries import list_studies

    storage = open_storage(sqlite_url)
    multi = optuna.create_study(study_name="pareto", storage=storage,
                                directions=["maximize", "minimize"])
    multi.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    for studies in (snapshots(storage), read_sqlite(sqlite_url)):  # through Optuna, and not
        [row] = list_studies(studies)
        assert (row["name"], row["direction"], row["best_value"]) == ("pareto", "multi", None)
    with pytest.raises(ConfigError, match="'pareto' has 2 objectives"):
        read_sqlite(sqlite_url, "pareto")
    with pytest.raises(ConfigError, match="'pareto' has 2 objectives"):
        resume("pareto", sqlite_url, n_trials=1)
    with pytest.raises(ConfigError, match="has 2 objectives"):
        from tuner.store.studies import open_study

        open_study("pareto", sqlite_url)


def test_a_lost_connection_ends_a_run_with_the_storage_error(sqlite_url, monkeypatch):
    """Optuna's clean-up after a failed tell raises UnboundLocalError; the run reports the
    lost connection instead (one error line, exit 2)."""
    import dataclasses

    from sqlalchemy import event, exc

    from tests.conftest import TINY
    from tuner.core.errors import StorageError
    from tuner.run.config import config_from_dict
    from tuner.run.loop import run_trials
    from tuner.run.study import prepare_study
    from tuner.store.storage import open_storage

    monkeypatch.setenv("TUNER_STORAGE_RETRY_S", "0.3")
    storage = open_storage(sqlite_url)
    down = False

    def cut(*args):
        if down:
            raise exc.OperationalError("SELECT", {}, Exception("server closed the connection"))

    event.listen(storage.engine, "before_cursor_execute", cut)

    def objective(trial, ctx):
        nonlocal down
        down = True  # the server goes away while the trial runs
        return 1.0

    config = config_from_dict(TINY)
    config = dataclasses.replace(config, spec=dataclasses.replace(config.spec, fn=objective))
    study = prepare_study(config, storage)
    with pytest.raises(StorageError, match="lost the connection to storage sqlite:///"):
        run_trials(study, config, n_trials=2, budget=None)
