"""What the toolkit writes on a trial besides its values: the init verdict and the pictures.

The user attributes are those the report, ``tuner show`` and the dashboard read
(:mod:`tuner.core.keys`); the pictures are drawn by :mod:`tuner.nn.pictures` and stored by
:mod:`tuner.store.artifacts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from tuner.core.keys import INIT_FIRST_GRAD, INIT_LAYER_STD, INIT_REASON, INIT_VERDICT
from tuner.nn.health import InitHealth
from tuner.nn.pictures import activations_svg, learning_curve_svg
from tuner.store.artifacts import INIT_ACTIVATIONS, LEARNING_CURVE, save_files, sink_for


def store_verdict(trial: optuna.Trial, health: InitHealth) -> None:
    """Store a verdict on ``trial``: user attributes ``init_verdict`` (one of
    :data:`tuner.nn.health.VERDICTS`), ``init_layer_std`` (per hidden layer, input side first),
    ``init_first_grad`` (the first layer's relative gradient, when measured) and, when not
    healthy, ``init_reason``: why the init is dead (``ctx.check_init`` prunes it with that
    reason), or, for ``unknown``, why the probe could not judge it."""
    trial.set_user_attr(INIT_VERDICT, health.verdict)
    trial.set_user_attr(INIT_LAYER_STD, [float(f"{s:.4g}") for s in health.layer_std])
    if health.first_grad is not None and math.isfinite(health.first_grad):
        trial.set_user_attr(INIT_FIRST_GRAD, float(f"{health.first_grad:.4g}"))
    if not health.healthy:
        trial.set_user_attr(INIT_REASON, health.reason)


def save_pictures(trial: optuna.Trial, hp: Mapping[str, Any],
                  init_layers: Sequence[Any] | None, curve: Mapping[str, Sequence[float]],
                  cache: dict[str, Any], enabled: bool = True, metric: str | None = None) -> None:
    """Draw and upload a finished trial's pictures: the initial network's activations
    (``init_layers``, :class:`tuner.nn.diagnostics.LayerStats` per hidden layer; none when the
    objective never checked its init) and the learning curve (none when no step was
    reported), with the study's ``metric`` in its own panel. Nothing is drawn when pictures are
    off or their folder cannot be made."""
    if init_layers is None and not any(curve.values()):
        return
    sink = sink_for(trial, cache, enabled)
    if sink is None:
        return
    n = trial.number
    what = " · ".join(f"{k} {hp[k]}" for k in ("init", "activation") if k in hp)
    files = {}
    if init_layers is not None:
        files[INIT_ACTIVATIONS] = activations_svg(
            list(init_layers), f"trial {n}: activations of the initial network", what)
    if any(curve.values()):
        shown = [f"lr {hp['lr']:.3g}"] if isinstance(hp.get("lr"), float) else []
        shown += [f"batch size {hp['batch_size']}"] if "batch_size" in hp else []
        files[LEARNING_CURVE] = learning_curve_svg(
            curve, f"trial {n}: learning curve", " · ".join([*shown, what] if what else shown),
            metric=metric)
    save_files(sink, trial, files, cache)
