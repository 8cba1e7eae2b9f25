"""Search-space parsing: kinds, rules, and the values trials see."""

from __future__ import annotations

import optuna
import pytest

from tuner.core.errors import ConfigError
from tuner.nn.schemes import SCHEMES
from tuner.search.space import ParamRule
from tuner.search.space_table import parse_param, parse_space

LR = ParamRule(kind="float", low=0.0, low_open=True, log=True)
BATCH = ParamRule(kind="pow2", low=1)
INIT = ParamRule(registry=SCHEMES)


@pytest.mark.parametrize(
    ("raw", "rule", "kind", "attrs"),
    [
        (0.9, None, "fixed", {"value": 0.9}),
        ("relu", None, "fixed", {"value": "relu"}),
        (["a", "b"], None, "categorical", {"choices": ("a", "b")}),
        ({"low": 1, "high": 5}, None, "int", {"low": 1, "high": 5}),
        ({"low": 0.1, "high": 0.5}, None, "float", {"log": False}),
        ({"low": 1e-4, "high": 0.1}, LR, "float", {"log": True}),  # lr is log by default
        ({"low": 1e-4, "high": 0.1, "log": False}, LR, "float", {"log": False}),
        ({"low": 16, "high": 256}, BATCH, "pow2", {"low": 16, "high": 256}),
        ({"low": 2, "high": 8, "type": "pow2"}, None, "pow2", {}),
        ({"low": 0.0, "high": 1.0, "step": 0.25}, None, "float", {"step": 0.25}),
        (16.0, BATCH, "fixed", {"value": 16}),  # a whole float is the int: batch sizes are ints
        ({"low": 16.0, "high": 64.0}, BATCH, "pow2", {"low": 16, "high": 64}),
    ],
)
def test_parse_param_kinds(raw, rule, kind, attrs):
    p = parse_param("x", raw, rule, "f.toml")
    assert p.kind == kind
    for k, v in attrs.items():
        assert getattr(p, k) == v and type(getattr(p, k)) is type(v)


@pytest.mark.parametrize(
    ("raw", "rule", "match"),
    [
        ({"low": 0.1, "high": 0.001}, LR, r"`low <= high` must hold, but got \(low=0.1, high=0.001\)"),
        ({"low": 0.0, "high": 0.1}, LR, "log range needs low > 0"),
        ({"low": -1.0, "high": 0.1, "log": False}, LR, "must be > 0"),
        ({"low": 24, "high": 256}, BATCH, "powers of two"),
        ([16, 48], BATCH, "power of two"),
        ({"low": 1, "high": 2, "hgih": 3}, None, "unknown key"),
        ({"low": 1}, None, "needs 'high'"),
        ({"low": "a", "high": 2}, None, "'low' must be a number"),
        ({"low": 1, "high": 2, "type": "complex"}, None, "'type' must be"),
        ({"low": 1e-3, "high": 1.0, "log": True, "step": 0.1}, None, "cannot be combined"),
        ({"low": 1, "high": 2, "log": "yes"}, None, "'log' must be true or false"),
        ({"low": 0.0, "high": 1.0, "step": -1}, None, "'step' must be a positive"),
        ({"low": 16, "high": 64, "step": 0.5}, None, "an int range needs a whole step, got 0.5"),
        ({"low": 16, "high": 64, "step": 2.5}, None, "an int range needs a whole step, got 2.5"),
        ([], None, "must not be empty"),
        (["a", "a"], None, "unique"),
        ([["a"]], None, "plain values"),
        (["zeros", "he"], INIT, "unknown init scheme 'he'; valid: .*kaiming_normal"),
        ("nope", INIT, "unknown init scheme 'nope'"),
        ({"low": 1, "high": 2}, INIT, "a range does not apply to x; give one init scheme name"),
        (float("nan"), LR, r"values must be finite numbers, got nan"),
        ({"low": 1e-3, "high": float("inf")}, LR, r"finite numbers, got inf"),
        ([0.1, float("-inf")], None, r"finite numbers, got -inf"),
        ({"low": 0.0, "high": 1.0, "step": float("nan")}, None, r"finite numbers, got nan"),
    ],
)
def test_parse_param_rejects(raw, rule, match):
    with pytest.raises(ConfigError, match=match) as e:
        parse_param("x", raw, rule, "f.toml: [space] x")
    assert str(e.value).startswith("f.toml: [space] x: ")


def test_unknown_name_with_rules_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown parameter 'learning_rate'; valid: lr"):
        parse_space({"learning_rate": 0.1}, {"lr": LR}, "f.toml")


def test_defaults_fill_in_and_names_without_rules_pass():
    space = parse_space({"lr": 0.1}, {"lr": LR, "init": ParamRule(default="xavier_uniform")}, "f")
    assert space["init"].value == "xavier_uniform"
    free = parse_space({"anything": [1, 2]}, None, "f")
    assert free["anything"].kind == "categorical"


def test_pow2_is_searched_as_exponent_and_stored_as_real_value():
    space = parse_space({"batch_size": {"low": 16, "high": 256}}, {"batch_size": BATCH}, "f")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        value = space.suggest(trial)["batch_size"]
        assert trial.params["batch_size_log2"] in range(4, 9)
        assert value == 2 ** trial.params["batch_size_log2"]
        assert trial.user_attrs["batch_size"] == value
        seen.add(value)
        study.tell(trial, 0.0)
    assert seen == {16, 32, 64, 128, 256}


def test_grid_needs_finite_values():
    finite = parse_space({"a": [1, 2], "b": {"low": 1, "high": 3}, "c": {"low": 16, "high": 64,
                          "type": "pow2"}, "d": {"low": 0.0, "high": 1.0, "step": 0.5}}, None, "f")
    assert finite.grid() == {"a": [1, 2], "b": [1, 2, 3], "c_log2": [4, 5, 6], "d": [0.0, 0.5, 1.0]}
    continuous = parse_space({"lr": {"low": 1e-4, "high": 1e-1}}, {"lr": LR}, "f")
    with pytest.raises(ConfigError, match=r"grid sampler needs a finite set.*lr.*step or a list"):
        continuous.grid()
