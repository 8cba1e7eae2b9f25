"""Buffered trial writes (tuner.store.buffered): one transaction per trial, on the real
SQLite and PostgreSQL storages, seen by this process at once and by others when written."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from tests._storages import (  # noqa: F401 (the url fixture)
    sqlite_and_postgres,
    statements,
    writing_commits,
)
from tests.conftest import TINY, merged, unique
from tuner.run.config import config_from_dict
from tuner.run.study import run
from tuner.store import buffered
from tuner.store.storage import open_storage


def _elsewhere(url: str, name: str) -> optuna.Study:
    """The study as another process sees it: its own connection, no shared buffer."""
    return optuna.load_study(study_name=name, storage=open_storage(url))


def test_a_running_trial_writes_once_and_reads_its_own_values(url: str):
    name = unique("buf")
    study = optuna.create_study(study_name=name, storage=open_storage(url),
                                direction="maximize")
    trial = study.ask()
    trial.set_user_attr("curve", [0.1, 0.2])
    trial.report(0.5, 1)
    trial.report(0.7, 2)
    trial.storage.set_trial_system_attr(trial._trial_id, "artifacts:x", {"id": "x"})
    trial.storage.set_trial_system_attr(trial._trial_id, "grid_id", 3)  # samplers': at once
    mine = study._storage.get_trial(trial._trial_id)
    assert mine.user_attrs == {"curve": [0.1, 0.2]} and mine.intermediate_values == {1: 0.5,
                                                                                       2: 0.7}
    assert mine.last_step == 2, "what Optuna reads of a pruned trial"
    other = _elsewhere(url, name).trials[0]
    assert other.state == TrialState.RUNNING
    assert other.user_attrs == {} and other.intermediate_values == {}
    assert "artifacts:x" not in other.system_attrs and other.system_attrs["grid_id"] == 3
    with statements(study._storage._backend) as seen:
        study.tell(trial, 0.7)
    # the trial's row, an upsert each of user and system attributes, intermediate values and
    # values, and its state and end: one transaction, nothing read back
    assert len(seen) == 6, seen
    done = _elsewhere(url, name).trials[0]
    assert done.state == TrialState.COMPLETE and done.value == 0.7
    assert done.user_attrs == {"curve": [0.1, 0.2]}
    assert done.intermediate_values == {1: 0.5, 2: 0.7}
    assert done.system_attrs["artifacts:x"] == {"id": "x"}
    assert study._storage._backend._pending == {}


def test_a_long_trial_shows_its_progress_to_other_processes(url: str, monkeypatch):
    monkeypatch.setattr(buffered, "FLUSH_S", 0.0)
    name = unique("buf")
    study = optuna.create_study(study_name=name, storage=open_storage(url))
    trial = study.ask()
    trial.report(1.5, 1)
    assert _elsewhere(url, name).trials[0].intermediate_values == {1: 1.5}


def test_a_bad_attribute_is_refused_when_set_and_writes_of_others_trials_go_at_once(url: str):
    name = unique("buf")
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage)
    trial = study.ask()
    with pytest.raises(TypeError):
        trial.set_user_attr("bad", object())
    theirs = _elsewhere(url, name)
    their_trial = theirs.ask()  # another process's trial: this storage does not buffer it
    storage.set_trial_user_attr(their_trial._trial_id, "fail_reason", "retry not needed")
    assert _elsewhere(url, name).trials[1].user_attrs == {"fail_reason": "retry not needed"}


def test_a_trial_failed_by_another_process_drops_its_unwritten_values(url: str):
    name = unique("buf")
    study = optuna.create_study(study_name=name, storage=open_storage(url))
    trial = study.ask()
    trial.set_user_attr("curve", [1.0])
    other = _elsewhere(url, name)
    other._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # declared dead
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study.tell(trial, 1.0)
    assert study._storage._backend._pending == {}
    assert _elsewhere(url, name).trials[0].state == TrialState.FAIL


def test_a_study_writes_a_few_times_per_trial_not_per_value(tmp_path):
    """The whole point: a trial of the tiny study (2 epochs, a dozen attributes, pictures)
    commits a handful of writing transactions, whatever it records."""
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    config = config_from_dict(merged(TINY, study={"n_trials": 4, "pruner": "median"},
                                     objective={"epochs": 4}))
    transactions, stop = writing_commits(sqlalchemy.engine.Engine)  # every engine's
    try:
        result = run(config, url)
    finally:
        stop()
    trials = result.study.trials
    assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
    assert all(len(t.user_attrs["curve"]["val_loss"]) == 4 for t in trials)
    assert all(t.intermediate_values for t in trials)
    # per trial: its creation with its first heartbeat, its parameters drawn together, the
    # buffered values together with its end: 3 (it was 17: one per value; then 7, with the
    # values and the end apart; then 6, with the first heartbeat and each parameter apart)
    per_trial = (len(transactions) - 5) / 4  # less the study's own creation
    assert per_trial <= 3.5, per_trial


def test_ctrl_c_after_another_process_failed_the_trial_still_stops_cleanly(url: str):
    """fail_running (Ctrl-C) reads each of its trials: one failed elsewhere is skipped, not an
    error in the interrupt handler."""
    from tuner.run.outcome import fail_running

    name = unique("buf")
    study = optuna.create_study(study_name=name, storage=open_storage(url))
    gone, alive = study.ask(), study.ask()
    gone.set_user_attr("curve", [1.0])
    _elsewhere(url, name)._storage.set_trial_state_values(gone._trial_id, TrialState.FAIL)
    fail_running(study, {gone.number: gone._trial_id, alive.number: alive._trial_id},
                 "interrupted")
    after = {t.number: t for t in _elsewhere(url, name).trials}
    assert after[gone.number].state == TrialState.FAIL
    assert "fail_reason" not in after[gone.number].user_attrs
    assert after[alive.number].state == TrialState.FAIL
    assert after[alive.number].user_attrs == {"fail_reason": "interrupted"}


def test_a_running_trial_reads_itself_from_this_processs_copy(url: str):
    """Optuna reads a running trial at its start, at each pruning check and at its tell; this
    process's copy answers, with every write it made, and the database is not asked."""
    name = unique("buf")
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage)
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("init", ["zeros", "orthogonal"])
    trial.set_user_attr("batch_size", 32)
    trial.report(0.5, 1)
    storage.set_trial_system_attr(trial._trial_id, "grid_id", 3)  # written at once
    statements: list[str] = []

    def seen(conn, cursor, text, *args) -> None:
        statements.append(text)

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", seen)
    try:
        mine = study._storage.get_trial(trial._trial_id)  # what should_prune and tell read
    finally:
        sqlalchemy.event.remove(storage.engine, "before_cursor_execute", seen)
    assert statements == []
    storage.flush(trial._trial_id)
    stored = _elsewhere(url, name).trials[0]  # the same trial as the database holds it
    for attr in ("params", "distributions", "user_attrs", "system_attrs",
                 "intermediate_values", "state", "number", "datetime_start"):
        assert getattr(mine, attr) == getattr(stored, attr), attr
    mine.user_attrs["changed"] = True  # a caller's change does not reach the copy
    assert "changed" not in study._storage.get_trial(trial._trial_id).user_attrs


def test_a_trial_failed_elsewhere_learns_it_at_its_tell_or_a_read_after_flush_s(
        url: str, monkeypatch):
    name = unique("buf")
    study = optuna.create_study(study_name=name, storage=open_storage(url))
    late, early = study.ask(), study.ask()
    other = _elsewhere(url, name)
    for t in (late, early):
        other._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # declared dead
    assert study._storage.get_trial(late._trial_id).state == TrialState.RUNNING  # the copy
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study.tell(late, 1.0)  # its end is a write: refused
    monkeypatch.setattr(buffered, "FLUSH_S", 0.0)  # the copy is always due a real read
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study._storage.get_trial(early._trial_id)
    assert study._storage._backend._copies == {}


def test_a_trial_and_its_values_end_together_or_not_at_all(url: str):
    """The buffered values and the final state are one transaction: a refused end (the trial
    was failed elsewhere) writes none of the values, and a trial seen as finished has them."""
    name = unique("buf")
    study = optuna.create_study(study_name=name, storage=open_storage(url))
    kept, refused = study.ask(), study.ask()
    for t in (kept, refused):
        t.set_user_attr("curve", [0.5])
        t.report(0.5, 1)
    _elsewhere(url, name)._storage.set_trial_state_values(refused._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study.tell(refused, 1.0)
    study.tell(kept, 0.5)
    after = {t.number: t for t in _elsewhere(url, name).trials}
    assert after[refused.number].state == TrialState.FAIL
    assert after[refused.number].user_attrs == {} and after[refused.number].values is None
    assert after[kept.number].state == TrialState.COMPLETE
    assert after[kept.number].user_attrs == {"curve": [0.5]}
    assert after[kept.number].intermediate_values == {1: 0.5}
