"""What the per-trial pictures (tuner.store.artifacts) cost a trial: the quickstart study with
``[objective] artifacts`` off and on, side by side in one run.

    .venv/bin/python benchmarks/bench_artifacts.py [--n-trials 40] [--rounds 2]

Two copies of the quickstart study (same seed, so the same parameters trial by trial), one
without and one with pictures, each in its own SQLite file opened as tuner opens it (WAL), run
in lockstep: trial i of one, then trial i of the other, alternating which goes first. A busy
machine then slows both alike, and each pair compares the same configuration. Printed: the
median seconds per trial of each, the median of the per-pair ratios, the ratio of the totals,
and the pictures' own cost measured directly (capture + save, repeated on fresh trials).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from tuner.nn.data import load_dataset
from tuner.nn.diagnostics import activation_stats
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.schemes import apply_init
from tuner.nn.training import use_cpu_threads
from tuner.objectives import ObjectiveContext
from tuner.objectives.records import save_pictures
from tuner.run.config import StudyConfig, config_from_dict, load_config
from tuner.run.outcome import call_objective
from tuner.run.study import prepare_study
from tuner.search.pruners import build_pruner
from tuner.search.samplers import build_sampler
from tuner.store.artifacts import VAL_ROWS
from tuner.store.storage import open_storage

ROOT = Path(__file__).resolve().parent.parent


class Copy:
    """One copy of the quickstart study, with or without pictures, run one trial at a time."""

    def __init__(self, pictures: bool, folder: Path, tag: str) -> None:
        raw = load_config(ROOT / "studies" / "quickstart.toml").to_dict()
        raw["objective"]["artifacts"] = pictures
        config: StudyConfig = config_from_dict(raw, "quickstart (benchmark)")
        db = folder / f"{'on' if pictures else 'off'}-{tag}.db"
        self.study = prepare_study(config, open_storage(f"sqlite:///{db}"))
        self.study.sampler = build_sampler(config.sampler, config.sampler_options, config.seed,
                                           config.space)
        self.study.pruner = build_pruner(config.pruner, config.pruner_options,
                                         config.objective_settings["epochs"])
        ctx = ObjectiveContext(settings=config.objective_settings, space=config.space,
                               seed=config.seed, metric=config.metric)
        assert config.spec is not None
        self.objective = lambda trial: call_objective(config, ctx, trial)

    def trial(self) -> float:
        """Seconds for one more trial (ask, train, tell)."""
        started = time.perf_counter()
        self.study.optimize(self.objective, n_trials=1, gc_after_trial=False)
        return time.perf_counter() - started


def lockstep(n_trials: int, folder: Path, tag: str) -> tuple[list[float], list[float]]:
    off, on = Copy(False, folder, tag), Copy(True, folder, tag)
    t_off: list[float] = []
    t_on: list[float] = []
    for i in range(n_trials):
        if i % 2 == 0:
            t_off.append(off.trial())
            t_on.append(on.trial())
        else:
            t_on.append(on.trial())
            t_off.append(off.trial())
    same = [a.params == b.params for a, b in zip(off.study.trials, on.study.trials, strict=True)]
    assert all(same), "the two copies drew different parameters: not a paired comparison"
    return t_off, t_on


def direct_cost(folder: Path, repeats: int) -> float:
    """Milliseconds of one trial's capture + save (2 SVGs, 2 storage writes), on a real trial,
    with torch's CPU threads as trials have them (tuner.nn.training.use_cpu_threads)."""
    use_cpu_threads()
    warnings.filterwarnings("ignore", message="Heartbeat")  # ask/tell by hand, not optimize()
    study = optuna.create_study(storage=open_storage(f"sqlite:///{folder / 'direct.db'}"))
    config = load_config(ROOT / "studies" / "quickstart.toml")
    ctx = ObjectiveContext(settings=config.objective_settings, space=config.space)
    data = load_dataset("digits", seed=0, device="cpu")
    spec = ModelSpec(data.n_features, data.n_classes, None, 2, 64, "relu")
    curve = {"train_loss": [0.9, 0.2, 0.1, 0.05, 0.04], "val_loss": [0.3, 0.2, 0.15, 0.14, 0.14],
             "val_accuracy": [0.92, 0.94, 0.95, 0.96, 0.97]}
    hp = {"init": "kaiming_normal", "activation": "relu", "lr": 0.02, "batch_size": 32}
    times = []
    for _ in range(repeats):
        trial = study.ask()
        model = apply_init(MODELS.get("mlp")(spec), "kaiming_normal", "relu")
        t0 = time.perf_counter()
        layers = activation_stats(model, data.x_val[:VAL_ROWS])
        save_pictures(trial, hp, layers, curve, ctx.cache)
        times.append(time.perf_counter() - t0)
        study.tell(trial, 0.5)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    off: list[float] = []
    on: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lockstep(3, folder, "warm-up")  # imports, dataset, first-call costs
        for r in range(args.rounds):
            t_off, t_on = lockstep(args.n_trials, folder, f"r{r}")
            off += t_off
            on += t_on
            print(f"round {r + 1}: {len(t_off)} pairs   off {sum(t_off):6.2f} s   "
                  f"on {sum(t_on):6.2f} s   ratio {sum(t_on) / sum(t_off):.3f}")
        direct = direct_cost(folder, repeats=50)
    pairs = [b / a for a, b in zip(off, on, strict=True)]
    m_off = statistics.median(off)
    print(f"\nquickstart, {len(off)} trial pairs in lockstep, SQLite (WAL):")
    print(f"  pictures off: {m_off * 1e3:6.1f} ms/trial (median)")
    print(f"  pictures on : {statistics.median(on) * 1e3:6.1f} ms/trial (median)")
    print(f"  ratio on/off: {statistics.median(pairs):.3f} (median of pairs), "
          f"{sum(on) / sum(off):.3f} (totals)")
    print(f"  capture + save measured directly: {direct:.2f} ms per trial "
          f"= {direct / (m_off * 1e3) * 100:.1f}% of a median trial")


if __name__ == "__main__":
    main()
