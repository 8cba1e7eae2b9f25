"""The benchmark scripts still run against today's package: each answers --help (which imports
everything it uses at the top). A rename once broke bench_overhead.py without any test failing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")
                                          if not p.name.startswith("_")))
def test_a_benchmark_script_starts(script: str) -> None:
    r = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"],
                       capture_output=True, text=True, timeout=120, cwd=BENCHMARKS.parent)
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower(), r.stdout
