"""Device choice, GPU pinning of workers and the batch-size bound (CUDA parts faked on CPU)."""

from __future__ import annotations

import pytest
import torch

import tuner.nn.device as device_module
from tests.conftest import unique
from tuner.core.errors import ConfigError
from tuner.nn.device import largest_pow2, worker_device
from tuner.run.config import config_on_device, load_config, with_device
from tuner.run.study import resume, run


@pytest.mark.parametrize(
    ("index", "requested", "n_gpus", "expected"),
    [
        (0, "auto", 0, "cpu"),
        (3, "auto", 0, "cpu"),
        (0, "auto", 4, "cuda:0"),
        (5, "auto", 4, "cuda:1"),
        (2, "cuda", 2, "cuda:0"),
        (1, "cuda:3", 4, "cuda:3"),  # an explicit GPU is kept
        (7, "cpu", 8, "cpu"),
    ],
)
def test_worker_device_spreads_workers_over_gpus(index, requested, n_gpus, expected):
    assert worker_device(index, requested, n_gpus=n_gpus) == expected


@pytest.mark.parametrize(
    ("limit", "low", "high", "expected"),
    [(64, 16, 256, 64), (1000, 16, 256, 256), (8, 16, 256, 0), (16, 16, 16, 16), (40, 2, 512, 32)],
)
def test_largest_pow2_that_fits(limit, low, high, expected):
    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= limit

    assert largest_pow2(fits, low, high) == expected
    assert all(b & (b - 1) == 0 for b in tried), "only powers of two are tried"


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend the study's device is a GPU on which batches up to ``limit`` rows fit."""
    import tuner.objectives.classifier  # noqa: F401  (bound the real resolve_device first)

    def install(limit: int) -> None:
        monkeypatch.setattr(device_module, "resolve_device", lambda name: torch.device("cuda"))
        monkeypatch.setattr(device_module, "cuda_step_fits",
                            lambda *args, **kwargs: (lambda b: b <= limit))
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 << 30, 40 << 30))

    return install


def test_batch_size_range_is_capped_at_what_fits(study_file, fake_gpu):
    fake_gpu(limit=20)  # 16 fits, 32 does not
    config = load_config(study_file(space={"batch_size": {"low": 4, "high": 64}})).bind()
    assert config.space["batch_size"].high == 16
    assert config.space_table["batch_size"] == {"low": 4, "high": 64}, "stored as written"


@pytest.mark.parametrize(
    ("batch_size", "match"),
    [
        ({"low": 32, "high": 64}, r"batch_size: not even 32 fits in the memory of cuda"),
        (64, r"batch_size: not even 64 fits"),
        ([8, 64], r"64 does not fit in the memory of cuda.*largest power of two that fits is 16"),
    ],
)
def test_batch_size_that_cannot_fit_the_device(study_file, fake_gpu, batch_size, match):
    fake_gpu(limit=20)
    with pytest.raises(ConfigError, match=match):
        load_config(study_file(space={"batch_size": batch_size})).bind()


def test_cpu_keeps_the_range(study_file):
    config = load_config(study_file(space={"batch_size": {"low": 4, "high": 64}})).bind()
    assert config.space["batch_size"].high == 64


def test_device_is_a_choice_of_each_run_not_part_of_the_study(study_file, sqlite_url):
    name = unique("dev")
    config = load_config(study_file(study={"name": name}, objective={"device": "cpu"}))
    run(config_on_device(config, "auto"), sqlite_url)  # same study, another device: joins
    again = resume(name, sqlite_url, n_trials=1, device="cpu", pack=2)
    assert len(again.trial_numbers) == 1


def test_with_device_replaces_only_the_device():
    raw = {"study": {"name": "x"}, "objective": {"name": "classifier", "device": "cuda:1"}}
    assert with_device(raw, "cpu")["objective"] == {"name": "classifier", "device": "cpu"}
    assert with_device(raw, None) is raw
    assert raw["objective"]["device"] == "cuda:1", "the original is left alone"


@pytest.mark.parametrize(
    ("device", "match"),
    [("cuda", r"--device: 'cuda' asked for, but this machine has no CUDA GPU"),
     ("cuda:1", r"--device: 'cuda:1'"), ("gpu", r"--device: must be auto, cpu, cuda or cuda:N")],
)
def test_bad_device_override(study_file, device, match):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=match):
        config_on_device(load_config(study_file()), device)


def test_the_batch_fit_of_a_regression_builds_its_head_and_steps_without_class_labels(
        study_file, monkeypatch):
    """The fit's trial step is the regressor's own model (one output), and its step runs: a
    cross-entropy step on class ids would fail on a (b, 1) head (seen as a crash on a GPU)."""
    import tuner.objectives.classifier  # noqa: F401  (bound the real resolve_device first)

    built = []

    def step_on_cpu(make_model, n_features, device, reserved, **kwargs):
        def fits(batch: int) -> bool:
            model = make_model()
            built.append(model)
            model(torch.randn(batch, n_features)).float().square().mean().backward()
            return batch <= 32
        return fits

    monkeypatch.setattr(device_module, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(device_module, "cuda_step_fits", step_on_cpu)
    config = load_config(study_file(
        study={"metric": "val_mse"}, objective={"name": "regressor", "dataset": "diabetes"},
        space={"batch_size": {"low": 8, "high": 128}})).bind()
    assert config.space["batch_size"].high == 32
    heads = [[la for la in m.modules() if isinstance(la, torch.nn.Linear)][-1] for m in built]
    assert heads and all(head.out_features == 1 for head in heads)  # n_classes is 0 here
