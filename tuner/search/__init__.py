"""What Optuna searches with: the search space, samplers, pruners, report steps.

See ARCHITECTURE.md for what this layer may import.
"""
