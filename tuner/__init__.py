"""tuner: hyperparameter tuning for small neural networks, on Optuna and PyTorch.

The library does the work; the ``tuner`` CLI is a thin shell over it::

    from tuner import load_config, run
    result = run(load_config("studies/quickstart.toml"))
    print(result.best_trial.params)
"""

from __future__ import annotations

__version__ = "0.1.0"

from tuner.config import StudyConfig, config_from_dict, load_config
from tuner.errors import (
    CheckpointError,
    ConfigError,
    ObjectiveError,
    StorageError,
    StudyNotFoundError,
    TunerError,
)
from tuner.study import open_study, resume, run

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
