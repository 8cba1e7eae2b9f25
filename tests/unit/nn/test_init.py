"""Every init scheme against its formula: weight statistics within sampling error, zero biases,
symmetry where promised, orthogonality, and gains matched to the activation."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from tuner.core.errors import CheckpointError, ConfigError
from tuner.nn.models import ModelSpec, mlp
from tuner.nn.schemes import CONSTANT_VALUE, SCHEMES, apply_init, random_schemes

# (fan_in, fan_out, gain, rows) -> (mean, variance) of every weight, per scheme; ``rows`` is the
# first dimension of the weight (output units or channels), fans include a conv's kernel.
Moments = Callable[[int, int, float, int], tuple[float, float]]
EXPECTED: dict[str, Moments] = {
    "zeros": lambda fi, fo, g, r: (0.0, 0.0),
    "constant": lambda fi, fo, g, r: (CONSTANT_VALUE, 0.0),
    "small_normal": lambda fi, fo, g, r: (0.0, 0.01**2),
    "large_normal": lambda fi, fo, g, r: (0.0, 1.0),
    "uniform": lambda fi, fo, g, r: (0.0, 1.0 / (3 * fi)),  # U(±1/√fan_in)
    "xavier_uniform": lambda fi, fo, g, r: (0.0, 2.0 / (fi + fo)),
    "xavier_normal": lambda fi, fo, g, r: (0.0, 2.0 / (fi + fo)),
    "kaiming_uniform": lambda fi, fo, g, r: (0.0, g**2 / fi),
    "kaiming_normal": lambda fi, fo, g, r: (0.0, g**2 / fi),
    "lecun_normal": lambda fi, fo, g, r: (0.0, 1.0 / fi),
    # the (rows, fan_in) matrix has orthonormal rows or columns, times the gain
    "orthogonal": lambda fi, fo, g, r: (0.0, g**2 / max(fi, r)),
}
# Largest |w| a bounded scheme may draw.
BOUNDS: dict[str, Callable[[int, int, float], float]] = {
    "uniform": lambda fi, fo, g: 1 / math.sqrt(fi),
    "xavier_uniform": lambda fi, fo, g: math.sqrt(6 / (fi + fo)),
    "kaiming_uniform": lambda fi, fo, g: g * math.sqrt(3 / fi),
}
LAYERS = {  # name -> (layer, fan_in, fan_out)
    "linear 300->600": (lambda: nn.Linear(300, 600), 300, 600),
    "linear 600->300": (lambda: nn.Linear(600, 300), 600, 300),
    "conv 32->64 3x3": (lambda: nn.Conv2d(32, 64, 3), 32 * 9, 64 * 9),
}
GAINS = {"relu": math.sqrt(2), "tanh": 5 / 3, "sigmoid": 1.0, "selu": 0.75}


def test_every_random_scheme_has_a_formula_here():
    assert set(EXPECTED) == set(random_schemes())
    assert set(SCHEMES) == {*EXPECTED, "pretrained"}


def _initialised(scheme: str, layer_name: str, activation: str) -> tuple[nn.Module, int, int]:
    make, fan_in, fan_out = LAYERS[layer_name]
    layer = make()
    with torch.no_grad():
        layer.bias.fill_(0.3)  # must be reset to zero by every scheme
    torch.manual_seed(0)
    SCHEMES.get(scheme).apply(nn.Sequential(layer), activation)
    return layer, fan_in, fan_out


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("layer_name", list(LAYERS))
@pytest.mark.parametrize("scheme", sorted(EXPECTED))
def test_weight_moments_match_the_formula(scheme, layer_name, activation):
    layer, fan_in, fan_out = _initialised(scheme, layer_name, activation)
    w = layer.weight.detach().double().flatten()
    mean, var = EXPECTED[scheme](fan_in, fan_out, GAINS[activation], layer.weight.shape[0])
    n = w.numel()
    if var == 0:
        assert torch.all(w == w[0]) and w[0].item() == pytest.approx(mean, abs=1e-7)
    else:
        # sampling error: mean ~ σ/√n, variance ~ σ²·√(2/n) (normal; uniform is tighter)
        assert abs(w.mean().item() - mean) < 6 * math.sqrt(var / n)
        assert w.var().item() == pytest.approx(var, rel=6 * math.sqrt(2 / n))
    if scheme in BOUNDS:
        assert w.abs().max().item() <= BOUNDS[scheme](fan_in, fan_out, GAINS[activation]) + 1e-7
    assert torch.all(layer.bias == 0), "biases start at zero"


@pytest.mark.parametrize(("shape", "activation"), [((200, 500), "tanh"), ((500, 200), "relu"),
                                                   ((256, 256), "sigmoid")])
def test_orthogonal_is_orthogonal_times_the_gain(shape, activation):
    layer = nn.Linear(shape[1], shape[0])
    apply_init(nn.Sequential(layer), "orthogonal", activation)
    w = layer.weight.detach().double()
    small = w @ w.T if shape[0] <= shape[1] else w.T @ w
    eye = torch.eye(small.shape[0], dtype=torch.double)
    assert torch.allclose(small, GAINS[activation] ** 2 * eye, atol=1e-5)


@pytest.mark.parametrize("scheme", sorted(s for s in EXPECTED if SCHEMES.get(s).symmetric))
def test_symmetric_schemes_give_every_unit_the_same_weights(scheme):
    model = apply_init(mlp(ModelSpec(10, 3, None, 3, 16, "tanh")), scheme, "tanh")
    for layer in (m for m in model if isinstance(m, nn.Linear)):
        assert torch.all(layer.weight == layer.weight[0]), "every row (unit) identical"
    assert {s for s in SCHEMES if SCHEMES.get(s).symmetric} == {"zeros", "constant"}


@pytest.mark.parametrize("scheme", sorted(EXPECTED))
def test_apply_reaches_every_layer_of_a_model_and_is_seeded(scheme):
    def draw() -> list[torch.Tensor]:
        torch.manual_seed(7)
        model = apply_init(mlp(ModelSpec(20, 4, None, 3, 32, "relu")), scheme, "relu")
        return [p.detach().clone() for p in model.parameters()]

    first, again = draw(), draw()
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    biases = first[1::2]
    assert all(torch.all(b == 0) for b in biases)


def test_kaiming_gain_follows_the_activation():
    var = {}
    for act in ("relu", "tanh", "selu"):
        layer = nn.Linear(1000, 1000)
        torch.manual_seed(0)
        apply_init(nn.Sequential(layer), "kaiming_normal", act)
        var[act] = layer.weight.var().item() * 1000
    assert var["relu"] == pytest.approx(2.0, rel=0.02)
    assert var["tanh"] == pytest.approx(25 / 9, rel=0.02)
    assert var["selu"] == pytest.approx(0.75**2, rel=0.02)


def test_pretrained_needs_a_checkpoint():
    model = mlp(ModelSpec(4, 3, None, 1, 8, "relu"))
    with pytest.raises(CheckpointError, match="needs a checkpoint"):
        apply_init(model, "pretrained", "relu")
    with pytest.raises(CheckpointError, match="copies whole layers"):
        SCHEMES.get("pretrained").init_weight(torch.empty(3, 3), 1.0)
    assert "pretrained" not in random_schemes()


def test_unknown_scheme_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown init scheme 'he'; valid: .*xavier_normal"):
        apply_init(mlp(ModelSpec(4, 3, None, 1, 8, "relu")), "he", "relu")
