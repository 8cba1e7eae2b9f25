"""``[study] constraints`` reach Optuna: its ``constraints`` system attribute (what tpe, nsga2
and gp learn from, and what the dashboard colours a trial by) agrees with tuner's ``feasible``.

Optuna calls ``constraints_func`` in the sampler's ``after_trial``, before it stores the
trial's values: reading ``trial.values`` there gave ``None``, and every trial was stored as
breaking every constraint (``[1.0]``), feasible or not."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState, create_trial

from tests.conftest import to_toml
from tuner.core.keys import CONSTRAINT_VALUES, FEASIBLE
from tuner.run.config import load_config
from tuner.run.study import run
from tuner.search.constraints import Constraints

OBJECTIVE = '''
def objective(trial, ctx):
    hp = ctx.suggest(trial)
    if hp["x"] > 0.9:
        import optuna
        raise optuna.TrialPruned("too far")
    return {"loss": hp["x"], "size": hp["y"]}
'''


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_optunas_constraints_are_the_trials_own(tmp_path, monkeypatch, sampler):
    (tmp_path / "constrained_obj.py").write_text(OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.toml"
    path.write_text(to_toml({
        "study": {"name": "c", "metrics": ["loss", "size"], "directions": ["minimize"] * 2,
                  "constraints": ["size <= 0.7", "loss >= 0.05"], "sampler": sampler,
                  "pruner": "none", "n_trials": 12, "seed": 0},
        "objective": {"name": "constrained_obj:objective"},
        "space": {"x": {"low": 0.0, "high": 1.0}, "y": {"low": 0.0, "high": 1.0}}}))
    study = run(load_config(path), f"sqlite:///{tmp_path / 'c.db'}").study
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert {True, False} <= {t.user_attrs[FEASIBLE] for t in complete}  # both kinds drawn
    for t in complete:
        loss, size = t.values
        assert t.system_attrs["constraints"] == pytest.approx([size - 0.7, 0.05 - loss])
        assert t.user_attrs[CONSTRAINT_VALUES] == pytest.approx([size - 0.7, 0.05 - loss])
        assert all(c <= 0 for c in t.system_attrs["constraints"]) == t.user_attrs[FEASIBLE]
    for t in study.get_trials(states=(TrialState.PRUNED,)):  # no values: all broken
        assert list(t.system_attrs["constraints"]) == [1.0, 1.0]


def test_the_constraints_func_reads_what_the_trial_wrote():
    c = Constraints(["loss", "size"], [("size", "<=", 0.5)])
    written = create_trial(state=TrialState.RUNNING, user_attrs={CONSTRAINT_VALUES: [-0.25]})
    assert c(written) == [-0.25]  # values not stored yet: Optuna's after_trial
    done = create_trial(values=[0.1, 0.7])
    assert c(done) == pytest.approx([0.2])
    assert c(create_trial(state=TrialState.PRUNED)) == [1.0]
