"""run.claim's decision on a real in-memory study: what a study with its budget does with the
queued trials nobody will run."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from tuner.core.keys import FAIL_REASON, PACK_OF
from tuner.run.claim import Decision, decide


def test_queued_pack_members_are_dropped_once_the_budget_is_met_a_users_stay() -> None:
    """A Ctrl-C between a packed claim's enqueue and its ask leaves a member queued; once the
    study has its budget nobody would ever run it, so it must not stay WAITING."""
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    study.enqueue_trial({"x": 0.5}, user_attrs={PACK_OF: 1})  # tuner's, left by a Ctrl-C
    study.enqueue_trial({"x": 0.7})  # the user's own
    assert decide(study, study._storage, budget=3)[0] is Decision.GO  # still needed: kept
    assert [t.state for t in study.trials][2:] == [TrialState.WAITING, TrialState.WAITING]
    decision, finished, running = decide(study, study._storage, budget=2)
    assert (decision, finished, running) == (Decision.DONE, 2, 0)
    left, users = study.trials[2:]
    assert left.state == TrialState.FAIL
    assert left.user_attrs[FAIL_REASON] == "packed trial not needed: the study had its budget"
    assert users.state == TrialState.WAITING


def test_try_acquire_takes_a_free_lock_and_leaves_a_held_one(tmp_path, pg_url) -> None:
    """A pool worker tries a study's claim lock and moves on to another study when a worker
    holds it (tuner.service.pool), on a lock file and on a PostgreSQL advisory lock."""
    from tuner.run.claim import claim_lock
    from tuner.store.storage import open_storage

    for url in (f"sqlite:///{tmp_path / 'q.db'}", pg_url):
        storage = open_storage(url)
        first, second = claim_lock(url, storage, "s"), claim_lock(url, open_storage(url), "s")
        assert first.try_acquire()
        assert not second.try_acquire()  # held: refused at once, not waited for
        first.release()
        assert second.try_acquire()
        second.release()
