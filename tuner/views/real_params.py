"""Trials as a person reads them: a power-of-two parameter appears under its real name and value.

The samplers search a power-of-two parameter such as ``batch_size`` as its exponent, stored as
``batch_size_log2`` (2..8), and the objective stores the real value as the trial's ``batch_size``
user attribute (32). Everything tuner shows a person uses the real value: ``show``, ``export`` and
the report through :func:`real_params`, and optuna-dashboard's own views (trial table, parameter
plots, importance) through :class:`tuner.views.real_storage.RealParamsStorage`. The stored study
keeps the exponent: the samplers go on learning it.

:func:`real_params` reads Optuna's FrozenTrial and :mod:`tuner.store.snapshot`'s trials alike,
and this module imports no Optuna.
"""

from __future__ import annotations

from typing import Any

from tuner.core.keys import LOG2_SUFFIX


def pow2_names(trial: Any) -> list[str]:
    """The searched exponents of this trial whose real value it stores and whose real name is
    free: ``batch_size_log2`` (integer steps) with a ``batch_size`` user attribute that is 2 to
    that power, and no parameter called ``batch_size``."""
    names = []
    for name, dist in trial.distributions.items():
        real = name.removesuffix(LOG2_SUFFIX)
        if (real == name or real in trial.params or not _integer_steps(dist)
                or not isinstance(trial.params[name], int)):
            continue
        value = trial.user_attrs.get(real)
        if isinstance(value, int) and not isinstance(value, bool) and (
                value == 2 ** trial.params[name]):
            names.append(name)
    return names


def _integer_steps(dist: Any) -> bool:
    """An integer distribution in steps of 1, not on a log scale (Optuna's or a snapshot's)."""
    return getattr(dist, "step", None) == 1 and getattr(dist, "log", None) is False and \
        isinstance(getattr(dist, "low", None), int)


def real_params(trial: Any) -> dict[str, Any]:
    """A trial's hyperparameters as the user thinks of them: ``batch_size: 32`` instead of its
    searched exponent ``batch_size_log2: 5``, in the order they were suggested."""
    pow2 = set(pow2_names(trial))
    return {(k.removesuffix(LOG2_SUFFIX) if k in pow2 else k):
            (trial.user_attrs[k.removesuffix(LOG2_SUFFIX)] if k in pow2 else v)
            for k, v in trial.params.items()}
