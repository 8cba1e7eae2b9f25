"""PyTorch, never Optuna: data, models, init schemes, training, the init probe, diagnose,
fine-tuning, checkpoints, devices, populations (packing), trial pictures.

See ARCHITECTURE.md for what this layer may import.
"""
