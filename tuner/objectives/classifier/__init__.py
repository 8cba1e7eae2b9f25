"""The built-in objective: train a small classifier and return a validation metric.

A client of the public toolkit (:mod:`tuner.objectives.context`) and the fast loop
(:func:`tuner.nn.training.train`), like any user's objective; it adds its study-file validation
(:func:`validate`, static; :func:`bind`, which loads the data and reads the checkpoint) and a
packer (``--pack``: :mod:`._pack`) on its spec.
"""

from __future__ import annotations

import dataclasses

from tuner.objectives import ObjectiveSpec, PackSpec
from tuner.objectives.classifier._objective import (
    METRICS,
    PARAM_RULES,
    SETTINGS,
    TrialSetup,
    bind,
    check_init,
    classifier,
    metric_of,
    model_spec,
    prepare_trial,
    report_epoch,
    task_of,
    validate,
    validate_regressor,
)
from tuner.objectives.classifier._pack import MOMENTUM, SHARED, group_key, train_members

SPEC = ObjectiveSpec(
    name="classifier", fn=classifier, param_rules=PARAM_RULES, validate=validate, bind=bind,
    metrics=METRICS, task_of=task_of, default_metric="val_loss",
    pack=PackSpec(key=group_key, train=train_members, shared=(*SHARED, MOMENTUM)),
)
# The same objective with a regression's defaults (task regression, dataset diabetes).
REGRESSOR = dataclasses.replace(SPEC, name="regressor", validate=validate_regressor,
                                task_of=lambda settings: task_of(
                                    {"dataset": "diabetes", "task": "regression", **settings}))

__all__ = [
    "METRICS",
    "PARAM_RULES",
    "REGRESSOR",
    "SETTINGS",
    "SPEC",
    "TrialSetup",
    "bind",
    "check_init",
    "classifier",
    "group_key",
    "metric_of",
    "model_spec",
    "prepare_trial",
    "report_epoch",
    "train_members",
    "validate",
]
