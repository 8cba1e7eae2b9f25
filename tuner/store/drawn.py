"""A trial's parameters drawn together, written in one transaction (mixed into
:class:`tuner.store.buffered.BufferedRDBStorage`).

Optuna writes each parameter the moment it is drawn, in a transaction of its own: three or
more commits at the start of every trial, ~0.6 ms each on SQLite and ~1.8 ms on PostgreSQL.
Inside :func:`drawn_together` (``ctx.suggest`` draws the whole ``[space]`` in it) they are
kept and written in one transaction when the block ends, before the trial trains. A process
killed inside the block (while the sampler draws) loses its trial's parameters, as it would
have lost those not yet drawn; the trial is failed and retried as any other. A distribution
that conflicts with the study's is refused when drawn if Optuna's trial cache knows the
study's, else when the block ends, still before any training.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from typing import Any

from optuna.distributions import BaseDistribution, check_distribution_compatibility
from optuna.storages import RDBStorage
from sqlalchemy import insert as sqlalchemy_insert

from tuner.store.pending import Pending, pending_without_commit, updatable_trial
from tuner.store.rdb import uncached

Drawn = tuple[str, float, BaseDistribution, BaseDistribution | None]


class ParamsTogether:
    """The parameters of this process's running trials (``_owned``, from the storage it is
    mixed into), drawn inside :meth:`params_together`, written together at its end."""

    _owned: set[int]
    _copies: dict[int, Any]  # the storage's copies of its running trials
    _call_with_retry: Any

    def _init_drawn(self) -> None:
        self._drawn: dict[int, list[Drawn]] = {}
        self._drawn_system: dict[int, dict[str, Any]] = {}  # set by the sampler as it draws

    @contextlib.contextmanager
    def params_together(self, trial_id: int) -> Iterator[None]:
        if trial_id not in self._owned or trial_id in self._drawn:  # not ours, or nested
            yield
            return
        self._drawn[trial_id] = []
        self._drawn_system[trial_id] = {}
        try:
            yield
        finally:
            drawn = self._drawn.pop(trial_id)
            system = self._drawn_system.pop(trial_id)
            if drawn or system:
                try:
                    self._call_with_retry(_write_params, trial_id, drawn, system)
                except BaseException:  # none written: the copy, which has them, is wrong now
                    self._copies.pop(trial_id, None)
                    raise

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: BaseDistribution,
                         previous_distribution: BaseDistribution | None) -> None:
        drawn = self._drawn.get(trial_id)
        if drawn is None:
            super()._set_trial_param(trial_id, param_name,  # type: ignore[misc]
                                     param_value_internal, distribution, previous_distribution)
            return
        if previous_distribution is not None:
            check_distribution_compatibility(previous_distribution, distribution)
        drawn.append((param_name, param_value_internal, distribution, previous_distribution))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        system = self._drawn_system.get(trial_id)
        if system is None:
            super().set_trial_system_attr(trial_id, key, value)  # type: ignore[misc]
            return
        json.dumps(value)  # what Optuna would refuse, refused now
        system[key] = copy.deepcopy(value)  # e.g. TPE's relative parameters, for the liar

    def overlay_drawn(self, trial: Any) -> None:
        """Add to ``trial`` (as read from the database) the parameters it has drawn, and the
        system attributes set as they were drawn, not yet written."""
        for name, value, distribution, _ in self._drawn.get(trial._trial_id, ()):
            trial._params[name] = distribution.to_external_repr(value)
            trial._distributions[name] = distribution
        trial._system_attrs.update(copy.deepcopy(self._drawn_system.get(trial._trial_id, {})))


def _write_params(storage: RDBStorage, trial_id: int, drawn: list[Drawn],
                  system: dict[str, Any]) -> None:
    """One transaction: the trial's row (is it still running?), one insert of every
    parameter, each checked against the study's distribution as Optuna checks it, and the
    system attributes set while they were drawn; where the cache did not know a parameter's
    distribution in the study, Optuna's own write of each (which looks it up)."""
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session, True) as session:
        if any(previous is None for _, _, _, previous in drawn):
            for name, value, distribution, previous in drawn:
                storage._set_trial_param_without_commit(session, trial_id, name, value,
                                                        distribution, previous)
        else:
            updatable_trial(storage, session, trial_id)
            if drawn:
                session.execute(sqlalchemy_insert(models.TrialParamModel), [
                    {"trial_id": trial_id, "param_name": name, "param_value": value,
                     "distribution_json": distribution_to_json(distribution)}
                    for name, value, distribution, _ in drawn])
        if system:
            pending_without_commit(storage, session, trial_id, Pending(system=system))


@contextlib.contextmanager
def drawn_together(trial: Any) -> Iterator[None]:
    """Inside this block, the parameters ``trial`` draws are written in one transaction at its
    end, when its storage is tuner's RDB storage; elsewhere (in memory, a journal, a
    ``FixedTrial``) it changes nothing."""
    storage = uncached(getattr(trial, "storage", None))
    if isinstance(storage, ParamsTogether):
        with storage.params_together(trial._trial_id):
            yield
    else:
        yield
