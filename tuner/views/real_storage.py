"""optuna-dashboard's own views with real batch sizes: :class:`RealParamsStorage` hands the
dashboard trials whose ``batch_size_log2: 5`` reads ``batch_size: 32`` on an integer log-scale
distribution (16..256), by :func:`tuner.views.real_params.real_params`'s rule. The stored study
keeps the exponent: the samplers go on learning it.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from tuner.core.keys import LOG2_SUFFIX, RESERVED_PREFIX
from tuner.views.real_params import pow2_names, real_params

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy

# a system attribute on a trial handed out with real values (never stored: see create_new_trial)
SHOWN_AS_REAL = "tuner:shown_as_real"


def real_trial(trial: FrozenTrial) -> FrozenTrial:
    """A copy of ``trial`` with real names and values (see :func:`real_params`); each exponent's
    distribution ``low..high`` becomes the integer log-scale ``2**low..2**high``. ``trial``
    itself is unchanged; one without such a parameter is returned as it is."""
    pow2 = pow2_names(trial)
    if not pow2:
        return trial
    dists: dict[str, BaseDistribution] = {}
    for k, d in trial.distributions.items():
        if k in pow2:
            assert isinstance(d, IntDistribution)
            dists[k.removesuffix(LOG2_SUFFIX)] = IntDistribution(2 ** d.low, 2 ** d.high, log=True)
        else:
            dists[k] = d
    shown = copy.copy(trial)
    shown._params = real_params(trial)
    shown._distributions = dists
    shown._system_attrs = {**trial.system_attrs, SHOWN_AS_REAL: pow2}
    return shown


def stored_trial(trial: FrozenTrial) -> FrozenTrial:
    """The inverse of :func:`real_trial`, for a trial the dashboard writes back (renaming a
    study copies its trials): the exponents as the samplers stored them."""
    pow2 = trial.system_attrs.get(SHOWN_AS_REAL)
    if not pow2:
        return trial
    params: dict[str, Any] = {}
    dists: dict[str, BaseDistribution] = {}
    for k, v in trial.params.items():
        d = trial.distributions[k]
        if k + LOG2_SUFFIX in pow2:
            assert isinstance(d, IntDistribution)
            k, v = k + LOG2_SUFFIX, int(v).bit_length() - 1
            d = IntDistribution(d.low.bit_length() - 1, d.high.bit_length() - 1)
        params[k], dists[k] = v, d
    stored = copy.copy(trial)
    stored._params, stored._distributions = params, dists
    stored._system_attrs = {k: v for k, v in trial.system_attrs.items() if k != SHOWN_AS_REAL}
    return stored


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: RealParamsStorage, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


def _delegating(cls: type[RealParamsStorage]) -> type[RealParamsStorage]:
    """Give ``cls`` every abstract storage method it does not define, passed to ``_inner``."""
    for name in BaseStorage.__abstractmethods__:
        if name not in vars(cls):
            setattr(cls, name, _delegate(name))
    return abc.update_abstractmethods(cls)


@_delegating
class RealParamsStorage(BaseStorage):
    """``inner`` with its trials read through :func:`real_trial`. Every write goes to ``inner``
    unchanged, except a trial copied from one handed out here, which is stored with its
    exponents again."""

    def __init__(self, inner: BaseStorage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:  # RDBStorage's extras (remove_session, ...)
        return getattr(self._inner, name)

    def get_all_studies(self) -> list[FrozenStudy]:  # not tuner's own (the pool's record)
        return [s for s in self._inner.get_all_studies()
                if not s.study_name.startswith(RESERVED_PREFIX)]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return real_trial(self._inner.get_trial(trial_id))

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Any = None) -> list[FrozenTrial]:
        return [real_trial(t) for t in self._inner.get_all_trials(study_id, deepcopy, states)]

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is not None:
            template_trial = stored_trial(template_trial)
        return self._inner.create_new_trial(study_id, template_trial)
