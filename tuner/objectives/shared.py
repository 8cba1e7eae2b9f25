"""What every objective shares: the meaning of the common ``[space]`` names and the
``[objective]`` settings the toolkit reads (:class:`tuner.objectives.context.ObjectiveContext`).

A study file means the same by ``lr``, ``batch_size`` and ``init`` whatever its objective:

==============  ==================================================================================
``lr``          a float range, log scale unless ``log = false``
``batch_size``  powers of two, searched as the integer exponent (Optuna stores
                ``batch_size_log2``; the trial's ``batch_size`` user attribute, and what
                ``ctx.suggest`` returns, is the real value)
``init``        names of init schemes (:data:`tuner.nn.schemes.SCHEMES`), for ``ctx.init``
==============  ==================================================================================

Settings under ``[objective]`` the toolkit reads, each checked at load for any objective:
``device`` (auto, cpu, cuda, cuda:N), ``dataset`` and its options (``ctx.load_data()``; ``task``
is one of them: classification or regression),
``epochs`` (the last step, so nothing is reported after it), ``prune_dead_inits`` (default
true), ``artifacts`` (per-trial pictures, default true) and ``checkpoint`` (for ``pretrained``).
An objective's other keys are its own and pass unchecked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner.core.errors import ConfigError
from tuner.core.metrics import TASKS, metric_task
from tuner.core.paths import missing_file_hint, resolve_path
from tuner.nn.data import DATASETS, Dataset, dataset_options, load_dataset
from tuner.nn.device import check_device, check_device_name
from tuner.nn.schemes import SCHEMES
from tuner.search.space import ParamRule
from tuner.search.space_table import near_miss

FLOAT32_MAX = 3.4028234663852886e38  # the training dtype's largest value
SHARED_RULES: dict[str, ParamRule] = {
    "lr": ParamRule(kind="float", low=0.0, low_open=True, log=True, high=FLOAT32_MAX,
                    high_why="the largest float32: training cannot use a larger step",
                    help="learning rate (log scale by default)"),
    "batch_size": ParamRule(kind="pow2", low=1, help="power of two, searched as its exponent"),
    "init": ParamRule(registry=SCHEMES),
}
TOOLKIT_DEFAULTS: dict[str, Any] = {"device": "auto", "prune_dead_inits": True, "artifacts": True}


def check_bool(settings: dict[str, Any], key: str, where: str) -> None:
    """``[objective] key`` must be true or false when given."""
    value = settings.get(key, True)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: [objective] {key} must be true or false, got {value!r}")


def validate_toolkit_settings(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """Check the settings the toolkit reads (see the module doc) for an objective that has no
    validation of its own; returns them with file paths made absolute (relative to the study
    file) and nothing else added (the toolkit reads its defaults itself, and a stored study's
    table stays as it was written). Loads nothing: ``ctx.load_data()`` reads the dataset."""
    out = dict(settings)
    check_device_name(out.get("device", TOOLKIT_DEFAULTS["device"]),
                      f"{where}: [objective] device")
    for key in ("prune_dead_inits", "artifacts"):
        check_bool(out, key, where)
    task = out.get("task")
    if task is not None and task not in TASKS:
        raise ConfigError(f"{where}: [objective] task must be "
                          f"{' or '.join(repr(t) for t in TASKS)}, got {task!r}")
    epochs = out.get("epochs")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or epochs < 1):
        raise ConfigError(f"{where}: [objective] epochs must be a whole number >= 1, "
                          f"got {epochs!r}")
    for key in ("path", "checkpoint"):
        value = out.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: [objective] {key} must be a file name, got {value!r}")
        out[key] = resolve_path(value, where)
    dataset = out.get("dataset")
    if dataset is not None:
        if not isinstance(dataset, str):
            raise ConfigError(f"{where}: [objective] dataset must be a name, got {dataset!r}")
        DATASETS.get(dataset, f"{where}: [objective] dataset")  # unknown: lists the valid ones
        missing = [k for k in DATASETS.get(dataset).required if out.get(k) is None]
        if missing:
            raise ConfigError(f"{where}: [objective] dataset {dataset!r} needs "
                              f"{', '.join(missing)}")
        # Checked although load_dataset checks too: its cache (per path) would serve a file
        # that has gone since. A folder passes here and load_dataset says so.
        if out.get("path") is not None and not Path(out["path"]).exists():
            raise ConfigError(f"{where}: [objective] dataset file {out['path']} does not exist"
                              f"{missing_file_hint(where)}")
    return out


TOOLKIT_KEYS = ("device", "dataset", "epochs", "prune_dead_inits", "artifacts", "checkpoint")


def refuse_toolkit_typos(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """``settings`` of an objective without validation of its own, or a ConfigError for a key
    that is a typo of one the toolkit reads (``epoch``, ``targt``, ``tsak``): it would pass as
    the objective's own and the setting meant would silently not apply."""
    dataset = settings.get("dataset")
    known = [*TOOLKIT_KEYS, *(dataset_options(dataset) if dataset in DATASETS else
                              dataset_options("csv"))]
    for key, value in settings.items():
        if key in known:
            continue
        close = near_miss(key, known)
        if close is not None:
            raise ConfigError(f"{where}: [objective] {key} = {value!r}: did you mean {close!r}? "
                              f"(the toolkit reads {close}; a key of your own objective must "
                              "not be this close to one)")
    return settings


def bind_toolkit_settings(settings: dict[str, Any], where: str) -> Dataset | None:
    """The binding phase of the toolkit's settings, for every objective: the device they name
    exists here (a CUDA device is probed), and a named dataset loads and serves its task (a
    missing column, a bad cell, one class only: one error before anything is stored).
    Returns the dataset (on the CPU; ``ctx.load_data()`` reads it back from the per-process
    cache), or ``None`` when the settings name none. The checkpoint is read by ``ctx.init``."""
    check_device(settings.get("device", TOOLKIT_DEFAULTS["device"]),
                 f"{where}: [objective] device")
    return bind_dataset(settings, where)


def bind_dataset(settings: dict[str, Any], where: str) -> Dataset | None:
    """The dataset the settings name, loaded and checked (on the CPU, cached per process), or
    ``None`` when they name none."""
    if settings.get("dataset") is None:
        return None
    try:
        return load_dataset(settings["dataset"], seed=0, device="cpu",
                            **dataset_settings(settings))
    except ConfigError as e:
        raise ConfigError(f"{where}: [objective] {e}") from None


def check_metric_task(metric: str, data: Dataset | None, where: str) -> None:
    """A built-in's metric fits the task its data turned out to have (a CSV target decides it
    only when read): ``val_mse`` of a classification is an error asking for ``task``."""
    wanted = metric_task(metric)
    if data is None or wanted is None or wanted == data.task:
        return
    raise ConfigError(
        f"{where}: [study] metric {metric!r} is a {wanted} metric, but dataset {data.name!r} is "
        f"a {data.task} task (its target); set [objective] task = \"{wanted}\" or choose a "
        f"{data.task} metric"
    )


def dataset_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The options of ``settings["dataset"]`` found in ``settings`` (the rest is not the
    dataset's: the objective's own keys, device, epochs …)."""
    return {k: settings[k] for k in dataset_options(settings["dataset"]) if k in settings}
