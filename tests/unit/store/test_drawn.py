"""A trial's parameters drawn together are written in one transaction (tuner.store.drawn), on
the real SQLite and PostgreSQL storages."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tests._storages import (  # noqa: F401 (the url fixture)
    sqlite_and_postgres,
    statements,
    writing_commits,
)
from tests.conftest import unique
from tuner.store.drawn import drawn_together
from tuner.store.storage import open_storage

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")


def draw(trial: optuna.Trial) -> dict:
    return {"lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "depth": trial.suggest_int("depth", 1, 3),
            "init": trial.suggest_categorical("init", ["zeros", "orthogonal"])}


def test_parameters_drawn_together_are_written_once_at_the_end_of_the_block(url: str):
    storage = open_storage(url)
    name = unique("drawn")
    study = optuna.create_study(study_name=name, storage=storage)
    trial = study.ask()
    done, _ = writing_commits(storage.engine)
    other = optuna.load_study(study_name=name, storage=open_storage(url))
    with drawn_together(trial):
        hp = draw(trial)
        storage.set_trial_system_attr(trial._trial_id, "tpe:relative_params:0", '{"lr": 1}')
        assert trial.params == hp and study.trials[0].params == hp  # this process sees them
        assert study.trials[0].system_attrs["tpe:relative_params:0"] == '{"lr": 1}'
        assert other.trials[0].params == {}  # not written yet
        assert "tpe:relative_params:0" not in other.trials[0].system_attrs
        assert draw(trial) == hp  # asked again: the same values
    assert len(done) == 1  # parameters and the sampler's attributes, in one transaction
    stored = other.trials[0]
    assert stored.params == hp and stored.state == TrialState.RUNNING
    assert stored.system_attrs["tpe:relative_params:0"] == '{"lr": 1}'
    assert stored.distributions == study.trials[0].distributions
    study.tell(trial, 1.0)
    again = study.ask()  # a second trial: Optuna's cache now knows the study's distributions
    with statements(storage) as seen, drawn_together(again):
        draw(again)
    written = [s for s in seen if s.startswith("INSERT")]
    assert len(written) == 1 and "trial_params" in written[0], seen  # the three in one
    assert sum(s.startswith("SELECT trials.") for s in seen) == 1, seen  # the trial's row
    assert set(other.trials[1].params) == {"lr", "depth", "init"}
    assert other.trials[1].params == again.params


def test_a_conflicting_distribution_is_refused_and_not_written(url: str):
    storage = open_storage(url)
    name = unique("drawn")
    study = optuna.create_study(study_name=name, storage=storage)
    first = study.ask()
    first.suggest_int("depth", 1, 3)
    study.tell(first, 1.0)
    fresh = optuna.load_study(study_name=name, storage=open_storage(url))  # an empty cache
    for s in (study, fresh):
        trial = s.ask()
        with (pytest.raises(ValueError, match="Cannot set different distribution kind"),
              drawn_together(trial)):
            trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            trial.suggest_categorical("depth", ["a", "b"])
        assert "depth" not in fresh._storage.get_trial(trial._trial_id).params


def test_elsewhere_it_changes_nothing(tmp_path):
    memory = optuna.create_study()
    trial = memory.ask()
    with drawn_together(trial):
        hp = draw(trial)
    assert memory.trials[0].params == hp
    fixed = optuna.trial.FixedTrial({"lr": 0.01, "depth": 2, "init": "zeros"})
    with drawn_together(fixed):
        assert draw(fixed) == {"lr": 0.01, "depth": 2, "init": "zeros"}
    url = f"sqlite:///{tmp_path / 'x.db'}"
    made = optuna.create_study(study_name="elsewhere", storage=open_storage(url)).ask()
    here = optuna.load_study(study_name="elsewhere", storage=open_storage(url))
    foreign = optuna.trial.Trial(here, made._trial_id)  # a trial this storage did not start
    with drawn_together(foreign):
        foreign.suggest_int("depth", 1, 3)
        reader = optuna.load_study(study_name="elsewhere", storage=open_storage(url))
        assert "depth" in reader.trials[0].params  # written at once, as Optuna does
