"""The objective toolkit: what every objective ``fn(trial, ctx)`` gets in ``ctx``.

Everything tuner knows about a trial is here, for the built-in ``classifier`` and a user's own
PyTorch model alike::

    def objective(trial, ctx):
        hp = ctx.suggest(trial)                        # lr (log), batch_size (2^k), init …
        data = ctx.load_data()                         # [objective] dataset on ctx.device
        model = MyNet().to(ctx.device)
        ctx.init(model, hp["init"], activation="relu")
        ctx.check_init(trial, model, data.x_val[:256], y=data.y_val[:256])  # dead: pruned
        for epoch in range(1, epochs + 1):
            ...                                        # any loop, or tuner.nn.training.train
            ctx.report(trial, epoch, val_acc, train_loss=tl, val_loss=vl)
        return val_acc

The loop that calls the objective ends every trial with :meth:`ObjectiveContext.finish_trial`:
its learning curve is stored (user attribute ``curve``) and its two pictures saved to the
artifact store (:mod:`tuner.store.artifacts`). A wrong call (an unknown scheme, a model that cannot
take ``x``, a non-finite value) raises :class:`~tuner.core.errors.ToolkitError` naming the call and
the value; it fails that trial only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from torch import nn

from tuner.core.errors import CheckpointError, ConfigError, ToolkitError
from tuner.core.keys import CURVE, PRUNE_REASON, UNTRAINED_VALUE
from tuner.nn import health
from tuner.nn.checkpoint import copy_matching, read_checkpoint
from tuner.nn.data import Dataset, load_dataset
from tuner.nn.device import use_device
from tuner.nn.diagnostics import layer_stats
from tuner.nn.health import hidden_activations
from tuner.nn.models import ACTIVATIONS, infer_activation, weight_layers
from tuner.nn.schemes import SCHEMES
from tuner.nn.training import evaluate_rows
from tuner.objectives.records import save_pictures, store_verdict
from tuner.objectives.shared import dataset_settings
from tuner.search.report_steps import report_steps
from tuner.search.space import SearchSpace
from tuner.store import artifacts
from tuner.store.drawn import drawn_together


@dataclass
class _TrialRecord:
    """What the toolkit gathered on one running trial, written when it ends."""

    hp: dict[str, Any] = field(default_factory=dict)
    curve: dict[str, list[float]] = field(default_factory=dict)
    init_layers: list[Any] | None = None
    prune_reason: str | None = None


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The seed of one trial: a function of the study seed and trial number only."""
    return (study_seed * 1_000_003 + trial_number * 7_919 + 12_345) % (2**31 - 1)


@dataclass
class ObjectiveContext:
    """Everything an objective gets besides the trial.

    ``settings``: the ``[objective]`` table without ``name`` (validated, defaults filled);
    ``space``: the ``[space]`` table parsed; ``seed``: the study seed; ``metric``: the name of
    the value the objective returns; ``cache``: per-process state (datasets, the artifact sink).
    """

    settings: dict[str, Any]
    space: SearchSpace
    seed: int = 0
    metric: str = "value"
    pruner: str = ""  # the study's pruner by name (for prune reasons)
    metrics: tuple[str, ...] = ()  # every objective, in order (several: [study] metrics)
    cache: dict[str, Any] = field(default_factory=dict)
    _records: dict[int, _TrialRecord] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ what a trial draws
    @property
    def device(self) -> torch.device:
        """The training device: ``--device``, else ``[objective] device``, else CUDA when
        present (and usable), else the CPU. A GPU ``cuda:N`` is made this process's current CUDA
        device too (:func:`tuner.nn.device.use_device`)."""
        return use_device(self.settings.get("device", "auto"))

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw every ``[space]`` parameter for ``trial`` (fixed ones included) as
        ``{name: value}``; ``batch_size`` is the real power of two, ``lr`` drawn on a log scale
        (see :mod:`tuner.objectives.shared`). Asking again returns the same values."""
        with drawn_together(trial):  # one transaction for all of them
            hp = self.space.suggest(trial)
        self._record(trial).hp = dict(hp)
        return hp

    def trial_seed(self, trial: optuna.Trial) -> int:
        """A seed for ``trial``'s own randomness (a function of the study seed and the trial
        number, so a rerun of the study reproduces its trials)."""
        return trial_seed(self.seed, trial.number)

    def load_data(self) -> Dataset:
        """The ``[objective] dataset`` (a built-in, ``csv`` or ``npz``) as tensors on
        :attr:`device`: ``x_train (n, features)``, ``y_train``, ``x_val``, ``y_val``, ``task``
        and ``n_outputs``. Classification: ``y`` int64 labels, split stratified; regression:
        ``y`` float32 ``(n,)`` or ``(n, k)``, split unstratified. Seeded by the study seed and
        standardised with the training rows' mean and std, exactly as the built-in objectives
        see it. Loaded once per process."""
        if self.settings.get("dataset") is None:
            raise ToolkitError("ctx.load_data(): the study file names no dataset; set "
                               "[objective] dataset (digits, iris, wine, breast_cancer, moons, "
                               "circles, classification, diabetes, regression, csv or npz)")
        device = self.device
        key = f"data:{device}"
        if key not in self.cache:
            try:
                self.cache[key] = load_dataset(self.settings["dataset"], seed=self.seed,
                                               device=str(device),
                                               **dataset_settings(self.settings))
            except ConfigError as e:
                raise ConfigError(f"[objective] {e}") from None
        return self.cache[key]

    @property
    def multi(self) -> bool:
        """Whether the study has several objectives: the objective returns a dict by name
        (or a tuple in :attr:`metrics` order), and nothing is reported to a pruner."""
        return len(self.metrics) > 1

    @staticmethod
    def count_params(model: nn.Module) -> int:
        """The number of trainable parameters of ``model`` (the usual second objective,
        ``n_params``)."""
        if not isinstance(model, nn.Module):
            raise ToolkitError(f"ctx.count_params(model): model must be a torch.nn.Module, got "
                               f"{type(model).__name__}")
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def latency_ms(self, model: nn.Module, x: torch.Tensor, repeats: int = 20) -> float:
        """The median time of one forward pass of ``model`` on ``x`` in milliseconds (eval
        mode, no gradients, after a warm-up pass; synchronised on a GPU): the other usual
        second objective, ``latency_ms``. On a busy CPU it is noisy; prefer a batch of the
        size you will serve."""
        import statistics
        import time

        if not isinstance(model, nn.Module) or not isinstance(x, torch.Tensor):
            raise ToolkitError("ctx.latency_ms(model, x): model must be a torch.nn.Module and x "
                               f"a tensor, got {type(model).__name__} and {type(x).__name__}")
        was_training = model.training
        model.eval()
        sync = (torch.cuda.synchronize if x.device.type == "cuda" else lambda *a: None)
        times = []
        try:
            with torch.no_grad():
                model(x)
                for _ in range(max(1, repeats)):
                    sync()
                    start = time.perf_counter()
                    model(x)
                    sync()
                    times.append((time.perf_counter() - start) * 1000)
        except Exception as e:
            raise ToolkitError(f"ctx.latency_ms(model, x): the model cannot take x of shape "
                               f"{tuple(x.shape)}: {type(e).__name__}: {e}") from None
        finally:
            model.train(was_training)
        return statistics.median(times)

    # ------------------------------------------------------------------ the initial network
    def init(self, model: nn.Module, scheme: str, activation: str | None = None) -> nn.Module:
        """Initialise every ``Linear``/``Conv`` layer of ``model`` in place with the named
        scheme (biases zero) and return it. ``activation`` (relu, tanh, …) matches the gain of
        the gain-aware schemes; ``None`` takes the first activation module found in ``model``.
        ``pretrained`` copies every layer whose name and shape match the ``[objective]
        checkpoint`` (all but the checkpoint's head) and gives the rest a fresh Xavier init."""
        if not isinstance(model, nn.Module):
            raise ToolkitError(f"ctx.init(model, {scheme!r}): model must be a torch.nn.Module, "
                               f"got {type(model).__name__}")
        if scheme not in SCHEMES:
            raise ToolkitError(f"ctx.init(model, {scheme!r}): unknown init scheme {scheme!r}; "
                               f"valid: {', '.join(SCHEMES)}")
        activation = self._activation(model, activation, f"ctx.init(model, {scheme!r})")
        if not weight_layers(model):
            raise ToolkitError(f"ctx.init(model, {scheme!r}): {type(model).__name__} has no "
                               "Linear or Conv layer to initialise")
        if not SCHEMES.get(scheme).from_checkpoint:
            return SCHEMES.get(scheme).apply(model, activation)
        path = self.settings.get("checkpoint")
        if path is None:
            raise ToolkitError(f"ctx.init(model, {scheme!r}): set [objective] checkpoint to a "
                               "file written by 'tuner pretrain'")
        SCHEMES.get("xavier_uniform").apply(model, activation)  # what the checkpoint lacks
        try:
            copied = copy_matching(model, read_checkpoint(path))
        except CheckpointError as e:
            raise ToolkitError(f"ctx.init(model, {scheme!r}): {e}") from None
        if not copied:
            raise ToolkitError(f"ctx.init(model, {scheme!r}): no layer of "
                               f"{type(model).__name__} has the name and shape of one in "
                               f"checkpoint {path}")
        return model

    def check_init(self, trial: optuna.Trial, model: nn.Module, x: torch.Tensor,
                   activation: str | None = None,
                   baseline: Callable[[], float] | None = None, *,
                   y: torch.Tensor | None = None,
                   loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                   lr: float | None = None, steps: int | None = None) -> health.InitHealth:
        """Judge ``model``'s initial weights from one forward pass on ``x (batch, …)`` (a few
        hundred rows) and store the verdict on ``trial`` (user attributes ``init_verdict``,
        ``init_layer_std``, ``init_reason``, ``init_first_grad``); capture the init picture.

        With the targets ``y`` of those rows, one backward pass of ``loss`` (default:
        cross-entropy for integer ``y``, mean squared error otherwise) also measures the
        gradient that reaches the first layer: a vanishing one is a dead init too. With plain
        SGD, give ``lr`` (for momentum m, ``lr / (1 - m)``) and the optimizer ``steps`` of the
        whole training: a gradient too small to move the first layer at that rate is dead.

        With ``y``, the untrained network's value on the study's metric (when tuner knows
        it: ``val_accuracy``, ``val_loss``, ``val_mse``, ``val_rmse``, ``val_mae``, ``val_r2``),
        computed on these rows (``loss`` for ``val_loss``), is stored as ``untrained_value``: a
        study whose every trial ends there learned nothing, and the run says so; a pruned dead
        init reports it as step 0, so it shows in the per-init plot. ``baseline()``, when
        given, is that value instead (e.g. computed on the validation set).

        With ``[objective] prune_dead_inits`` (the default) a dead init (symmetric,
        vanishing, exploding, saturated, vanishing_gradient) raises :class:`optuna.TrialPruned`
        with the reason, before any training. ``activation``: as in :meth:`init`.
        """
        call = "ctx.check_init(trial, model, x)"
        if not isinstance(model, nn.Module) or not isinstance(x, torch.Tensor):
            raise ToolkitError(f"{call}: model must be a torch.nn.Module and x a tensor, got "
                               f"{type(model).__name__} and {type(x).__name__}")
        if y is not None and (not isinstance(y, torch.Tensor) or len(y) != len(x)):
            raise ToolkitError(f"{call}: y must be a tensor of the targets of x's {len(x)} "
                               f"rows, got {type(y).__name__}"
                               f"{f' of {len(y)}' if isinstance(y, torch.Tensor) else ''}")
        if (lr is None) != (steps is None):
            raise ToolkitError(f"{call}: give both lr and steps (plain SGD's reach), or neither")
        activation = self._activation(model, activation, call)
        try:
            acts = hidden_activations(model, x)
            grad = None if y is None else health.first_layer_gradient(model, x, y, loss)
        except Exception as e:
            raise ToolkitError(f"{call}: the model cannot take x of shape {tuple(x.shape)}"
                               f"{'' if y is None else f' and y of shape {tuple(y.shape)}'}: "
                               f"{type(e).__name__}: {e}") from None
        lr_steps = None if lr is None or steps is None else lr * steps
        verdict = health.assess(acts, activation, first_grad=grad, lr_steps=lr_steps)
        record = self._record(trial)
        record.init_layers = [layer_stats(i, a[:artifacts.VAL_ROWS])
                              for i, a in enumerate(acts, start=1)]
        record.hp.setdefault("activation", activation)
        store_verdict(trial, verdict)
        value = baseline() if baseline is not None else self._untrained(model, x, y, loss)
        if math.isfinite(value):  # the end-of-run check for "nothing was learned" reads it
            trial.set_user_attr(UNTRAINED_VALUE, float(value))
        if not verdict.dead or not self.settings.get("prune_dead_inits", True):
            return verdict
        if math.isfinite(value) and not self.multi:  # several metrics: Optuna takes no report
            trial.report(value, step=0)
        raise optuna.TrialPruned(f"dead init ({verdict.verdict}): {verdict.reason}")

    # ------------------------------------------------------------------ during training
    def report(self, trial: optuna.Trial, step: int, value: float, **curve: float) -> None:
        """Record step ``step`` (an epoch, from 1): ``value`` is the study's metric, ``curve``
        any other numbers of that step (every name is stored in the ``curve`` user attribute
        and drawn in the learning-curve picture and the report). ``value`` reaches the pruner
        only at the steps it can act on (:mod:`tuner.search.report_steps`); when it prunes,
        this raises
        :class:`optuna.TrialPruned` with the reason, which the trial keeps."""
        call = f"ctx.report(trial, step={step!r}, value={value!r})"
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ToolkitError(f"{call}: step must be a whole number >= 0")
        for name, v in {"value": value, **curve}.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ToolkitError(f"{call}: {name} must be a finite number, got {v!r}")
        for name, v in {"value": value, **curve}.items():
            if not math.isfinite(v):  # NaN or inf from the training: a divergence, not a bug
                raise optuna.TrialPruned(f"training diverged in step {step} ({name}={v!r} "
                                         "reported; usually the learning rate is too high)")
        record = self._record(trial)
        for name, v in {self.metric: value, **curve}.items():
            record.curve.setdefault(name, []).append(float(v))
        if self.multi or step not in self._report_steps(trial, step):
            return
        trial.report(float(value), step)
        if trial.should_prune():
            by = f" by the {self.pruner} pruner" if self.pruner else ""
            raise optuna.TrialPruned(f"pruned after epoch {step}{by}")

    def _report_steps(self, trial: optuna.Trial, step: int) -> frozenset[int]:
        last = self.settings.get("epochs")
        # Without a known last step, the steps the pruner can act on up to this one.
        max_step = last if isinstance(last, int) and step <= last else step + 1
        key = ("report-steps", id(trial.study.pruner), max_step)
        if key not in self.cache:
            self.cache[key] = report_steps(trial.study.pruner, max_step)
        return self.cache[key]

    # ------------------------------------------------------------------ the end of a trial
    def finish_trial(self, trial: optuna.Trial, prune_reason: str | None = None) -> None:
        """The trial's last writes, by the loop that ran it (never by an objective): why it
        was pruned, its learning curve (one write) and its pictures."""
        record = self._records.pop(trial.number, None) or _TrialRecord()
        reason = prune_reason or record.prune_reason
        if reason is not None:
            trial.set_user_attr(PRUNE_REASON, reason)
        if record.curve:
            trial.set_user_attr(CURVE, record.curve)
        save_pictures(trial, record.hp, record.init_layers, record.curve, self.cache,
                      self.settings.get("artifacts", True), metric=self.metric)

    # ------------------------------------------------------------------ helpers
    def _untrained(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                   loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> float:
        """The study's metric of ``model`` on rows ``x``, ``y`` (NaN: no ``y``, or a metric
        tuner does not compute)."""
        if y is None:
            return math.nan
        task = "regression" if y.is_floating_point() else "classification"
        try:
            return float(evaluate_rows(model, x, y, task, loss).get(self.metric, math.nan))
        except Exception:  # a loss or head that cannot serve a built-in metric: no baseline
            return math.nan

    def _record(self, trial: optuna.Trial) -> _TrialRecord:
        return self._records.setdefault(trial.number, _TrialRecord())

    @staticmethod
    def _activation(model: nn.Module, activation: str | None, call: str) -> str:
        if activation is None:
            return infer_activation(model)
        if activation not in ACTIVATIONS:
            raise ToolkitError(f"{call}: unknown activation {activation!r}; valid: "
                               f"{', '.join(ACTIVATIONS)}")
        return activation
