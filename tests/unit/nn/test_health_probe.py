"""The init health probe sees every network: activations applied as modules, in ``forward`` or
in ``nn.Sequential``, residual blocks and conv nets give the same hidden layers and verdicts;
a network with no hidden layer gets ``unknown``, never ``healthy``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tuner.nn.health import (
    DEAD_VERDICTS,
    NO_HIDDEN_LAYER,
    VERDICTS,
    InitHealth,
    assess,
    hidden_activations,
    init_health,
)
from tuner.nn.models import ACTIVATIONS, ModelSpec, cnn, mlp, weight_layers
from tuner.nn.schemes import apply_init, random_schemes

ROWS, FEATURES, WIDTH, CLASSES = 256, 8, 16, 3
IMAGE = (1, 8, 8)
FUNCTIONS = {"relu": torch.relu, "tanh": torch.tanh}
CASES = [(s, a) for s in random_schemes() for a in ("relu", "tanh")]


def _x(features: int = FEATURES) -> torch.Tensor:
    return torch.randn(ROWS, features, generator=torch.Generator().manual_seed(0))


def _copy_weights(src: nn.Module, dst: nn.Module) -> nn.Module:
    pairs = list(zip(weight_layers(src), weight_layers(dst), strict=True))
    with torch.no_grad():
        for a, b in pairs:
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
    return dst


# --------------------------------------------------------------------- the MLP, three ways
class ModuleMLP(nn.Module):
    """3 hidden layers, an activation module after each."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(FEATURES, WIDTH), nn.Linear(WIDTH, WIDTH)
        self.fc3, self.head = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, CLASSES)
        make = ACTIVATIONS.get(activation).make
        self.act1, self.act2, self.act3 = make(), make(), make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act3(self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))))


class FunctionalMLP(nn.Module):
    """The same network, its activations applied in ``forward`` (no activation module)."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(FEATURES, WIDTH), nn.Linear(WIDTH, WIDTH)
        self.fc3, self.head = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, CLASSES)
        self.f = FUNCTIONS[activation]

    def signals(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each hidden layer's output after its activation, computed by hand."""
        h1 = self.f(self.fc1(x))
        h2 = self.f(self.fc2(h1))
        return [h1, h2, self.f(self.fc3(h2))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.signals(x)[-1])


def mlp_three_ways(scheme: str, activation: str) -> list[nn.Module]:
    torch.manual_seed(0)
    sequential = apply_init(mlp(ModelSpec(FEATURES, CLASSES, None, 3, WIDTH, activation)),
                            scheme, activation)
    return [_copy_weights(sequential, FunctionalMLP(activation)),
            _copy_weights(sequential, ModuleMLP(activation)), sequential]


# ------------------------------------------------------------------- a residual block net
class ResidualNet(nn.Module):
    """``h0 = f(fc_in x)``, ``h1 = f(fc1 h0)``, ``h2 = f(h0 + fc2 h1)``, then a head."""

    def __init__(self, activation: str, modules: bool) -> None:
        super().__init__()
        self.fc_in, self.fc1 = nn.Linear(FEATURES, WIDTH), nn.Linear(WIDTH, WIDTH)
        self.fc2, self.head = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, CLASSES)
        self.f = ACTIVATIONS.get(activation).make() if modules else FUNCTIONS[activation]

    def signals(self, x: torch.Tensor) -> list[torch.Tensor]:
        h0 = self.f(self.fc_in(x))
        h1 = self.f(self.fc1(h0))
        return [h0, h1, self.f(h0 + self.fc2(h1))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.signals(x)[-1])


def residual_two_ways(scheme: str, activation: str) -> list[nn.Module]:
    torch.manual_seed(0)
    functional = apply_init(ResidualNet(activation, modules=False), scheme, activation)
    return [functional, _copy_weights(functional, ResidualNet(activation, modules=True))]


# ----------------------------------------------------------------------------- a conv net
class FunctionalCNN(nn.Module):
    """The built-in ``cnn`` (depth 2) with its activations and pooling applied in ``forward``."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc, self.head = nn.Linear(32 * 2 * 2, WIDTH), nn.Linear(WIDTH, CLASSES)
        self.f = FUNCTIONS[activation]

    def signals(self, x: torch.Tensor) -> list[torch.Tensor]:
        """What each next layer receives: pooled channel maps, then the dense layer's units."""
        h1 = F.max_pool2d(self.f(self.conv1(x.view(-1, *IMAGE))), 2)  # (rows, 16, 4, 4)
        h2 = F.max_pool2d(self.f(self.conv2(h1)), 2)  # (rows, 32, 2, 2)
        return [h1, h2, self.f(self.fc(h2.flatten(1)))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.signals(x)[-1])


def cnn_two_ways(scheme: str, activation: str) -> list[nn.Module]:
    torch.manual_seed(0)
    spec = ModelSpec(FEATURES * FEATURES, CLASSES, IMAGE, 2, WIDTH, activation)
    sequential = apply_init(cnn(spec), scheme, activation)
    return [_copy_weights(sequential, FunctionalCNN(activation)), sequential]


NETS = {"mlp": (mlp_three_ways, FEATURES), "residual": (residual_two_ways, FEATURES),
        "cnn": (cnn_two_ways, FEATURES * FEATURES)}


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize(("scheme", "activation"), CASES)
def test_every_way_of_writing_a_network_gets_the_same_probe(net, scheme, activation):
    build, features = NETS[net]
    x = _x(features)
    models = build(scheme, activation)
    with torch.no_grad():
        expected = models[0].signals(x)  # by hand, no hooks
    by_hand = assess(expected, activation)
    for model in models:
        acts = hidden_activations(model, x)
        assert len(acts) == 3, type(model).__name__
        for got, want in zip(acts, expected, strict=True):
            assert got.shape[:2] == want.shape[:2], "units: features or conv channels"
            assert torch.equal(got.flatten(1), want.flatten(1))
        health = init_health(model, x, activation)
        assert health.verdict == by_hand.verdict, (type(model).__name__, health.reason)
        assert health.reason == by_hand.reason
        assert health.layer_std == pytest.approx(by_hand.layer_std, rel=1e-6, abs=1e-12)
        assert health.layer_saturated == pytest.approx(by_hand.layer_saturated)
    if scheme in ("zeros", "constant"):
        assert by_hand.verdict == "symmetric", by_hand.reason


def test_zeros_on_a_functional_net_is_symmetric():
    """Seen: ``torch.relu(self.fc1(x))`` has no activation module, so the probe saw no layer
    and called a zeros init healthy; it trains to chance."""
    model = mlp_three_ways("zeros", "relu")[0]
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    health = init_health(model, _x(), "relu")
    assert health.verdict == "symmetric" and health.dead
    assert health.layer_std == [0.0, 0.0, 0.0]
    assert "hidden layer 1" in health.reason


def test_saturation_is_measured_after_the_activation():
    """tanh with N(0, 1) weights on a functional net: what the next layer receives sits at ±1."""
    model = mlp_three_ways("large_normal", "tanh")[0]
    assert all(a.abs().max() <= 1 for a in hidden_activations(model, _x())), "tanh's outputs"
    health = init_health(model, _x(), "tanh")
    assert health.verdict == "saturated", health.reason
    assert all(s > 0.4 for s in health.layer_saturated)


class NoHiddenLayer(nn.Module):
    """Holds weight layers its forward never calls (it uses their weights directly)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(FEATURES, WIDTH), nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(F.linear(x, self.fc1.weight, self.fc1.bias))
        return F.linear(h, self.fc2.weight, self.fc2.bias)


class TwoHeads(nn.Module):
    """Two weight layers side by side on the same input: still no hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(FEATURES, CLASSES), nn.Linear(FEATURES, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x.flatten(1))


@pytest.mark.parametrize("make", [lambda: nn.Linear(FEATURES, CLASSES), NoHiddenLayer, TwoHeads],
                         ids=["single_linear", "never_calls_its_layers", "two_heads"])
@pytest.mark.parametrize("scheme", ["zeros", "kaiming_normal"])
def test_a_network_the_probe_cannot_see_into_is_unknown_not_healthy(make, scheme):
    torch.manual_seed(0)
    model = apply_init(make(), scheme, "relu")
    assert hidden_activations(model, _x()) == []
    health = init_health(model, _x(), "relu")
    assert health.verdict == "unknown" and health.reason == NO_HIDDEN_LAYER
    assert not health.healthy and not health.dead
    assert health.layer_std == []


def test_no_hidden_layer_still_hears_a_measured_gradient():
    # a measured healthy gradient cannot stand in for the unseen layers: still unknown
    assert assess([], "relu", first_grad=0.1).verdict == "unknown"
    dead = assess([], "relu", first_grad=1e-5)
    assert dead.verdict == "vanishing_gradient" and dead.dead


def test_verdicts_and_which_are_dead():
    assert VERDICTS[0] == "healthy" and VERDICTS[-1] == "unknown"
    assert set(DEAD_VERDICTS) == set(VERDICTS) - {"healthy", "unknown"}
    assert [InitHealth(v, "").dead for v in VERDICTS] == [v in DEAD_VERDICTS for v in VERDICTS]


def test_a_second_reader_of_the_same_hidden_signal_is_one_layer():
    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(FEATURES, WIDTH)
            self.a, self.b = nn.Linear(WIDTH, CLASSES), nn.Linear(WIDTH, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.fc(x))
            return self.a(h) + self.b(h)

    model = Branches()
    (h,) = hidden_activations(model, _x())
    assert torch.equal(h, torch.tanh(model.fc(_x())).detach())


def test_dropout_does_not_hide_a_symmetric_init():
    """A train-mode dropout mask after each activation would make identical units differ;
    the probe switches dropout off for its pass and back on after it."""
    torch.manual_seed(0)
    model = apply_init(nn.Sequential(nn.Linear(FEATURES, WIDTH), nn.ReLU(), nn.Dropout(0.5),
                                     nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Dropout(0.5),
                                     nn.Linear(WIDTH, CLASSES)), "constant", "relu")
    assert init_health(model, _x(), "relu").verdict == "symmetric"
    assert all(m.training for m in model.modules())
