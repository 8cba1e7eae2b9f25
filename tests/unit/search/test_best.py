"""The best-so-far curve of the report's history and of ``tuner compare``."""

from __future__ import annotations

import math

import pytest

from tuner.search.best_so_far import best_so_far


@pytest.mark.parametrize(
    ("values", "maximize", "expected"),
    [([None, 0.5, 0.4, None, 0.9], True, [None, 0.5, 0.5, 0.5, 0.9]),  # pruned: no value
     ([0.5, 0.7, 0.2], False, [0.5, 0.5, 0.2]),
     ([math.nan, 0.3, math.inf], False, [None, 0.3, 0.3]),  # not finite: never the best
     ([], True, [])],
)
def test_best_so_far_skips_missing_values_and_keeps_the_best(values, maximize, expected):
    assert best_so_far(values, maximize) == expected
