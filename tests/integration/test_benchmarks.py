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


def test_the_sampler_surrogate_collects_real_curves_and_screens_samplers_on_them(tmp_path):
    """A tiny pool of real quickstart trials, then random and tpe on it: every run is counted,
    a second screen repeats the first, and a bad variant is one error line, exit 2."""
    script = [sys.executable, str(BENCHMARKS / "sampler_surrogate.py")]
    pool = ["--pool", str(tmp_path / "pool")]
    r = subprocess.run([*script, "collect", "--seeds", "3", "4", "--trials", "12", *pool],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "seed 3: 12 trials" in r.stdout and "seed 4: 12 trials" in r.stdout
    screen = [*script, "screen", "random", "tpe:n_startup_trials=3,gamma=0.25", "--seeds", "4",
              "--target", "0.9", *pool]
    first = subprocess.run(screen, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("random") and "/4" in lines[0]
    assert lines[1].startswith("tpe:n_startup_trials=3,gamma=0.25") and "vs random" in lines[1]
    assert subprocess.run(screen, capture_output=True, text=True).stdout == first.stdout
    bad = subprocess.run([*script, "screen", "tpee", "--target", "0.9", *pool],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: unknown sampler 'tpee'")
