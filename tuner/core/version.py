"""The version tuner writes into what it stores (checkpoints, studies, reports)."""

__version__ = "0.1.0"
