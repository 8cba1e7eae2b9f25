"""``tuner compare`` says when a model-based sampler is mostly random search at the budget
(issue 31: 15 trials against TPE's 10 random start-up trials gave random and tpe identical
results, without a word)."""

from __future__ import annotations

import inspect

import optuna
import pytest

from tuner.run.compare import random_start_notes
from tuner.run.config import load_config


def test_optunas_defaults_are_what_the_notes_say():
    for cls in (optuna.samplers.TPESampler, optuna.samplers.GPSampler):
        assert inspect.signature(cls).parameters["n_startup_trials"].default == 10


@pytest.mark.parametrize(("n_trials", "expected"), [
    (21, []),  # under half the budget is random: no note
    (20, ["tpe and gp: their first 10 trials are random (n_startup_trials); with 20 trials "
          "only 10 can differ from random search"]),
    (15, ["tpe and gp: their first 10 trials are random (n_startup_trials); with 15 trials "
          "only 5 can differ from random search"]),
    (10, ["tpe and gp: their first 10 trials are random (n_startup_trials); with 10 trials "
          "none can differ from random search"]),
])
def test_a_note_when_half_the_budget_or_more_is_random(study_file, n_trials, expected):
    config = load_config(study_file())
    assert random_start_notes(config, ["random", "tpe", "gp", "qmc"], n_trials) == expected


def test_the_study_files_own_start_up_counts_for_every_sampler_that_takes_it(study_file):
    # compare runs each sampler with the [sampler] options it accepts: gp takes this one too
    config = load_config(study_file(study={"sampler": "tpe"}, sampler={"n_startup_trials": 3}))
    assert random_start_notes(config, ["random", "tpe", "gp"], 15) == []
    assert random_start_notes(config, ["tpe", "gp"], 6) == [
        "tpe and gp: their first 3 trials are random (n_startup_trials); with 6 trials only 3 "
        "can differ from random search"]
    assert random_start_notes(config, ["tpe"], 5) == [
        "tpe: its first 3 trials are random (n_startup_trials); with 5 trials only 2 can differ "
        "from random search"]


def test_nsga2s_first_generation_is_its_random_start_up(study_file):
    """NSGA-II draws its first generation (``population_size``, 50 by default) at random: with
    20 trials of a two-metric study it gave random search's results to the last digit."""
    assert inspect.signature(optuna.samplers.NSGAIISampler).parameters[
        "population_size"].default == 50
    config = load_config(study_file())
    assert random_start_notes(config, ["random", "tpe", "nsga2"], 20) == [
        "tpe: its first 10 trials are random (n_startup_trials); with 20 trials only 10 can "
        "differ from random search",
        "nsga2: its first 50 trials are random (population_size); with 20 trials none can "
        "differ from random search"]
    assert random_start_notes(config, ["nsga2"], 101) == []
    small = load_config(study_file(study={"sampler": "nsga2"}, sampler={"population_size": 8}))
    assert random_start_notes(small, ["nsga2"], 12) == [
        "nsga2: its first 8 trials are random (population_size); with 12 trials only 4 can "
        "differ from random search"]
