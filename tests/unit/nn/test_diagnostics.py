"""The classic experiment (10 layers x 500 units, input N(0, 1)) agrees with theory, and
``tuner diagnose`` prints it as a table, JSON or the textbook PNG."""

from __future__ import annotations

import itertools
import json
import re

import pytest
import torch

from tuner.core.errors import ConfigError
from tuner.nn.diagnostics import (
    activation_stats,
    diagnose,
    diagnose_many,
    estimate_bytes,
    probe_network,
)
from tuner.nn.models import ACTIVATIONS, ModelSpec, mlp
from tuner.nn.schemes import apply_init, random_schemes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stds(scheme: str, activation: str) -> list[float]:
    return [layer.std for layer in diagnose(scheme, activation).layers]


def test_small_normal_tanh_shrinks_about_4_to_5x_per_layer():
    s = stds("small_normal", "tanh")
    # N(0, 0.01²) with 500 inputs: each layer multiplies the std by 0.01·√500 ≈ 0.22
    assert s[0] == pytest.approx(0.21, abs=0.01)
    ratios = [a / b for a, b in itertools.pairwise(s)]
    assert all(4.0 <= r <= 5.0 for r in ratios), ratios
    assert s[-1] < 1e-5


def test_large_normal_tanh_saturates_at_every_layer():
    d = diagnose("large_normal", "tanh")
    assert all(layer.std > 0.95 for layer in d.layers)
    assert all(layer.saturated > 0.8 for layer in d.layers)
    assert d.verdict == "saturated"


@pytest.mark.parametrize("scheme", ["xavier_uniform", "xavier_normal"])
def test_xavier_tanh_decays_slowly(scheme):
    s = stds(scheme, "tanh")
    assert s[0] == pytest.approx(0.63, abs=0.03)
    assert s[-1] > 0.2
    assert all(a >= b for a, b in itertools.pairwise(s)), "slow, steady decay"


@pytest.mark.parametrize("scheme", ["kaiming_normal", "kaiming_uniform"])
def test_he_relu_keeps_the_signal(scheme):
    d = diagnose(scheme, "relu")
    first = d.layers[0].std
    assert all(first / 1.5 <= layer.std <= first * 1.5 for layer in d.layers)
    grads = [layer.grad_std for layer in d.layers]
    assert all(0.67 <= g <= 1.5 for g in grads), "gradients neither vanish nor explode"
    assert d.verdict == "healthy"


def test_gradients_vanish_with_the_signal():
    d = diagnose("small_normal", "tanh")
    grads = [layer.grad_std for layer in d.layers]
    assert grads[-1] == pytest.approx(1.0, rel=0.01), "the top layer gets a unit gradient"
    assert grads[0] < 1e-5 and all(a < b for a, b in itertools.pairwise(grads))


@pytest.mark.parametrize(("scheme", "activation", "verdict"), [
    ("zeros", "tanh", "symmetric"),
    ("constant", "relu", "symmetric"),
    ("small_normal", "tanh", "vanishing"),
    ("large_normal", "relu", "exploding"),
    ("large_normal", "tanh", "saturated"),
    ("xavier_normal", "tanh", "healthy"),
    ("lecun_normal", "selu", "healthy"),
])
def test_verdicts_of_the_classic_runs(scheme, activation, verdict):
    d = diagnose(scheme, activation, depth=10, width=200, samples=300)
    assert d.verdict == verdict, d.reason


def test_seeded_and_shaped():
    a = diagnose("xavier_uniform", "tanh", depth=3, width=40, samples=50, seed=1)
    b = diagnose("xavier_uniform", "tanh", depth=3, width=40, samples=50, seed=1)
    c = diagnose("xavier_uniform", "tanh", depth=3, width=40, samples=50, seed=2)
    assert a == b and a != c
    assert [layer.layer for layer in a.layers] == [1, 2, 3]
    for layer in a.layers:
        assert sum(layer.hist_counts) == 50 * 40 and len(layer.hist_edges) == 31
        assert layer.hist_edges[0] == -1.0 and layer.hist_edges[-1] == 1.0  # tanh's range


def test_activation_stats_keeps_its_signature_and_can_share_a_range():
    torch.manual_seed(0)
    model = apply_init(mlp(ModelSpec(8, 3, None, 3, 16, "tanh")), "xavier_normal", "tanh")
    x = torch.randn(64, 8)
    own = activation_stats(model, x)
    assert [s.layer for s in own] == [1, 2, 3] and len(own[0].hist_counts) == 30
    shared = activation_stats(model, x, bins=10, hist_range=(-1.0, 1.0))
    assert all(s.hist_edges[0] == -1.0 and sum(s.hist_counts) == 64 * 16 for s in shared)
    assert [s.std for s in shared] == [s.std for s in own]
    assert set(own[0].as_dict()) == {"layer", "mean", "std", "hist_counts", "hist_edges"}


def test_probe_network_is_depth_blocks_without_a_head():
    net = probe_network(4, 12, "relu")
    assert net(torch.randn(5, 12)).shape == (5, 12)
    assert len(net) == 8


def test_all_means_every_random_scheme_and_activation():
    runs = diagnose_many("all", "all", depth=2, width=8, samples=16)
    assert len(runs) == len(random_schemes()) * len(ACTIVATIONS)
    assert {d.scheme for d in runs} == set(random_schemes())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"scheme": "he"}, r"unknown init scheme 'he'; valid:"),
    ({"activation": "swish"}, r"unknown activation 'swish'; valid: .*tanh"),
    ({"scheme": "pretrained"}, r"loads them from a checkpoint"),
    ({"depth": 0}, r"depth must be a whole number >= 1, got 0"),
    ({"width": -3}, r"width must be a whole number >= 1, got -3"),
    ({"samples": 1}, r"samples must be a whole number >= 2"),
    ({"width": 200_000}, r"needs about [\d.]+ TiB .* the limit is 4.0 GiB"),
    ({"depth": 10**6, "width": 50}, r"needs about [\d.]+ GiB"),
])
def test_bad_arguments(kwargs, match):
    args = {"scheme": "xavier_normal", "activation": "tanh", **kwargs}
    with pytest.raises(ConfigError, match=match):
        diagnose(**args)


def test_memory_estimate_counts_weights_and_activations():
    assert estimate_bytes(10, 500, 1000) == 4 * (2 * 10 * 500 * 501 + 4 * 10 * 1000 * 500
                                                 + 1000 * 500)


# --------------------------------------------------------------------------- the CLI
def test_cli_json_record(cli):
    r = cli("diagnose", "--init", "small_normal", "--activation", "tanh", "--json")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert (record["scheme"], record["activation"], record["depth"], record["width"]) == \
        ("small_normal", "tanh", 10, 500)
    assert record["verdict"] == "vanishing"
    layers = record["layers"]
    assert len(layers) == 10 and layers[-1]["std"] < 1e-5
    assert {"mean", "std", "grad_mean", "grad_std", "weight_grad_std", "hist_counts",
            "hist_edges", "saturated"} <= set(layers[0])


def test_cli_table_and_png(cli, tmp_path):
    r = cli("diagnose", "--init", "kaiming_normal", "--activation", "relu", "--depth", "6",
            "--width", "100", "--png", "he.png")
    assert r.returncode == 0, r.stderr
    assert "verdict: healthy" in r.stdout and "weight grad std" in r.stdout
    png = (tmp_path / "he.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 20_000


def test_cli_several_combinations(cli):
    r = cli("diagnose", "--init", "zeros,xavier_normal", "--activation", "tanh,relu",
            "--depth", "3", "--width", "20", "--samples", "30", "--json")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    assert [(d["scheme"], d["activation"], d["verdict"]) for d in records] == [
        ("zeros", "tanh", "symmetric"), ("zeros", "relu", "symmetric"),
        ("xavier_normal", "tanh", "healthy"), ("xavier_normal", "relu", "healthy")]


def test_figures_have_a_panel_per_layer_and_a_row_per_run(tmp_path):
    from tuner.views.diagnose_plot import figure_many, figure_one, save_png

    runs = diagnose_many("zeros,small_normal,xavier_normal", "tanh", depth=4, width=20,
                         samples=30)
    one = figure_one(runs[0])
    titled = sorted(ax.get_title() for ax in one.get_axes() if ax.get_visible())
    assert titled == sorted(["activation mean", "activation std", "gradient std (dL/dh, log)",
                             "layer 1", "layer 2", "layer 3", "layer 4"])
    many = figure_many(runs)
    assert len([ax for ax in many.get_axes() if ax.get_visible()]) == 3 * (1 + 4)
    labels = [ax.get_ylabel() for ax in many.get_axes() if ax.get_ylabel()]
    assert labels == ["zeros\n+ tanh\nsymmetric", "small_normal\n+ tanh\nvanishing",
                      "xavier_normal\n+ tanh\nhealthy"]
    assert save_png(runs, tmp_path / "three.png").read_bytes().startswith(PNG_MAGIC)


BAD_CLI = [
    (["--init", "he_normal", "--activation", "tanh"], "unknown init scheme 'he_normal'"),
    (["--init", "zeros", "--activation", "swish"], "unknown activation 'swish'"),
    (["--init", "zeros", "--activation", "tanh", "--depth", "0"], "depth must be"),
    (["--init", "zeros", "--activation", "tanh", "--width", "0"], "width must be"),
    (["--init", "zeros", "--activation", "tanh", "--width", "100000"], r"needs about .*GiB"),
    (["--init", "pretrained", "--activation", "tanh"], "from a checkpoint"),
    (["--init", "zeros"], "Missing option '--activation'"),
    (["--init", "zeros", "--activation", "tanh", "--depth", "2", "--png", "no/such/dir.png"],
     "cannot write"),
]


@pytest.mark.parametrize(("args", "match"), BAD_CLI)
def test_cli_bad_input(args, match, capsys, tmp_path, monkeypatch):
    """The CLI's own entry point, in process (the subprocess run below checks one for real)."""
    from tuner.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["diagnose", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(match, lines[0]), lines[0]


def test_cli_bad_input_for_real(cli):
    r = cli("diagnose", "--init", "he_normal", "--activation", "tanh")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: unknown init scheme 'he_normal'; valid: constant")
    assert len(r.stderr.strip().splitlines()) == 1


def test_an_init_that_overflows_is_pruned_as_exploding_not_failed(study_file, sqlite_url):
    """Activations reaching inf must not break the statistics (histogram, picture) on the way
    to the health verdict."""
    from tuner.run.config import load_config
    from tuner.run.study import run

    config = load_config(study_file(study={"n_trials": 2}, space={
        "init": "large_normal", "activation": "relu", "depth": 60, "width": 64,
        "lr": [0.01, 0.02]}))
    result = run(config, sqlite_url)
    for trial in result.study.trials:
        assert trial.state.name == "PRUNED"
        assert trial.user_attrs["init_verdict"] == "exploding"
