"""Trial packing: a packed member reaches what its configuration reaches alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import optuna
import pytest
import torch
from optuna.trial import TrialState

from tests.conftest import unique
from tuner.core.errors import ConfigError
from tuner.nn.data import load_dataset
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.population import Population, train_population
from tuner.nn.schemes import apply_init
from tuner.nn.stacked_optim import STACKED_OPTIMIZERS
from tuner.nn.training import TrainConfig, make_optimizer, train
from tuner.objectives import ObjectiveContext
from tuner.objectives.classifier import group_key
from tuner.run.config import config_from_dict, load_config
from tuner.run.loop import run_trials
from tuner.run.study import prepare_study, run
from tuner.store.studies import n_finished

DIGITS = load_dataset("digits", seed=0)


def _member(seed: int, init: str, model: str = "mlp", width: int = 32) -> torch.nn.Module:
    torch.manual_seed(seed)  # what the classifier does for a trial with this seed
    spec = ModelSpec(DIGITS.n_features, DIGITS.n_classes, DIGITS.image_shape, 1, width, "relu")
    return apply_init(MODELS.get(model)(spec), init, "relu")


@pytest.mark.parametrize("optimizer", STACKED_OPTIMIZERS.names())
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_stacked_optimizer_steps_like_torch_bit_for_bit(optimizer, weight_decay):
    solo = _member(1, "xavier_uniform")
    torch_opt = make_optimizer(solo, TrainConfig(lr=0.01, batch_size=8, epochs=1,
                                                 optimizer=optimizer, weight_decay=weight_decay),
                               solo=False)
    assert isinstance(torch_opt, torch.optim.Optimizer)
    cfgs = [TrainConfig(lr=lr, batch_size=8, epochs=1, optimizer=optimizer, weight_decay=wd)
            for lr, wd in ((0.01, weight_decay), (0.3, 0.0))]
    pop = Population([_member(1, "xavier_uniform"), _member(2, "orthogonal")], cfgs)
    for step in range(5):
        torch.manual_seed(step)
        for p in solo.parameters():
            p.grad = torch.randn_like(p)
        # the MLP population keeps weights transposed (in, out) and biases as (1, out)
        for p, q in zip(solo.parameters(), pop.params, strict=True):
            mine = p.grad.t() if p.dim() == 2 else p.grad.unsqueeze(0)
            q.grad = torch.stack([mine, torch.ones_like(mine)]).contiguous()
        torch_opt.step()
        pop.optimizer.step()
    for p, q in zip(solo.parameters(), pop.params, strict=True):
        mine = q[0].t() if p.dim() == 2 else q[0, 0]
        assert torch.equal(p.detach(), mine.detach())


@pytest.mark.parametrize("optimizer", STACKED_OPTIMIZERS.names())
@pytest.mark.parametrize(("weight_decay", "momentum"), [(0.0, 0.0), (1e-2, 0.9)])
def test_solo_optimizer_steps_like_torch_bit_for_bit(optimizer, weight_decay, momentum):
    """tuner's CPU optimizer for one model: two lr groups (fine-tuning's lr_scales), a 0-d
    parameter among them, and the same updates as torch.optim to the last bit."""

    def model() -> torch.nn.Module:
        net = _member(3, "kaiming_normal")
        net.scale = torch.nn.Parameter(torch.tensor(0.5))  # a 0-d parameter
        return net

    cfg = TrainConfig(lr=0.01, batch_size=8, epochs=1, optimizer=optimizer,
                      weight_decay=weight_decay, momentum=momentum,
                      lr_scales={"scale": 10.0, "0.weight": 10.0})
    mine, theirs = model(), model()
    ours, torch_opt = make_optimizer(mine, cfg), make_optimizer(theirs, cfg, solo=False)
    assert not isinstance(ours, torch.optim.Optimizer)
    assert sorted(g["lr"] for g in ours.param_groups) == [0.01, pytest.approx(0.1)]
    for step in range(6):
        torch.manual_seed(step)
        for p, q in zip(mine.parameters(), theirs.parameters(), strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        ours.step()
        torch_opt.step()
    for p, q in zip(mine.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p.detach(), q.detach())
        assert not torch.equal(p.detach(), model().get_parameter(_name(mine, p)).detach())


def _name(model: torch.nn.Module, param: torch.Tensor) -> str:
    return next(n for n, p in model.named_parameters() if p is param)


def test_training_on_the_cpu_does_not_import_what_it_does_not_need(tmp_path):
    """A fresh process that trains never builds a torch.optim optimizer (which imports
    torch._dynamo: 2-4 s of every run, resume and worker), nor passes backward() a gradient
    (torch.fx's symbolic shapes, 0.5-1 s), and reads a dataset prepared before from the cache
    instead of importing scikit-learn (1.3-3 s)."""
    probe = ("import sys, torch\n"
             "from tuner.nn.data import load_dataset\n"
             "from tuner.nn.models import MODELS, ModelSpec\n"
             "from tuner.nn.training import TrainConfig, train\n"
             "d = load_dataset('digits', seed=0)\n"
             "net = MODELS.get('mlp')(ModelSpec(d.n_features, d.n_classes, d.image_shape, 1, 16,"
             " 'relu'))\n"
             "h = train(net, d, TrainConfig(lr=0.05, batch_size=64, epochs=2, optimizer='sgd',"
             " momentum=0.9))\n"
             "assert h[-1].val_accuracy > 0.5, h\n"
             "heavy = ('torch._dynamo', 'torch.fx.experimental.symbolic_shapes', 'sklearn')\n"
             "print(','.join(m for m in heavy if m in sys.modules) or 'none')\n")
    env = {**os.environ, "TUNER_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "sklearn", "the first load prepares the dataset"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "none"


@pytest.mark.parametrize(
    ("model", "optimizer", "lrs"),
    [("mlp", "sgd", (0.01, 0.05, 0.1)), ("mlp", "adam", (1e-3, 3e-3, 1e-2)),
     ("cnn", "sgd", (0.01, 0.05, 0.1))],
)
def test_packed_member_matches_its_solo_run(model, optimizer, lrs):
    inits = ["kaiming_normal", "xavier_uniform", "orthogonal"]
    cfgs = [TrainConfig(lr=lr, batch_size=64, epochs=2, optimizer=optimizer,
                        weight_decay=1e-3 * k) for k, lr in enumerate(lrs)]
    runs = train_population([_member(10 + k, inits[k], model) for k in range(3)], DIGITS, cfgs,
                            [torch.Generator().manual_seed(10 + k) for k in range(3)])
    for k, run_k in enumerate(runs):
        alone = train(_member(10 + k, inits[k], model), DIGITS, cfgs[k],
                      generator=torch.Generator().manual_seed(10 + k))
        assert [s.epoch for s in run_k.history] == [1, 2]
        for a, b in zip(alone, run_k.history, strict=True):
            assert b.train_loss == pytest.approx(a.train_loss, rel=1e-5)
            assert b.val_loss == pytest.approx(a.val_loss, rel=1e-5)
            assert b.val_accuracy == pytest.approx(a.val_accuracy, abs=1 / 450)


def test_stopped_and_diverged_members_leave_the_others_untouched():
    cfgs = [TrainConfig(lr=lr, batch_size=64, epochs=3, optimizer="sgd", momentum=0.0)
            for lr in (0.05, 1e9, 0.05, 0.1)]
    seen: list[tuple[int, int]] = []

    def hook(k: int, stats) -> bool:
        seen.append((k, stats.epoch))
        return not (k == 2 and stats.epoch == 1)  # "prune" member 2 after its first epoch

    runs = train_population([_member(k, "kaiming_normal") for k in range(4)], DIGITS, cfgs,
                            [torch.Generator().manual_seed(k) for k in range(4)], hook)
    assert runs[1].diverged is not None and runs[1].history == []
    assert runs[2].stopped and len(runs[2].history) == 1
    assert (2, 2) not in seen and (1, 1) not in seen
    for k in (0, 3):
        alone = train(_member(k, "kaiming_normal"), DIGITS, cfgs[k],
                      generator=torch.Generator().manual_seed(k))
        assert runs[k].history[-1].val_loss == pytest.approx(alone[-1].val_loss, rel=1e-5)


PACKED_STUDY = {
    "study": {"sampler": "random", "pruner": "none", "n_trials": 7, "seed": 5},
    "objective": {"name": "classifier", "dataset": "digits", "epochs": 2, "artifacts": False},
    "space": {"lr": {"low": 1e-3, "high": 0.1, "log": True}, "batch_size": 64,
              "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True},
              "init": ["xavier_uniform", "kaiming_normal", "zeros"], "optimizer": "sgd",
              "width": 32, "depth": 1},
    "sampler": {},
}


def _trials(pack: int, metric: str = "val_loss", n: int = 7) -> list[optuna.trial.FrozenTrial]:
    raw = {k: dict(v) for k, v in PACKED_STUDY.items()}
    raw["study"].update(name=unique("pack"), pack=pack, metric=metric)
    config = config_from_dict(raw)
    study = prepare_study(config, optuna.storages.InMemoryStorage())
    run_trials(study, config, n_trials=n, budget=None)  # n attempts: failures too
    return study.trials


def test_a_packed_study_reproduces_the_sequential_one_trial_by_trial(monkeypatch):
    import tuner.objectives.classifier._pack as packed_classifier

    sizes: list[int] = []

    def spy(models, *args, **kwargs):
        sizes.append(len(models))
        return train_population(models, *args, **kwargs)

    monkeypatch.setattr(packed_classifier, "train_population", spy)
    alone, packed = _trials(pack=1), _trials(pack=4)  # 7 trials: a pack of 4, then of 3
    assert sizes and max(sizes) >= 2, "trials really trained together"
    assert [t.params for t in packed] == [t.params for t in alone]
    assert [t.state for t in packed] == [t.state for t in alone]
    assert any(t.state == TrialState.PRUNED for t in alone), "zeros: a dead init, pruned"
    for a, b in zip(alone, packed, strict=True):
        assert b.user_attrs.get("prune_reason") == a.user_attrs.get("prune_reason")
        if a.state == TrialState.COMPLETE:
            assert b.value == pytest.approx(a.value, rel=1e-5)
            assert b.user_attrs["curve"]["val_loss"] == pytest.approx(
                a.user_attrs["curve"]["val_loss"], rel=1e-5)


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_searched_batch_size_is_drawn_once_per_pack(monkeypatch, sampler):
    """Seen (issue 11): with the batch size searched, a pack of 8 trained groups of 1-3, each
    member having drawn its own. Now a claim draws the shared parameters once."""
    import tuner.objectives.classifier._pack as packed_classifier

    sizes: list[int] = []

    def spy(models, *args, **kwargs):
        sizes.append(len(models))
        return train_population(models, *args, **kwargs)

    monkeypatch.setattr(packed_classifier, "train_population", spy)
    raw = {k: dict(v) for k, v in PACKED_STUDY.items()}
    raw["study"].update(name=unique("shared"), pack=4, sampler=sampler, pruner="none")
    raw["space"].update(batch_size={"low": 16, "high": 256}, init=["xavier_uniform",
                                                                      "kaiming_normal"])
    raw["objective"].update(epochs=1)
    config = config_from_dict(raw)
    study = prepare_study(config, optuna.storages.InMemoryStorage())
    run_trials(study, config, n_trials=12, budget=None)
    trials = study.trials
    assert len(trials) == 12 and {t.state for t in trials} == {TrialState.COMPLETE}
    for claim in (trials[0:4], trials[4:8], trials[8:12]):
        assert len({t.params["batch_size_log2"] for t in claim}) == 1, claim
        assert len({t.params["lr"] for t in claim}) == 4, "the rest is drawn per member"
    assert sizes == [4, 4, 4]
    assert len({t.params["batch_size_log2"] for t in trials}) > 1, "still searched"


@pytest.mark.parametrize(
    ("broken", "states"),
    [("check_init", "CCPF"),  # member 3's setup raises: it alone fails
     ("train_population", "FFPF")],  # the population raises: member 2, pruned before, stays so
)
def test_a_failure_in_a_pack_fails_only_the_members_it_touches(monkeypatch, broken, states):
    import tuner.objectives.classifier._pack as packed_classifier

    real = getattr(packed_classifier, broken)

    def fail(*args, **kwargs):
        if broken == "train_population" or args[0].trial.number == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(packed_classifier, broken, fail)
    trials = _trials(pack=4, n=4)  # one pack; trial 2 draws init zeros: a dead init
    assert "".join(t.state.name[0] for t in trials) == states
    for t in trials:
        if t.state == TrialState.FAIL:
            assert re.fullmatch(r"RuntimeError: boom \(at \S*test_packing\.py:\d+ in fail\)",
                                t.user_attrs["fail_reason"])
            # Finished as the sequential loop finishes it: no epoch, so no learning curve; a
            # member that failed in training had its init checked first.
            assert "curve" not in t.user_attrs
            assert ("init_verdict" in t.user_attrs) == (broken == "train_population")


def test_packed_run_prunes_members_and_leaves_nothing_running(study_file, sqlite_url):
    config = load_config(study_file(
        study={"name": unique(), "pruner": "median", "n_trials": 9, "pack": 4},
        pruner={"n_startup_trials": 1, "n_warmup_steps": 1},
        objective={"epochs": 4}, space={"batch_size": 16},
    ))
    result = run(config, sqlite_url)
    trials = result.study.trials
    assert n_finished(result.study) == 9 and len(result.trial_numbers) == 9
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for t in trials:
        assert set(t.intermediate_values) <= {1, 2, 3}, "reported only where median prunes"
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["prune_reason"].startswith(("pruned after epoch", "dead init"))


def test_ctrl_c_while_a_pack_is_asked_leaves_nothing_running(monkeypatch):
    raw = {k: dict(v) for k, v in PACKED_STUDY.items()}
    raw["study"].update(name=unique("askc"), pack=3)
    config = config_from_dict(raw)
    study = prepare_study(config, optuna.storages.InMemoryStorage())
    ask = study.ask

    def ask_then_ctrl_c() -> optuna.Trial:
        if study.trials:  # the second trial of the pack
            raise KeyboardInterrupt
        return ask()

    monkeypatch.setattr(study, "ask", ask_then_ctrl_c)
    assert run_trials(study, config, n_trials=3, budget=3).interrupted
    assert [t.state for t in study.trials] == [TrialState.FAIL]


HP = {"lr": 0.01, "batch_size": 32, "init": "xavier_uniform", "activation": "relu",
      "optimizer": "sgd", "weight_decay": 0.0, "momentum": 0.9, "depth": 2, "width": 64,
      "freeze_layers": 0, "head_lr_mult": 1.0}


def _ctx(**settings) -> ObjectiveContext:
    return ObjectiveContext(settings={"dataset": "digits", "model": "mlp", "device": "cpu",
                                      **settings}, space=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hp", "packable"),
    [
        ({}, True),
        ({"init": "pretrained"}, False),  # frozen layers, a head lr of its own: alone
        ({"optimizer": "lbfgs"}, False),  # no stacked twin
        ({"dropout": 0.1}, False),  # a knob the packer does not know
        ({"freeze_layers": 2}, True),  # inert without a checkpoint init
    ],
)
def test_group_key_packs_only_what_it_can_train(hp, packable):
    assert (group_key({**HP, **hp}, _ctx()) is not None) is packable


@pytest.mark.parametrize(("optimizer", "shared"),
                         [("sgd", False), ("rmsprop", False), ("adam", True), ("adamw", True)])
def test_momentum_splits_groups_only_where_the_optimizer_uses_it(optimizer, shared):
    hps = [{**HP, "optimizer": optimizer, "momentum": m} for m in (0.5, 0.9)]
    assert (len({group_key(hp, _ctx()) for hp in hps}) == 1) is shared
    if shared:  # one population takes both
        Population([_member(k, "orthogonal") for k in range(2)],
                   [TrainConfig(lr=0.01, batch_size=8, epochs=1, optimizer=optimizer, momentum=m)
                    for m in (0.5, 0.9)])


def test_a_model_that_cannot_stack_is_not_grouped(monkeypatch):
    def with_batch_norm(spec: ModelSpec) -> torch.nn.Module:  # a buffer: running statistics
        return torch.nn.Sequential(torch.nn.Linear(spec.n_features, spec.width),
                                   torch.nn.BatchNorm1d(spec.width), torch.nn.ReLU(),
                                   torch.nn.Linear(spec.width, spec.n_classes))

    monkeypatch.setitem(MODELS._items, "bn_mlp", with_batch_norm)
    assert group_key(HP, _ctx(model="bn_mlp")) is None  # runs alone, prepared once
    assert group_key(HP, _ctx()) is not None


def test_the_first_group_key_of_a_process_loads_real_data_not_meta_tensors():
    # group_key builds a memory-less model on the meta device; the dataset it needs, loaded (and
    # cached for the whole process) on first use, must not be created inside that context.
    import tuner.nn.data

    tuner.nn.data._load_cached.cache_clear()  # as in a fresh `tuner run --pack N` process
    ctx = ObjectiveContext(settings={"dataset": "digits", "model": "mlp", "device": "cpu"},
                           space=None, seed=913)  # type: ignore[arg-type]
    assert group_key(HP, ctx) is not None
    data = ctx.load_data()
    assert data.x_train.device.type == "cpu"
    assert float(data.x_train.abs().sum()) > 0  # real values: a meta tensor has none


@pytest.mark.parametrize(
    ("pack", "match"),
    [(0, r"pack must be a whole number >= 1"), (-2, r"pack must be"), (2.5, r"pack must be"),
     ("4", r"pack must be"), (True, r"pack must be")],
)
def test_bad_pack_in_study_file(study_file, pack, match):
    with pytest.raises(ConfigError, match=match):
        load_config(study_file(study={"pack": pack}))


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--pack", "0"], "--pack"), (["--pack", "x"], "--pack"),
     (["--device", "cuda"], "no CUDA GPU"), (["--device", "tpu"], "must be auto, cpu")],
)
def test_bad_pack_or_device_on_the_command_line(capsys, study_file, sqlite_url, args, message):
    from tuner.cli import main  # in process: the entry point's own error handling

    assert main(["run", str(study_file()), "--storage", sqlite_url, *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


@pytest.mark.slow
def test_workers_claim_packs_and_keep_the_exact_budget(cli, study_file, sqlite_url):
    name = unique("wpack")
    path = study_file(study={"name": name, "n_trials": 7, "pack": 3},
                      objective={"artifacts": False}, space={"batch_size": 16})
    proc = cli("run", str(path), "--storage", sqlite_url, "--jobs", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    more = cli("worker", name, "--storage", sqlite_url, "--pack", "4", "-q")
    assert more.returncode == 0, more.stderr
    study = optuna.load_study(study_name=name, storage=sqlite_url)
    assert len(study.trials) == 7, "two workers taking packs of up to 3 stop at the budget"
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
