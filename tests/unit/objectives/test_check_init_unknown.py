"""``ctx.check_init`` on networks the probe can and cannot see into: a functional net's dead
init is pruned, an ``unknown`` verdict never is (it is stored with its reason)."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

from tuner.core.keys import INIT_LAYER_STD, INIT_REASON, INIT_VERDICT
from tuner.nn.health import NO_HIDDEN_LAYER
from tuner.objectives.context import ObjectiveContext


class FunctionalNet(nn.Module):
    """Two hidden layers, ``torch.relu`` applied in ``forward``: no activation module."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _trial() -> tuple[ObjectiveContext, optuna.Trial]:
    ctx = ObjectiveContext(settings={"prune_dead_inits": True}, space=None)  # type: ignore[arg-type]
    return ctx, optuna.create_study().ask()


def _zeros(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        nn.init.zeros_(p)
    return model


def test_a_zeros_functional_net_is_pruned_as_symmetric():
    ctx, trial = _trial()
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    with pytest.raises(optuna.TrialPruned, match=r"^dead init \(symmetric\): "):
        ctx.check_init(trial, _zeros(FunctionalNet()), x, y=y)
    assert trial.user_attrs[INIT_LAYER_STD] == [0.0, 0.0]


@pytest.mark.parametrize("with_targets", [False, True])
def test_an_unknown_verdict_is_stored_and_never_pruned(with_targets):
    ctx, trial = _trial()
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = _zeros(nn.Linear(4, 3))  # no hidden layer (and a zeros init is fine for it)
    verdict = ctx.check_init(trial, model, x, y=y if with_targets else None)
    assert verdict.verdict == "unknown" and not verdict.dead
    assert trial.user_attrs[INIT_VERDICT] == "unknown"
    assert trial.user_attrs[INIT_REASON] == NO_HIDDEN_LAYER
    assert trial.user_attrs[INIT_LAYER_STD] == []
