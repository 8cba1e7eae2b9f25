"""Running studies: the study file, run/resume, the trial loop, packing, workers, compare, pretrain.

See ARCHITECTURE.md for what this layer may import.
"""
