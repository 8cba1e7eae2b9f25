"""tuner: hyperparameter tuning for small neural networks, on Optuna and PyTorch.

The library does the work; the ``tuner`` CLI is a thin shell over it::

    from tuner import load_config, run
    result = run(load_config("studies/quickstart.toml"))
    print(result.best_trial.params)
"""

from __future__ import annotations

from tuner.core.version import __version__

# Loaded on first use (PEP 562), so that ``import tuner`` (and the ``tuner`` command, which
# must answer Ctrl-C while torch and Optuna are still importing) starts light.
_EXPORTS = {
    "StudyConfig": "tuner.run.config", "config_from_dict": "tuner.run.config",
    "load_config": "tuner.run.config",
    "CheckpointError": "tuner.core.errors", "ConfigError": "tuner.core.errors",
    "ObjectiveError": "tuner.core.errors", "StorageError": "tuner.core.errors",
    "StudyNotFoundError": "tuner.core.errors", "TunerError": "tuner.core.errors",
    "open_study": "tuner.store.studies", "resume": "tuner.run.study", "run": "tuner.run.study",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CheckpointError",
    "ConfigError",
    "ObjectiveError",
    "StorageError",
    "StudyConfig",
    "StudyNotFoundError",
    "TunerError",
    "__version__",
    "config_from_dict",
    "load_config",
    "open_study",
    "resume",
    "run",
]
