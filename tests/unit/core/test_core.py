"""core: the pieces every layer speaks — the stored budget, "did you mean", a failure's one-line
reason with the user's frame, the TOML writer. (How an output file is written, core.paths, is
tests/integration/test_outputs.py's.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tuner.core.errors import did_you_mean
from tuner.core.failures import fail_reason, one_line
from tuner.core.keys import CONFIG_ATTR, stored_budget
from tuner.core.toml_text import dump_toml


@pytest.mark.parametrize(("attrs", "budget"), [
    ({CONFIG_ATTR: {"study": {"n_trials": 40}}}, 40),
    ({CONFIG_ATTR: {"study": {}}}, None),
    ({CONFIG_ATTR: {"study": {"n_trials": True}}}, None),  # a bool is no budget
    ({CONFIG_ATTR: "damaged"}, None),
    ({}, None),  # plain Optuna's study
])
def test_the_stored_budget(attrs, budget) -> None:
    assert stored_budget(attrs) == budget


def test_did_you_mean_catches_typos_not_shared_letters() -> None:
    assert did_you_mean("n_trails", ["n_trials", "seed"]) == "; did you mean 'n_trials'?"
    assert did_you_mean("xavier", ["xavier_normal", "zeros"]) == "; did you mean 'xavier_normal'?"
    assert did_you_mean("bayes", ["cmaes", "tpe"]) == ""
    assert did_you_mean(["", 3, "sed"], ["seed"]) == "; did you mean 'seed'?"


def test_a_failure_names_the_users_frame_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "myobj.py"
    path.write_text("def forward():\n    return 1 / 0\n")
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    try:
        namespace["forward"]()
    except ZeroDivisionError as e:
        reason = fail_reason(e)
    assert reason == f"ZeroDivisionError: division by zero (at {path}:2 in forward)"
    assert one_line("a\n\n  b \n") == "a / b"


def test_the_toml_writer_round_trips_and_leaves_out_none() -> None:
    config = {"study": {"name": 'q"s', "n_trials": 3, "timeout": None, "log": True},
              "space": {"lr": {"low": 1e-4, "high": 0.1, "log": True}, "init": ["a", "b"]},
              "empty": {}}
    text = dump_toml(config)
    assert tomllib.loads(text) == {"study": {"name": 'q"s', "n_trials": 3, "log": True},
                                   "space": config["space"]}
    assert "[empty]" not in text
