"""benchmarks/gpu_check.py (issue 32) runs end to end on a CPU with small sizes, so that the day a
GPU is lent it runs there at once; a device this machine lacks is one error line, exit 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_the_gpu_check_runs_end_to_end_on_the_cpu():
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick",
                        "--repeats", "1"], capture_output=True, text=True, timeout=180,
                       cwd=SCRIPT.parents[1])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("cpu (")
    checks = {line.split()[1] for line in lines[1:]}
    assert checks == {"AMP", "PACK", "FIT", "JOBS"}, r.stdout
    ratio = r"\d+\.\d+x"
    assert len([x for x in lines if x.startswith("1 AMP")]) == 2
    assert all(re.search(rf"amp speed-up {ratio}  tuner picks fp32", x)
               for x in lines if x.startswith("1 AMP")), r.stdout
    pack = next(x for x in lines if x.startswith("2 PACK"))
    assert re.search(rf"K=8 .*speed-up {ratio}  largest val_loss difference (\S+)", pack)
    drift = float(re.search(r"difference (\S+)", pack).group(1))
    assert drift < 1e-4, "a member reaches its solo run's result (to float rounding)"
    assert re.search(r"3 FIT  cpu: no memory bound .* batch_size up to 2048", r.stdout)
    assert re.search(rf"4 JOBS jobs\.toml on cpu: 1 process \S+ s, --jobs 2 \S+ s: {ratio}",
                     r.stdout)
    assert "exit" not in r.stderr, r.stderr


def test_a_gpu_this_machine_lacks_is_one_error_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda:3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: --device: 'cuda:3' asked for, but this machine has no CUDA GPU; train on the "
        "CPU with --device cpu"]
    assert r.stdout == ""
