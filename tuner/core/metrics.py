"""Metric names every layer agrees on: which way each is better, and which task it belongs to.

A study's metric is a name (``val_accuracy``, ``val_mse`` …). The names tuner knows carry their
direction, so ``[study] direction`` is needed only for a name of one's own:

==================================  ===========  ==============================================
name                                direction    task
==================================  ===========  ==============================================
``*accuracy``, ``*_r2``, ``*_auc``  maximize     accuracy: classification; r2: regression
``*_loss``                          minimize     either
``*_mse``, ``*_rmse``, ``*_mae``    minimize     regression
``n_params``, ``*_ms`` (latency)     minimize     either (a model's size and speed)
==================================  ===========  ==============================================
"""

from __future__ import annotations

TASKS = ("classification", "regression")
CLASSIFICATION_METRICS = ("val_accuracy", "val_loss")
REGRESSION_METRICS = ("val_mse", "val_rmse", "val_mae", "val_r2", "val_loss")
_MAXIMIZE = ("accuracy", "_r2", "_auc")
_MINIMIZE = ("_loss", "_mse", "_rmse", "_mae", "_ms", "n_params")
COST_METRICS = ("n_params", "latency_ms")  # what the built-ins measure of the trained model


def natural_direction(metric: str) -> str | None:
    """``"maximize"`` or ``"minimize"`` for a metric name tuner knows (see the module doc),
    else ``None``."""
    name = metric.lower()
    if name in ("loss", "mse", "rmse", "mae", "latency"):
        return "minimize"
    if name in ("accuracy", "r2", "auc"):
        return "maximize"
    if name.endswith(_MAXIMIZE):
        return "maximize"
    if name.endswith(_MINIMIZE):
        return "minimize"
    return None


def metric_task(metric: str) -> str | None:
    """The task a known metric name belongs to (``val_loss``: either, ``None``)."""
    name = metric.lower()
    if name.endswith("accuracy"):
        return "classification"
    if name.endswith(("mse", "rmse", "mae", "r2")):
        return "regression"
    return None

