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


# The classifier's names (tuner.objectives.classifier.PARAM_RULES), as far as the rule goes.
CLASSIFIER_LIKE = {"lr": LR, "batch_size": BATCH, "init": INIT, "weight_decay": ParamRule(),
                   "momentum": ParamRule(), "depth": ParamRule(integer=True)}


@pytest.mark.parametrize(
    ("name", "raw", "close"),
    [("batch_sise", {"low": 16, "high": 256}, "batch_size"),  # the issue's: an int range
     ("bacth_size", [16, 32], "batch_size"), ("batchsize", 64, "batch_size"),
     ("BATCH_SIZE", 64, "batch_size"), ("Lr", {"low": 1e-4, "high": 0.1}, "lr"),
     ("inti", ["zeros"], "init"), ("inits", ["zeros"], "init"),
     ("weight_decy", {"low": 0.0, "high": 0.1}, "weight_decay"),
     ("momentun", 0.9, "momentum"), ("momemtum", 0.9, "momentum")],
)
@pytest.mark.parametrize("rules", [None, CLASSIFIER_LIKE], ids=["any-name", "with-rules"])
def test_a_typo_of_a_common_name_is_an_error_for_every_objective(name, raw, close, rules):
    """Without rules (a custom objective's own parameters) ``batch_sise`` was searched as an
    integer range of its own, and the study ran with the default batch size."""
    from tuner.core.toml_text import dump_toml

    value = dump_toml({"t": {"k": raw}}).split("k = ", 1)[1].strip()
    with pytest.raises(ConfigError) as e:
        parse_space({"x": 1.0, name: raw}, None if rules is None else {"x": LR, **rules},
                    "f.toml", {"lr": LR, "batch_size": BATCH, "init": INIT})
    message = str(e.value)
    assert message.startswith(f"f.toml: [space] {name} = {value}: unknown parameter {name!r}; "
                              f"did you mean {close!r}?"), message
    assert message.endswith("; valid: x, lr, batch_size, init, weight_decay, momentum, depth"
                            if rules else "declares it in its param_rules)"), message


@pytest.mark.parametrize(
    "name",
    # one and two letters are two edits from lr, units two from init: an objective's own
    ["x", "y", "wd", "l2", "dr", "lrs", "units", "depth", "width", "dropout", "decay",
     "weight_decay", "momentum", "lr", "batch_size", "init"],
)
def test_names_that_are_no_typo_of_a_common_name_pass_without_rules(name):
    value = {"init": ["zeros"], "lr": [0.1, 0.2], "batch_size": [16, 32]}.get(name, [0, 1])
    space = parse_space({name: value}, None, "f",
                        {"lr": LR, "batch_size": BATCH, "init": INIT})
    assert space[name].kind == "categorical"


def test_an_objective_that_declares_a_close_name_may_use_it():
    space = parse_space({"batch_sise": {"low": 16, "high": 256}, "lrs": [0.1, 0.2]},
                        {"batch_sise": ParamRule(integer=True), "lrs": ParamRule(),
                         "batch_size": BATCH}, "f")
    assert (space["batch_sise"].kind, space["batch_sise"].high) == ("int", 256)
    # not within the rule's reach: the plain "unknown parameter" message, as before
    with pytest.raises(ConfigError, match=r"^f: \[space\] unknown parameter 'learnrate'"):
        parse_space({"learnrate": 0.1}, {"lr": LR}, "f")
    # a near name of a common one the objective does not take: no suggestion of it
    with pytest.raises(ConfigError, match=r"^f: \[space\] unknown parameter 'momentun'; valid"):
        parse_space({"momentun": 0.1}, {"lr": LR}, "f")
