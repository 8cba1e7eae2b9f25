"""The progress line of ``run --jobs``: each line's ``best=`` is the best over the trials that
had finished by that line's trial (issue 31: ``[17/20] trial 16 … best=132.4`` showed the
value of trial 17, which finished with it in one read of the study)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tuner.cli._progress import TrialProgress
from tuner.run.outcome import RunResult
from tuner.run.workers._jobs import _report_new

T0 = datetime(2026, 1, 1, 12, 0, 0)


def _add(study: optuna.Study, x: float, value: float, done_s: float) -> None:
    trial = create_trial(params={"x": x}, distributions={"x": FloatDistribution(0, 1)},
                         value=value, state=TrialState.COMPLETE)
    trial.datetime_start = T0
    trial.datetime_complete = T0 + timedelta(seconds=done_s)
    study.add_trial(trial)


def test_each_line_shows_the_best_of_the_trials_finished_by_then(tmp_path, capsys):
    study = optuna.create_study(study_name="p", storage=f"sqlite:///{tmp_path / 'tuner.db'}",
                                direction="minimize")
    _add(study, 0.1, 200.0, done_s=1)  # trial 0: seen before this poll
    # One poll of the parent finds three new trials: trial 1 (150.0) and then trial 2 (132.4),
    # the pair, and trial 3 (140.0), which finished before both.
    _add(study, 0.2, 150.0, done_s=3)
    _add(study, 0.3, 132.4, done_s=5)
    _add(study, 0.4, 140.0, done_s=2)
    progress = TrialProgress("val_mse", header="")
    progress.start(study, total=4, timeout=None)
    seen = {0}
    _report_new(study, seen, RunResult(study), progress)
    lines = capsys.readouterr().err.strip().splitlines()
    shown = [(int(m[1]), int(m[2]), float(m[3])) for m in
             (re.search(r"^\[(\d+)/4\] trial (\d+) complete .* best=([\d.]+)", line)
              for line in lines)]
    # in the order they finished, each with the best up to and including itself
    assert shown == [(1, 3, 140.0), (2, 1, 140.0), (3, 2, 132.4)], lines
    assert seen == {0, 1, 2, 3}
