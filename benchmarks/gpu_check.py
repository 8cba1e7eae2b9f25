"""tuner's GPU claims, checked in one command (issue 32): under 5 minutes on one GPU.

    .venv/bin/python benchmarks/gpu_check.py                  # on the GPU (auto: CUDA if present)
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick   # end to end on a CPU, ~20 s

Four checks, each printed as one or more lines ending in a ratio:

1. AMP: tuner's fast loop (``tuner.nn.training.train``) with mixed precision forced off and on,
   for a launch-bound MLP, the 301k-parameter MLP that parameter count alone switched AMP on for,
   and a 14M-parameter MLP at batch 1024; and what ``amp=None`` (tuner's own choice) picks.
2. PACK: K digits MLPs trained one at a time against one population of K
   (``tuner.nn.population.train_population``), with the largest difference in final validation
   loss between a member and its solo run.
3. FIT: the batch-size bound the classifier's bind finds (``StudyConfig.bind``) against what
   really trains (one epoch at the bound, 2x and 4x the bound, and a pack of 4 at the bound):
   the ratio of the largest that trains to the bound.
4. JOBS: a study run in one process against ``tuner run --jobs 2`` on the same device.

On a CPU (``--device cpu``, or no CUDA), ``--quick`` or not, the sizes are small and the AMP and
FIT lines say what does not apply there; the numbers then check the script, not the GPU.
``TUNER_CACHE_DIR`` is pointed at a scratch folder for the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tuner.core.errors import ConfigError
from tuner.core.toml_text import dump_toml
from tuner.nn.data import Dataset, load_dataset
from tuner.nn.device import check_device, resolve_device
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.population import train_population
from tuner.nn.training import TrainConfig, amp_dtype, train
from tuner.run.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (implied on a CPU): seconds, not minutes")
    p.add_argument("--pack", type=int, default=None, help="members of the packed population "
                   "(default 64; 8 with --quick)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--skip", default="", help="checks to leave out, e.g. jobs,fit")
    args = p.parse_args()
    device = _device(args.device)
    quick = args.quick or device.type == "cpu"
    pack = args.pack or (8 if quick else 64)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
        os.environ["TUNER_CACHE_DIR"] = str(Path(scratch) / "cache")
        print(_describe(device), f"| {'quick sizes' if quick else 'full sizes'}", flush=True)
        if "amp" not in skip:
            check_amp(device, quick, args.repeats)
        if "pack" not in skip:
            check_pack(device, pack, quick, args.repeats)
        if "fit" not in skip:
            check_fit(device, quick)
        if "jobs" not in skip:
            check_jobs(device, quick, Path(scratch))


# --------------------------------------------------------------------------- helpers
def _device(name: str) -> torch.device:
    """The device to check, or one ``error:`` line and exit status 2 (tuner's own check)."""
    try:
        check_device(name, "--device")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return resolve_device(name)


def _describe(device: torch.device) -> str:
    if device.type != "cuda":
        return f"cpu ({os.cpu_count()} cores), torch {torch.__version__}"
    cap = torch.cuda.get_device_capability(device)
    free, total = torch.cuda.mem_get_info(device)
    return (f"{torch.cuda.get_device_name(device)} (sm{cap[0]}{cap[1]}, {total / 2**30:.0f} GiB, "
            f"{free / 2**30:.0f} free), torch {torch.__version__}, native bf16: "
            f"{torch.cuda.is_bf16_supported(including_emulation=False)}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, f: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` runs of ``f`` after one warm-up, synchronised."""
    f()
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        f()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mlp(device: torch.device, features: int, width: int, depth: int, classes: int = 10
        ) -> torch.nn.Module:
    return MODELS.get("mlp")(ModelSpec(features, classes, None, depth, width, "relu")).to(device)


def random_data(device: torch.device, n: int, features: int, n_val: int = 4096) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + n_val, features, generator=g)
    y = torch.randint(0, 10, (n + n_val,), generator=g)
    return Dataset.from_arrays(x[:n], y[:n], x[n:], y[n:], name="random").to(device)


def generators(device: torch.device, n: int) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(k) for k in range(n)]


# --------------------------------------------------------------------------- 1. AMP
def check_amp(device: torch.device, quick: bool, repeats: int) -> None:
    digits = load_dataset("digits", seed=0, device=str(device))
    cases = [("2x64", digits, 64, 2, 64), ("2x512 (301k)", digits, 512, 2, 64)]
    if not quick:
        cases.append(("4x2048 (14M)", random_data(device, 65536, 512), 2048, 4, 1024))
    epochs = 1 if quick else 3
    for name, data, width, depth, batch in cases:
        model = mlp(device, data.n_features, width, depth)
        chosen = amp_dtype(model, device, None, batch)
        t = {}
        for amp in (False, True):
            cfg = TrainConfig(1e-3, batch, epochs, "adam", amp=amp)

            def once(c=cfg, d=data, w=width, n=depth) -> object:
                return train(mlp(device, d.n_features, w, n), d, c)

            t[amp] = timed(device, once, repeats)
        note = "" if device.type == "cuda" else " (CPU: mixed precision is CUDA only)"
        print(f"1 AMP  {name:13s} b={batch:<5d} fp32 {t[False] * 1e3:6.0f} ms  amp "
              f"{t[True] * 1e3:6.0f} ms  amp speed-up {t[False] / t[True]:.2f}x  tuner picks "
              f"{str(chosen).replace('torch.', '') if chosen else 'fp32'}{note}", flush=True)


# --------------------------------------------------------------------------- 2. PACK
def check_pack(device: torch.device, k: int, quick: bool, repeats: int) -> None:
    digits = load_dataset("digits", seed=0, device=str(device))
    epochs = 2 if quick else 5
    cfgs = [TrainConfig(0.002 * (1 + i % 8), 64, epochs, "sgd", 1e-4 * i) for i in range(k)]

    def models() -> list[torch.nn.Module]:
        torch.manual_seed(0)
        return [mlp(device, 64, 64, 2) for _ in range(k)]

    def solo() -> list[float]:
        return [train(m, digits, c, generator=g)[-1].val_loss
                for m, c, g in zip(models(), cfgs, generators(device, k), strict=True)]

    def packed() -> list[float]:
        runs = train_population(models(), digits, cfgs, generators(device, k))
        return [r.history[-1].val_loss for r in runs]

    seq = timed(device, solo, 1)
    pk = timed(device, packed, repeats)
    drift = max(abs(a - b) for a, b in zip(solo(), packed(), strict=True))
    print(f"2 PACK K={k} 2x64 b=64 {epochs} ep: one at a time {seq:.2f} s  packed {pk:.3f} s  "
          f"speed-up {seq / pk:.1f}x  largest val_loss difference {drift:.1e}", flush=True)


# --------------------------------------------------------------------------- 3. FIT
def check_fit(device: torch.device, quick: bool) -> None:
    rows, width, depth = (4000, 256, 2) if quick else (400_000, 8192, 4)
    obj = {"name": "classifier", "dataset": "classification", "n_samples": rows, "epochs": 1,
           "device": "cuda" if device.type == "cuda" and device.index is None else str(device)}
    space = {"lr": 1e-3, "batch_size": {"low": 16 if quick else 1024,
                                        "high": 2048 if quick else 262144},
             "width": width, "depth": depth, "optimizer": "adam"}
    start = time.perf_counter()
    config = config_from_dict({"study": {"name": "fit"}, "objective": obj, "space": space})
    bound = config.bind().space["batch_size"].high
    took = time.perf_counter() - start
    if device.type != "cuda":
        print(f"3 FIT  cpu: no memory bound (the training set is): batch_size up to {bound}, "
              f"bind {took:.1f} s; bound / largest that trains: n/a on a CPU", flush=True)
        return

    def trains(batch: int, members: int = 1) -> bool:
        torch.cuda.empty_cache()
        try:
            data = random_data(device, batch, 20)  # one step an epoch, and an evaluation
            models = [mlp(device, 20, width, depth, 2) for _ in range(members)]
            cfgs = [TrainConfig(1e-3, batch, 1, "adam")] * members
            if members == 1:
                train(models[0], data, cfgs[0])
            else:
                train_population(models, data, cfgs, [None] * members)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            models = data = None
            torch.cuda.empty_cache()

    tried = {b: trains(b) for b in (bound, 2 * bound, 4 * bound)}
    largest = max((b for b, ok in tried.items() if ok), default=0)
    total = torch.cuda.mem_get_info(device)[1]
    print(f"3 FIT  bound {bound} in {took:.0f} s on {total / 2**30:.0f} GiB; trains at "
          + ", ".join(f"{b}: {'ok' if ok else 'OOM'}" for b, ok in tried.items())
          + f"; pack of 4 at the bound: {'ok' if trains(bound, 4) else 'OOM'}; largest that "
          f"trains / bound {largest / bound:.0f}x" + (" (or more)" if largest == 4 * bound else ""),
          flush=True)


# --------------------------------------------------------------------------- 4. JOBS
def check_jobs(device: torch.device, quick: bool, scratch: Path) -> None:
    if quick:
        study = {"study": {"name": "jobs", "metric": "val_accuracy", "sampler": "random",
                           "pruner": "none", "n_trials": 6, "seed": 0},
                 "objective": {"name": "classifier", "dataset": "iris", "epochs": 2},
                 "space": {"lr": {"low": 1e-3, "high": 0.1, "log": True}, "width": 16,
                           "depth": 1, "batch_size": 16}}
        path = scratch / "jobs.toml"
        path.write_text(dump_toml(study))
    else:
        path = ROOT / "studies" / "quickstart.toml"
    dev = "cuda" if device.type == "cuda" and device.index is None else str(device)
    seen: list[str] = []

    def run(tag: str, *extra: str) -> float:
        cmd = [sys.executable, "-m", "tuner", "run", str(path), "--storage",
               f"sqlite:///{scratch / tag}.db", "--device", dev, *extra]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        if extra and device.type == "cuda" and shutil.which("nvidia-smi"):
            time.sleep(10 if not quick else 1)
            seen.append(subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                capture_output=True, text=True).stdout.strip().replace("\n", "; "))
        _, err = proc.communicate()
        if proc.returncode != 0:
            print(f"4 JOBS {tag}: exit {proc.returncode}: "
                  f"{(err.strip().splitlines() or [''])[-1]}", file=sys.stderr)
        return time.perf_counter() - start

    one, two = run("j1"), run("j2", "--jobs", "2")
    print(f"4 JOBS {path.name} on {dev}: 1 process {one:.1f} s, --jobs 2 {two:.1f} s: "
          f"{one / two:.2f}x" + (f"; GPU processes seen: {seen[0]}" if seen else ""), flush=True)


if __name__ == "__main__":
    main()
