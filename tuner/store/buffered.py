"""Buffered writes of the trials a process runs: one transaction per trial instead of ~15.

A trial writes a dozen user attributes (batch size, init verdict, curve, reasons …), an
intermediate value per pruning step and its pictures' artifact ids, each its own transaction
in Optuna's RDB storage: on SQLite each commit is a synced write, and together they doubled a
quickstart trial's time. :class:`BufferedRDBStorage` keeps those writes for the RUNNING trials
this process created (or took from the queue) in memory and writes them in one transaction:

* when the trial finishes, in the same transaction as its state (a trial shown as finished
  has all of them),
* and at most :data:`FLUSH_S` seconds after the first unwritten one, so that other processes
  (a dashboard, ``tuner show``) follow a long trial's curve as it goes.

Reads through this storage see the unwritten values (the pruner reads the trial's own
intermediate values, Optuna reads the last one of a pruned trial). A running trial's reads of
itself (Optuna reads it at its start, at every pruning check and at its tell: ~3 reads, 6 ms
of a quickstart trial on SQLite) are answered from this process's copy of it, which every
write of the trial updates; the database is read again when :data:`FLUSH_S` seconds have
passed since the last read. So a trial another process declared dead learns it, with Optuna's
``UpdateFinishedTrialError``, at its next write (its buffered values, its end) or at its first
read of itself :data:`FLUSH_S` seconds after the last one. Optuna's trial cache reads the
study's unfinished and new trials several times per trial (its ask, the sampler, tuner's
budget count): one light query of their ids and states comes first, and this process's own
running trials, and those it has just finished (kept as written, with the end time it stored,
until the cache has them), are answered from here; of other processes' trials, only
those that changed are read in full (:mod:`tuner.store.incremental`). Another process sees
them only once written, which changes no pruning decision: pruners compare with *finished*
trials. System attributes stay immediate, except artifact ids: samplers and the grid use
them across processes. A process killed mid-trial loses only its running trials' unwritten
values; those trials are failed and retried as before (:mod:`tuner.store.heartbeats`).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from tuner.store.drawn import ParamsTogether
from tuner.store.incremental import MAX_LIGHT, IncrementalReads
from tuner.store.pending import Pending, as_ended, finish_with_pending, write_pending
from tuner.store.rdb import ResilientRDBStorage

FLUSH_S = 5.0  # a running trial's writes reach other processes at least this often
KEEP_FINISHED = 64  # trials just finished, kept until Optuna's cache reads them (a bound)
_BUFFERED_SYSTEM_PREFIX = "artifacts:"  # Optuna's key for an uploaded artifact's id

log = logging.getLogger("tuner")


class BufferedRDBStorage(IncrementalReads, ParamsTogether, ResilientRDBStorage):
    """:class:`ResilientRDBStorage` that writes its own running trials' attributes and
    intermediate values in one transaction (see the module doc), and the parameters drawn
    together in one (:mod:`tuner.store.drawn`)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._init_buffer()

    def _init_buffer(self) -> None:
        self._init_drawn()
        self._init_incremental()
        self._owned: set[int] = set()
        self._pending: dict[int, Pending] = {}
        # an owned trial as last read or written, and when the database was last read for it
        self._copies: dict[int, tuple[FrozenTrial, float]] = {}
        # trials this process just finished, as stored: until Optuna's trial cache has read them
        self._finished: dict[int, FrozenTrial] = {}
        self._buffer_lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for key in ("_owned", "_pending", "_copies", "_finished", "_drawn", "_drawn_system",
                    "_read_for", "_autocommit", "_buffer_lock"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._init_buffer()

    # -- which trials are buffered: the RUNNING ones this process began
    def _create_new_trial(self, study_id: int,
                          template_trial: FrozenTrial | None = None) -> FrozenTrial:
        frozen = super()._create_new_trial(study_id, template_trial)
        if frozen.state == TrialState.RUNNING:
            with self._buffer_lock:
                self._owned.add(frozen._trial_id)
                self._copies[frozen._trial_id] = (copy.deepcopy(frozen), time.monotonic())
        return frozen

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        try:
            pending = self._pending.get(trial_id) if state.is_finished() else None
            held = self._copy_of(trial_id) if state.is_finished() else None
            if held is not None:
                held = copy.deepcopy(held)
                if pending is not None:
                    pending.overlay(held)
            ended = None
            if trial_id in self._owned and state.is_finished():
                with self._buffer_lock:  # its values and its end: one transaction
                    ended = self._call_with_retry(finish_with_pending, trial_id,
                                                  pending or Pending(), state, values)
                done = ended is not None
            else:
                if trial_id in self._owned:
                    self.flush(trial_id)
                done = super().set_trial_state_values(trial_id, state, values)
        except Exception:
            if trial_id in self._owned:
                self._forget(trial_id)  # e.g. failed by another process as stale: not ours now
            raise
        with self._buffer_lock:
            if state == TrialState.RUNNING and done:  # a queued trial this process now runs
                self._owned.add(trial_id)
            elif state.is_finished():
                self._forget(trial_id)
        if held is not None and ended is not None:  # ended: done, by this process's write
            try:
                self._keep_finished(held, state, values, ended)
            except Exception:  # the trial has ended all the same; it is read back when asked
                log.debug("trial %d: not kept after its end", held.number, exc_info=True)
        return done

    def _keep_finished(self, trial: FrozenTrial, state: TrialState, values: Any,
                       ended: Any) -> None:
        """Keep ``trial`` (the copy of a trial this process just finished, with its buffered
        values) as the database now holds it: Optuna reads it back at its tell and its trial
        cache once more; both are answered from here. A finished trial cannot change, and
        ``ended`` is its end time as stored."""
        as_ended(trial, state, values, ended)
        with self._buffer_lock:
            self._finished[trial._trial_id] = trial
            while len(self._finished) > KEEP_FINISHED:
                del self._finished[next(iter(self._finished))]

    def _forget(self, trial_id: int) -> None:
        with self._buffer_lock:
            self._owned.discard(trial_id)
            self._pending.pop(trial_id, None)
            self._copies.pop(trial_id, None)

    def _copy_of(self, trial_id: int) -> FrozenTrial | None:
        """This process's copy of its running trial, or ``None`` (none, or due a real read)."""
        held = self._copies.get(trial_id)
        if held is None or time.monotonic() - held[1] >= FLUSH_S:
            return None
        return held[0]

    # -- the buffered writes
    def _buffer(self, trial_id: int) -> Pending:
        pending = self._pending.get(trial_id)
        if pending is None:
            pending = self._pending[trial_id] = Pending()
        return pending

    def _due(self, trial_id: int) -> None:
        pending = self._pending.get(trial_id)
        if pending is not None and time.monotonic() - pending.since >= FLUSH_S:
            self.flush(trial_id)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id not in self._owned:
            return super().set_trial_user_attr(trial_id, key, value)
        json.dumps(value)  # what Optuna would refuse, refused now rather than at the flush
        with self._buffer_lock:
            self._buffer(trial_id).user[key] = value
            self._due(trial_id)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id not in self._owned or not key.startswith(_BUFFERED_SYSTEM_PREFIX):
            super().set_trial_system_attr(trial_id, key, value)
            with self._buffer_lock:
                held = self._copies.get(trial_id)
                if held is not None:
                    held[0]._system_attrs[key] = copy.deepcopy(value)
            return None
        json.dumps(value)
        with self._buffer_lock:
            self._buffer(trial_id).system[key] = value
            self._due(trial_id)

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        if trial_id not in self._owned:
            return super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        value = float(intermediate_value)  # Optuna stores floats (inf and nan included)
        with self._buffer_lock:
            self._buffer(trial_id).intermediate[int(step)] = value
            self._due(trial_id)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: Any, previous_distribution: Any) -> None:
        super()._set_trial_param(trial_id, param_name, param_value_internal, distribution,
                                 previous_distribution)
        with self._buffer_lock:
            held = self._copies.get(trial_id)
            if held is not None:
                held[0]._params[param_name] = distribution.to_external_repr(param_value_internal)
                held[0]._distributions[param_name] = distribution

    def flush(self, trial_id: int | None = None) -> None:
        """Write the unwritten values of ``trial_id`` (default: of every trial) now, each
        trial's in one transaction."""
        with self._buffer_lock:
            ids = [trial_id] if trial_id is not None else list(self._pending)
            for tid in ids:
                pending = self._pending.get(tid)
                if pending is None:
                    continue
                self._call_with_retry(write_pending, tid, pending)
                del self._pending[tid]
                held = self._copies.get(tid)
                if held is not None:
                    pending.overlay(held[0])  # written now: part of the trial as stored

    # -- reads see the unwritten values
    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._buffer_lock:
            held = self._finished.get(trial_id)
            if held is None:
                held = self._copy_of(trial_id)
            trial = copy.deepcopy(held) if held is not None else None
        if trial is None:
            trial = super().get_trial(trial_id)
            self.overlay_drawn(trial)
            if trial_id in self._owned and trial.state.is_finished():
                # Another process declared this process's trial dead (no heartbeat in time).
                # Its unwritten values are void; the trial learns it here or at its next write.
                self._forget(trial_id)
                raise UpdateFinishedTrialError(
                    f"trial {trial.number} was finished ({trial.state.name}) by another process")
            with self._buffer_lock:
                if trial_id in self._owned:
                    self._copies[trial_id] = (copy.deepcopy(trial), time.monotonic())
        pending = self._pending.get(trial_id)
        if pending is not None:
            with self._buffer_lock:
                pending.overlay(trial)
        return trial

    def _get_trials(self, study_id: int, states: Any, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        if (states is None and trial_id_greater_than > -1  # Optuna's trial cache: light
                and len(included_trial_ids) <= MAX_LIGHT):
            trials = self._read_incremental(
                study_id, included_trial_ids, trial_id_greater_than,
                lambda ids, upto: super(BufferedRDBStorage, self)._get_trials(study_id, None,
                                                                              ids, upto))
        else:
            trials = super()._get_trials(study_id, states, included_trial_ids,
                                         trial_id_greater_than)
            if self._finished:  # read in full: no longer needed
                with self._buffer_lock:
                    for trial in trials:
                        self._finished.pop(trial._trial_id, None)
        if self._drawn:
            for trial in trials:
                self.overlay_drawn(trial)
        if self._pending:
            with self._buffer_lock:
                for trial in trials:
                    pending = self._pending.get(trial._trial_id)
                    if pending is not None:
                        pending.overlay(trial)
        return trials

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).user_attrs

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).system_attrs
