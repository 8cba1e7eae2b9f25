"""tuner's CUDA paths on a machine without a GPU (issue 32): ``torch.cuda`` faked where tuner asks
it something (is_available, device_count, capability, free memory, set_device, out-of-memory
and CUDA errors), and the real code around the fakes: the batch-size probe steps a real model
(on the CPU, with the GPU's memory statistics faked), the float16 path runs a real GradScaler,
``--jobs`` builds its real worker command lines."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from optuna.trial import TrialState

import tests.unit.nn.test_packing as packing
import tuner.nn.device as device_module
import tuner.nn.training as training
from tests.conftest import unique
from tuner.core.errors import ConfigError, Diverged
from tuner.nn.data import Dataset, load_dataset
from tuner.nn.device import (
    SHARERS_ENV,
    GpuUnusable,
    check_device,
    cuda_step_fits,
    largest_pow2,
    memory_budget,
    resolve_device,
)
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.training import TrainConfig, amp_dtype, train
from tuner.objectives import ObjectiveContext
from tuner.run.config import load_config

ROOT = Path(__file__).resolve().parents[3]
GIB = 2**30
CUBLAS_FAILS = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"


@pytest.fixture(autouse=True)
def _no_cpu_fallback(monkeypatch):
    """Each test starts in a process whose ``auto`` has not fallen back to the CPU."""
    monkeypatch.setattr(device_module, "_cpu_fallback", None)


def fake_gpus(monkeypatch, n: int = 1, free: int = 40 * GIB, total: int = 40 * GIB,
              capability: dict[int, tuple[int, int]] | None = None,
              mem_get_info=None) -> list[int]:
    """Pretend this machine has ``n`` CUDA GPUs; returns the list ``set_device`` calls go to."""
    current: list[int] = []
    caps = capability or {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "mem_get_info",
                        mem_get_info or (lambda device=None: (free, total)))
    monkeypatch.setattr(torch.cuda, "set_device",
                        lambda device: current.append(torch.device(device).index))
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: caps.get(torch.device(device).index or 0, (9, 0)))
    return current


# --------------------------------------------------------------------------- 8: pretrain's device
def test_pretrain_on_a_gpu_this_machine_lacks_is_one_error_line(cli, tmp_path):
    if torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    r = cli("pretrain", "-o", "p.pt", "--epochs", "1", "--set", "device=cuda:3")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], "one line"
    assert r.stderr.startswith("error: tuner pretrain: device: 'cuda:3' asked for")
    assert "--set device=cpu" in r.stderr
    assert not (tmp_path / "p.pt").exists(), "nothing written"


def test_pretrain_checks_the_device_against_the_gpus_there_are(monkeypatch, tmp_path):
    from tuner.run.pretrain import pretrain

    fake_gpus(monkeypatch, n=1)
    with pytest.raises(ConfigError, match=r"'cuda:3' asked for, but this machine has 1 CUDA "
                                          r"device\(s\); train on the CPU with --set device=cpu"):
        pretrain({"dataset": "iris", "epochs": 1, "device": "cuda:3"}, {}, tmp_path / "p.pt")
    assert not (tmp_path / "p.pt").exists()


# --------------------------------------------------------------------------- 1, 9, 2: --jobs
def _wide_mlp(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    config = load_config(ROOT / "examples" / "wide_mlp.toml")
    assert "device" not in config.objective_settings, "the example names no device"
    return config


@pytest.mark.parametrize(("n_gpus", "expected"), [
    (4, [["--device", f"cuda:{i}"] for i in (0, 1, 2, 3, 0)]),
    (1, [[]] * 5),  # one GPU: the study's own device, as before
    (0, [[]] * 5),
])
def test_jobs_spread_a_study_without_a_device_over_the_gpus(monkeypatch, n_gpus, expected):
    from tuner.run.workers._jobs import _device

    config = _wide_mlp(monkeypatch)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpus)
    assert [_device(i, config, None) for i in range(5)] == expected


class _FakeWorker:
    """A worker that finishes at once, remembering its command line and environment."""

    started: ClassVar[list[_FakeWorker]] = []

    def __init__(self, index, args, env, entry, close_fds):
        self.index, self.args, self.env = index, args, env
        self.errors: list[str] = []
        self.trial_ids: list[int] = []
        self.proc = SimpleNamespace(poll=lambda: 0, returncode=0,
                                    stderr=SimpleNamespace(fileno=lambda: 0))
        self.relay = SimpleNamespace(join=lambda timeout=None: None)
        _FakeWorker.started.append(self)

    def start_relay(self) -> None:
        pass


def test_each_jobs_worker_gets_its_gpu_and_knows_who_shares_it(monkeypatch, study_file,
                                                                sqlite_url):
    import tuner.run.workers._jobs as jobs

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # is_available stays real
    monkeypatch.setattr(jobs, "_Worker", _FakeWorker)
    _FakeWorker.started = []
    config = load_config(study_file(study={"name": unique("jobs")}))
    jobs.run_jobs(config, sqlite_url, jobs=3)
    workers = _FakeWorker.started
    assert [w.args[w.args.index("--device") + 1] for w in workers] == ["cuda:0", "cuda:1",
                                                                       "cuda:0"]
    assert [w.env[SHARERS_ENV] for w in workers] == ["2", "1", "2"]


def test_a_gpus_memory_is_shared_between_the_workers_on_it(monkeypatch):
    assert memory_budget(30 * GIB, 40 * GIB, sharers=1) == pytest.approx(0.8 * 30 * GIB)
    assert memory_budget(40 * GIB, 40 * GIB, sharers=4) == pytest.approx(0.8 * 10 * GIB)
    assert memory_budget(5 * GIB, 40 * GIB, sharers=2) == pytest.approx(0.8 * 5 * GIB)
    monkeypatch.setenv(SHARERS_ENV, "2")
    assert memory_budget(40 * GIB, 40 * GIB) == pytest.approx(0.8 * 20 * GIB)


def test_the_device_of_a_trial_is_made_the_current_cuda_device(monkeypatch):
    current = fake_gpus(monkeypatch, n=4)
    assert ObjectiveContext(settings={"device": "cuda:2"}, space=None).device == torch.device(
        "cuda:2")
    assert current == [2], "torch.cuda.set_device(2): nothing else lands on GPU 0"
    assert ObjectiveContext(settings={"device": "cpu"}, space=None).device.type == "cpu"
    assert current == [2], "the CPU touches no CUDA device"


# --------------------------------------------------------------------------- 3, 11: AMP's choice
def _mlp(width: int, depth: int = 2, features: int = 64) -> torch.nn.Module:
    return MODELS.get("mlp")(ModelSpec(features, 10, None, depth, width, "relu"))


def test_bfloat16_only_where_the_training_gpu_has_it_natively(monkeypatch):
    fake_gpus(monkeypatch, n=2, capability={0: (9, 0), 1: (7, 5)})  # an H100 and a T4
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    big = _mlp(2048, depth=4)
    assert amp_dtype(big, torch.device("cuda:0"), batch_size=1024) == torch.bfloat16
    assert amp_dtype(big, torch.device("cuda:1"), batch_size=1024) == torch.float16, (
        "a T4 emulates bfloat16: float16 and a gradient scaler")


def test_mixed_precision_needs_a_large_step_not_only_many_parameters(monkeypatch):
    fake_gpus(monkeypatch)
    mlp = _mlp(512)  # 301k parameters: launch-bound at batch 64
    assert sum(p.numel() for p in mlp.parameters()) > training.AMP_MIN_PARAMS
    cuda = torch.device("cuda:0")
    assert amp_dtype(mlp, cuda, batch_size=64) is None
    assert amp_dtype(mlp, cuda, batch_size=4096) == torch.bfloat16
    assert amp_dtype(mlp, cuda, amp=True, batch_size=64) == torch.bfloat16, "forced on"
    assert amp_dtype(_mlp(64), cuda, batch_size=65536) is None, "a small model never"


def _blobs(val_scale: float = 1.0) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return Dataset.from_arrays(x[:192], y[:192], x[192:] * val_scale, y[192:])


def test_a_users_loss_runs_outside_autocast_on_float32_outputs(monkeypatch):
    monkeypatch.setattr(training, "amp_dtype", lambda *a, **k: torch.bfloat16)
    seen = []

    def loss(out, y):
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return torch.nn.functional.cross_entropy(out, y)

    torch.manual_seed(0)
    model = MODELS.get("mlp")(ModelSpec(8, 2, None, 1, 16, "relu"))
    train(model, _blobs(), TrainConfig(lr=0.01, batch_size=32, epochs=1), loss=loss)
    assert seen and set(seen) == {(False, torch.float32)}


# --------------------------------------------------------------------------- 4: float16
@pytest.fixture
def float16(monkeypatch):
    """The float16 + GradScaler path, on the CPU (whose autocast and GradScaler take float16)."""
    monkeypatch.setattr(training, "amp_dtype", lambda *a, **k: torch.float16)
    synced: list[int] = []
    real = torch.amp.GradScaler._maybe_opt_step

    def spy(self, *args, **kwargs):  # reads the inf check back: one sync
        synced.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "_maybe_opt_step", spy)
    scaled: list[bool] = []
    real_scale = torch.amp.GradScaler.scale

    def scale(self, outputs):  # a scaler that disabled itself would not scale at all
        scaled.append(self.is_enabled())
        return real_scale(self, outputs)

    monkeypatch.setattr(torch.amp.GradScaler, "scale", scale)
    return SimpleNamespace(synced=synced, scaled=scaled)


@pytest.mark.parametrize(("optimizer", "syncs_per_batch"),
                         [("adam", 0), ("adamw", 0), ("sgd", 0), ("rmsprop", 1)])
def test_float16_steps_without_a_sync_per_batch_where_a_fused_optimizer_exists(
        float16, optimizer, syncs_per_batch):
    torch.manual_seed(0)
    model = MODELS.get("mlp")(ModelSpec(8, 2, None, 1, 16, "relu"))
    history = train(model, _blobs(), TrainConfig(lr=0.01, batch_size=32, epochs=2,
                                                 optimizer=optimizer))
    assert len(history) == 2
    assert float16.scaled == [True] * 2 * 6, "every batch scaled"  # 192 rows / 32: 6 an epoch
    assert len(float16.synced) == syncs_per_batch * 2 * 6


def test_float16_evaluates_in_float32_where_float16_overflows(float16):
    """Validation rows 1e5 times larger than the training rows: their logits pass float16's
    65504, and a float16 evaluation read that as a diverged trial."""
    torch.manual_seed(0)
    model = MODELS.get("mlp")(ModelSpec(8, 2, None, 1, 16, "relu"))
    data = _blobs(val_scale=1e5)
    try:
        history = train(model, data, TrainConfig(lr=1e-3, batch_size=32, epochs=1))
    except Diverged as e:
        pytest.fail(f"evaluated in float16: {e}")
    assert torch.isfinite(torch.tensor(history[-1].val_loss))


def test_the_cpu_path_is_untouched_by_the_amp_policies():
    """Without mixed precision the loop is what it was: the same numbers as a hand-written
    loop of the same steps (tuner's own optimizer, one permutation per epoch)."""
    data = load_dataset("iris", seed=0)
    torch.manual_seed(1)
    a = MODELS.get("mlp")(ModelSpec(4, 3, None, 1, 16, "relu"))
    b = MODELS.get("mlp")(ModelSpec(4, 3, None, 1, 16, "relu"))
    b.load_state_dict(a.state_dict())
    cfg = TrainConfig(lr=0.05, batch_size=16, epochs=2, optimizer="sgd")
    train(a, data, cfg, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    optimizer = training.make_optimizer(b, cfg)
    for _ in range(2):
        perm = torch.randperm(data.n_train, generator=g)
        for xb, yb in zip(data.x_train[perm].split(16), data.y_train[perm].split(16),
                          strict=True):
            for p in b.parameters():
                p.grad = None
            torch.nn.functional.cross_entropy(b(xb), yb).backward()
            optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


# --------------------------------------------------------------------------- 6, 5, 12: the probe
class FakeMemory:
    """The GPU memory statistics of a real model stepped on the CPU: each row of a training
    step takes ``per_row`` bytes (an evaluation row without gradients an eighth of that); more
    than ``oom_rows`` rows in a step is out of memory; ``fail`` raises instead (a CUDA error);
    while the probe's model lives, ``outside`` bytes go outside the allocator (cuBLAS's
    workspace, fragmentation), seen only as a drop in free memory. ``empty_cache`` gives back
    what the allocator held."""

    def __init__(self, monkeypatch, *, free=40 * GIB, total=40 * GIB, per_row=GIB // 64,
                 oom_rows=10**9, outside=0, fail: BaseException | None = None):
        self.free, self.total, self.per_row = free, total, per_row
        self.oom_rows, self.outside, self.fail = oom_rows, outside, fail
        self.peak = self.cached = 0
        self.models = self.built = 0  # models alive, models built
        fake_gpus(monkeypatch, mem_get_info=self.mem_get_info)
        for name, fn in [("reset_peak_memory_stats", self.reset),
                         ("max_memory_reserved", lambda device=None: self.peak),
                         ("memory_reserved", lambda device=None: self.cached),
                         ("synchronize", lambda device=None: None),
                         ("empty_cache", self.empty_cache)]:
            monkeypatch.setattr(torch.cuda, name, fn)
        real = device_module.cuda_step_fits
        monkeypatch.setattr(device_module, "resolve_device", lambda name: torch.device("cuda"))
        monkeypatch.setattr(device_module, "cuda_step_fits", lambda make_model, *a, **k: real(
            lambda: self.hooked(make_model()), a[0], torch.device("cpu"), *a[2:], **k))

    def mem_get_info(self, device=None):
        used = self.cached + (self.outside if self.models else 0)
        return self.free - used, self.total

    def reset(self, device=None):
        self.peak = 0

    def empty_cache(self):
        self.cached = self.models = 0

    def hooked(self, model):
        self.models += 1
        self.built += 1

        def forward(module, args):
            if self.fail is not None:
                raise self.fail
            rows = args[0].shape[0]
            if not torch.is_grad_enabled():  # an evaluation chunk
                self.peak = max(self.peak, rows * self.per_row // 8)
            elif rows > self.oom_rows:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            else:
                self.peak = max(self.peak, rows * self.per_row)
            self.cached = max(self.cached, self.peak)

        model.register_forward_pre_hook(forward)
        return model


def _bind(study_file, device="auto", batch_size=None):
    space = {"batch_size": batch_size or {"low": 4, "high": 128}}
    return load_config(study_file(study={"name": unique("fit")}, objective={"device": device, "dataset": "digits"},
                                  space=space)).bind()


def test_the_real_probe_finds_what_fits_and_builds_the_model_once(monkeypatch, study_file):
    memory = FakeMemory(monkeypatch, oom_rows=40)  # 32 fits, 64 runs out of memory
    assert _bind(study_file).space["batch_size"].high == 32
    assert memory.built == 1, "one model, stepped at every batch size"


def test_the_probe_counts_memory_outside_the_allocator(monkeypatch, study_file):
    # 128 rows: 8 GiB in the allocator, which fit in 32 (80% of 40) but not with 27 GiB more
    FakeMemory(monkeypatch, per_row=GIB // 16, outside=27 * GIB, free=40 * GIB)
    assert _bind(study_file).space["batch_size"].high == 64


def test_the_probe_plans_for_its_share_of_a_gpu_run_jobs_shares(monkeypatch, study_file):
    FakeMemory(monkeypatch, per_row=GIB // 5, free=40 * GIB)  # 128 rows: 25.6 GiB
    assert _bind(study_file).space["batch_size"].high == 128, "alone: 32 GiB of 40"
    monkeypatch.setenv(SHARERS_ENV, "2")  # two workers on this GPU: 16 GiB each
    # (another range: a bound config is kept per process for its settings and space)
    assert _bind(study_file, batch_size={"low": 8, "high": 128}).space["batch_size"].high == 64


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_a_cuda_failure_in_the_probe_is_one_error_naming_the_cpu(monkeypatch, study_file,
                                                                  device):
    FakeMemory(monkeypatch, fail=RuntimeError(CUBLAS_FAILS))
    with pytest.raises(ConfigError, match=r"cuda:?0? cannot be used \(CUDA error: CUBLAS_STATUS"
                                          r"_ALLOC_FAILED.*\); free it, or train on the CPU "
                                          r"with --device cpu"):
        _bind(study_file, device)


def test_auto_falls_back_to_the_cpu_when_the_gpu_fails(monkeypatch, study_file, caplog):
    memory = FakeMemory(monkeypatch, fail=torch.AcceleratorError(CUBLAS_FAILS))
    with caplog.at_level(logging.WARNING, logger="tuner"):
        config = _bind(study_file, "auto")
    assert config.space["batch_size"].high == 128, "the CPU's bound: the training set"
    assert "device auto: the GPU cannot be used" in caplog.text
    assert "training on the CPU instead" in caplog.text
    monkeypatch.setattr(device_module, "resolve_device", resolve_device)  # the real one again
    assert memory.built == 1
    assert ObjectiveContext(settings={"device": "auto"}, space=None).device.type == "cpu"


def test_a_busy_gpu_is_not_told_to_lower_the_range(monkeypatch, study_file, caplog):
    FakeMemory(monkeypatch, oom_rows=1, free=2 * GIB, total=80 * GIB)
    with pytest.raises(ConfigError, match=r"cuda is busy: 2.0 GiB of its 80.0 GiB free .*not "
                                          r"even batch_size 4 fits; free it, or train on the "
                                          r"CPU with --device cpu"):
        _bind(study_file, "cuda")
    with caplog.at_level(logging.WARNING, logger="tuner"):
        assert _bind(study_file, "auto").space["batch_size"].high == 128
    assert "the GPU is busy (2.0 GiB of its 80.0 GiB free)" in caplog.text


def test_a_model_too_big_for_an_idle_gpu_still_says_lower_the_range(monkeypatch, study_file):
    FakeMemory(monkeypatch, oom_rows=1)
    with pytest.raises(ConfigError, match=r"not even 4 fits in the memory of cuda .*lower the "
                                          r"range, or train on the CPU with --device cpu"):
        _bind(study_file, "auto")


def test_free_memory_is_read_inside_the_probes_error_handling(monkeypatch):
    def broken(device=None):
        raise torch.AcceleratorError("CUDA error: all CUDA-capable devices are busy or "
                                     "unavailable")

    fake_gpus(monkeypatch, mem_get_info=broken)
    fits = cuda_step_fits(lambda: _mlp(8), 64, torch.device("cpu"))
    with pytest.raises(GpuUnusable, match="busy or unavailable"):
        largest_pow2(fits, 4, 64)


@pytest.mark.parametrize(("name", "match"), [
    ("cuda:0", r"--device: 'cuda:0' cannot be used \(CUDA error: all CUDA-capable devices are "
               r"busy or unavailable\); free it, or train on the CPU with --device cpu"),
    ("cuda:1", r"--device: 'cuda:1' asked for, but this machine has 1 CUDA device\(s\); train "
               r"on the CPU with --device cpu"),
])
def test_a_gpu_that_cannot_be_used_is_one_error_naming_the_cpu(monkeypatch, name, match):
    def busy(device=None):
        raise torch.AcceleratorError("CUDA error: all CUDA-capable devices are busy or "
                                     "unavailable\nCUDA kernel errors might be asynchronously "
                                     "reported")

    fake_gpus(monkeypatch, n=1, mem_get_info=busy)
    with pytest.raises(ConfigError, match=match):
        check_device(name, "--device")


def test_auto_on_a_gpu_that_cannot_be_used_is_the_cpu(monkeypatch, caplog):
    def busy(device=None):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    fake_gpus(monkeypatch, n=1, mem_get_info=busy)
    assert resolve_device("auto") == torch.device("cuda"), "before the probe"
    with caplog.at_level(logging.WARNING, logger="tuner"):
        assert check_device("auto") == "auto"
    assert resolve_device("auto") == torch.device("cpu")
    assert "device auto: the GPU cannot be used (CUDA out of memory" in caplog.text


def test_a_bug_in_the_probe_is_not_taken_for_a_busy_gpu(monkeypatch):
    FakeMemory(monkeypatch)
    fits = cuda_step_fits(lambda: _mlp(8), 32, torch.device("cpu"))  # 32 features for 64
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as caught:
        fits(4)
    assert not isinstance(caught.value, GpuUnusable)


# --------------------------------------------------------------------------- 2: a pack too big
def test_a_pack_that_runs_out_of_memory_is_split_not_failed(monkeypatch):
    import tuner.objectives.classifier._pack as packed_classifier

    sizes: list[int] = []

    def small_gpu(models, data, cfgs, generators, *args, **kwargs):
        sizes.append(len(models))
        if len(models) > 2:  # some batches drawn first: the members' generators move on
            for g in generators:
                torch.randperm(data.n_train, generator=g)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return packing.train_population(models, data, cfgs, generators, *args, **kwargs)

    monkeypatch.setattr(packed_classifier, "train_population", small_gpu)
    alone, packed = packing._trials(pack=1, n=4), packing._trials(pack=4, n=4)
    assert sizes[0] >= 3 and max(sizes[1:]) <= 2, sizes
    assert [t.state for t in packed] == [t.state for t in alone]
    assert TrialState.FAIL not in {t.state for t in packed}
    for a, b in zip(alone, packed, strict=True):
        if a.state == TrialState.COMPLETE:
            assert b.value == pytest.approx(a.value, rel=1e-5)
            assert b.user_attrs["curve"]["val_loss"] == pytest.approx(
                a.user_attrs["curve"]["val_loss"], rel=1e-5)


# --------------------------------------------------------------------------- 10: deterministic
@pytest.fixture
def torch_flags():
    """torch's process-wide switches, restored after the test."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    yield
    torch.use_deterministic_algorithms(saved[0])
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
     torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved[1:]


def test_the_deterministic_mode_is_opt_in(study_file, torch_flags, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cudnn.allow_tf32 = True
    load_config(study_file(study={"name": unique("det")})).bind()
    assert not torch.are_deterministic_algorithms_enabled(), "off unless asked for"
    assert torch.backends.cudnn.allow_tf32
    load_config(study_file(study={"name": unique("det")},
                           objective={"deterministic": True})).bind()
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    import os
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_deterministic_must_be_true_or_false(study_file):
    with pytest.raises(ConfigError, match=r"\[objective\] deterministic must be true or false, "
                                          r"got 'yes'"):
        load_config(study_file(objective={"deterministic": "yes"}))


def test_a_deterministic_study_trains_the_same_twice(study_file, torch_flags, sqlite_url):
    from tuner.run.study import run

    values = []
    for _ in range(2):
        config = load_config(study_file(study={"name": unique("det"), "n_trials": 2},
                                        objective={"deterministic": True}))
        values.append([t.value for t in run(config, sqlite_url).study.trials])
    assert values[0] == values[1]


def test_the_gpu_paths_import_nothing_new_on_the_cpu():
    """The CPU path of training stays as light as before: no torch._dynamo (fused optimizers
    are built only on the float16 path)."""
    code = ("import sys, torch; from tuner.nn.training import TrainConfig, train;"
            "from tuner.nn.data import load_dataset; from tuner.nn.models import MODELS, ModelSpec;"
            "d = load_dataset('iris', seed=0);"
            "train(MODELS.get('mlp')(ModelSpec(4, 3, None, 1, 8, 'relu')), d,"
            " TrainConfig(lr=0.01, batch_size=16, epochs=1));"
            "print('torch._dynamo' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


@pytest.mark.parametrize(("error", "is_gpu"), [
    (torch.AcceleratorError("CUDA error: an illegal memory access was encountered"), True),
    (RuntimeError(CUBLAS_FAILS), True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_NOT_INITIALIZED"), True),
    (RuntimeError("Expected all tensors to be on the same device, but found at least two "
                  "devices, cuda:0 and cpu!"), False),  # a bug, not the GPU
    (ValueError("CUDA error: not a RuntimeError"), False),
])
def test_what_counts_as_a_gpu_failure(error, is_gpu):
    assert device_module.is_cuda_failure(error) is is_gpu
