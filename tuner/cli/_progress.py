"""Progress of a running study on stderr: a rich bar on a terminal, one line per trial
otherwise (logs, CI)."""

from __future__ import annotations

import time

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tuner.cli._app import err
from tuner.core.keys import FAIL_REASON, PRUNE_REASON
from tuner.views.real_params import real_params


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


class TrialProgress:
    """A :class:`tuner.run.study.ProgressHook` drawing trials done, best value and time."""

    def __init__(self, metric: str | None = None, quiet: bool = False, header: str = "") -> None:
        self.metric = metric  # None: the stored study's own metric, read at start
        self.quiet = quiet
        self.header = header  # printed once the storage is open, so bad input stays one line
        self._bar: Progress | None = None
        self._task = None
        self._started = 0.0
        self._done = 0
        self._total: int | None = None

    _names: list[str] | None = None  # the study's metric names (several objectives)

    def start(self, study: optuna.Study, total: int | None, timeout: float | None) -> None:
        if len(study.directions) > 1:
            self._names = list(study.metric_names or [])
        from tuner.store.studies import study_metric

        self.metric = self.metric or study_metric(study)
        self._started = time.monotonic()
        self._total = total
        if self.header and not self.quiet:
            err.print(self.header)
        if self.quiet or not err.is_terminal:
            return
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("trials · best {task.fields[best]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(study.study_name, total=total, best="—")

    def retotal(self, total: int | None) -> None:
        """This process's trials to run changed (a ``resume --n-trials`` elsewhere grew the
        study's budget)."""
        self._total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def trial_finished(self, trial: FrozenTrial, best: float | None) -> None:
        """One line (or a step of the bar) for ``trial``. ``best`` is the best value of the
        trials that had finished when ``trial`` did (:func:`tuner.run.outcome.finished_by`),
        not of everything the caller's read of the study holds: a trial that finished later
        has its own, later line."""
        finished = trial.state != TrialState.FAIL  # a failed trial is run again: not progress
        self._done += finished
        note = ""
        if trial.state == TrialState.PRUNED:
            note = f" ({trial.user_attrs.get(PRUNE_REASON, 'pruned')})"
        elif trial.state == TrialState.FAIL:
            note = f" ({trial.user_attrs.get(FAIL_REASON, 'failed')})"
        if self._bar is not None:
            self._bar.update(self._task, advance=int(finished), best=_fmt(best))
            if trial.state == TrialState.FAIL:
                self._bar.console.print(f"warning: trial {trial.number} failed{escape(note)}")
            return
        if self.quiet:
            return
        total = f"/{self._total}" if self._total else ""
        elapsed = time.monotonic() - self._started
        if trial.values and len(trial.values) > 1:  # several metrics: each by its name
            names = self._names or [f"value{i}" for i in range(len(trial.values))]
            value = "".join(f" {n}={_fmt(v)}" for n, v in zip(names, trial.values, strict=False))
        else:
            value = f" {self.metric}={_fmt(trial.value)}" if trial.values else ""
        params = ", ".join(f"{k}={_short(v)}" for k, v in real_params(trial).items())
        # Reasons and parameters are data, not rich markup ('[0, inf]' would vanish).
        err.print(escape(
            f"[{self._done}{total}] trial {trial.number} {trial.state.name.lower()}{value}{note}"
            f"{'' if self._names else f'  best={_fmt(best)}'}  elapsed {elapsed:.1f}s  ({params})"
        ))

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _short(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
