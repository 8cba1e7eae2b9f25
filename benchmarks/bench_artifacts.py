"""What the per-trial pictures (tuner.artifacts) cost a trial: the quickstart study with
``[objective] artifacts`` off and on, side by side in one run.

    .venv/bin/python benchmarks/bench_artifacts.py [--n-trials 30] [--rounds 4]

Each round runs the same study (same seed, so the same trials, the same pruning) once without
and once with pictures, each into a fresh SQLite file (the default storage), in alternating
order so that machine noise hits both alike. Printed: seconds per trial of each, the ratio of
medians, and the pictures' own cost measured directly (capture + save, repeated on one trial).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from tuner.artifacts import TrialPictures
from tuner.config import config_from_dict, load_config
from tuner.data import load_dataset
from tuner.init import apply_init
from tuner.models import MODELS, ModelSpec
from tuner.objectives import ObjectiveContext
from tuner.storage import open_storage
from tuner.study import run
from tuner.training import use_cpu_threads

ROOT = Path(__file__).resolve().parent.parent


def one_run(pictures: bool, n_trials: int, folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds per trial of the quickstart study, with or without pictures."""
    raw = load_config(ROOT / "studies" / "quickstart.toml", n_trials=n_trials).to_dict()
    raw["objective"]["artifacts"] = pictures
    config = config_from_dict(raw, "quickstart (benchmark)")
    db = folder / f"{'on' if pictures else 'off'}-{time.monotonic_ns()}.db"
    started, cpu = time.perf_counter(), time.process_time()
    result = run(config, f"sqlite:///{db}")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    n = len(result.trial_numbers)
    if pictures:
        assert any(folder.glob(f"{db.stem}-artifacts/*")), "no pictures were written"
    return elapsed / n, cpu / n


def direct_cost(folder: Path, repeats: int) -> float:
    """Milliseconds of one trial's capture + save (2 SVGs, 2 storage writes), on a real trial,
    with torch's CPU threads as trials have them (tuner.training.use_cpu_threads)."""
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
        TrialPictures.capture(trial, ctx, model, data.x_val, hp).save(curve)
        times.append(time.perf_counter() - t0)
        study.tell(trial, 0.5)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one_run(False, 3, folder)  # warm up: imports, dataset, first-call costs
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            for pictures in order:
                (on if pictures else off).append(one_run(pictures, args.n_trials, folder))
            print(f"round {r + 1}: wall off {off[-1][0] * 1e3:6.1f} on {on[-1][0] * 1e3:6.1f} "
                  f"ms/trial ({on[-1][0] / off[-1][0]:.3f})   cpu off {off[-1][1] * 1e3:6.1f} "
                  f"on {on[-1][1] * 1e3:6.1f} ms/trial ({on[-1][1] / off[-1][1]:.3f})")
        direct = direct_cost(folder, repeats=50)
    print(f"\nquickstart, {args.n_trials} trials x {args.rounds} rounds, SQLite, medians:")
    for i, what in enumerate(("wall", "cpu ")):
        m_off = statistics.median(x[i] for x in off)
        m_on = statistics.median(x[i] for x in on)
        print(f"  {what}: off {m_off * 1e3:6.1f} ms/trial   on {m_on * 1e3:6.1f} ms/trial   "
              f"ratio on/off {m_on / m_off:.3f}")
    m_off = statistics.median(x[0] for x in off)
    print(f"  capture + save measured directly: {direct:.2f} ms per trial "
          f"= {direct / (m_off * 1e3) * 100:.1f}% of a median trial (wall, pictures off)")


if __name__ == "__main__":
    main()
