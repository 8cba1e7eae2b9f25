"""(d) tuner's overhead per trial vs the bare training time, on SQLite (and in memory).

    .venv/bin/python benchmarks/bench_overhead.py [--trials 30] [--rounds 3] [--postgres]

The quickstart study as it ships (digits, MLP 2x64, 10 epochs, TPE, median pruner) runs
through :func:`tuner.run.study.optimize` (the ``tuner run`` path) on a SQLite file and in memory,
with the study's defaults (init health check, per-trial pictures) and with pictures off. The
sampler is seeded and training is deterministic, so every run draws the same trials (checked).
Trials are not queued in advance: a user's study draws them as it goes. Each trial is
replayed bare as soon as it ends (from the trial loop's progress hook, which ``tuner run``'s
progress line uses too): seed, build, initialise and train the same configuration for exactly
the epochs it trained in the study (pruned trials train less), with no Optuna and no storage;
its time is taken out of the study's. Pairing trial by trial (~0.2 s apart) keeps the drift of a
shared machine's speed, which moved per-study pairings by ±20%, out of the ratio:
overhead = (study time − replays) / replays − 1, per run; the table gives its median over the
rounds and its range. Runs alternate within each round.
``--postgres`` adds the same study on a scratch database of the local PostgreSQL server
(``$TUNER_TEST_PG``, default postgresql://postgres@127.0.0.1:5432/postgres), opened as tuner
opens it. The storage-only figure (each storage vs in-memory) is bench_storage.py's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import torch
from _common import machine, scratch_pg
from optuna.pruners import MedianPruner

from tuner.nn.data import load_dataset
from tuner.nn.models import MODELS, ModelSpec
from tuner.nn.schemes import apply_init
from tuner.nn.training import TrainConfig, train, use_cpu_threads
from tuner.objectives import trial_seed
from tuner.run.config import load_config
from tuner.run.loop import run_trials
from tuner.run.study import prepare_study
from tuner.search import pruners
from tuner.store.storage import open_storage
from tuner.views.real_params import real_params

OPTUNA_MEDIAN = "sqlite, Optuna's median"  # before tuner read completed trials once per trial


@contextlib.contextmanager
def median_pruner(cls: type | None) -> Iterator[None]:
    """Build ``pruner = "median"`` from ``cls`` instead of tuner's (None: tuner's)."""
    real = pruners.CLASSES["median"]
    pruners.CLASSES["median"] = cls or real
    try:
        yield
    finally:
        pruners.CLASSES["median"] = real


class Replay:
    """Progress hook that trains each finished trial again, bare, and keeps the seconds."""

    def __init__(self, config) -> None:
        self.config, self.seconds, self.done = config, 0.0, []
        self.data = load_dataset("digits", seed=config.seed)
        self.fixed = {p.name: p.value for p in config.space.params if p.kind == "fixed"}

    def start(self, study, total, timeout) -> None: ...
    def retotal(self, total) -> None: ...
    def stop(self) -> None: ...

    def trial_finished(self, trial, best) -> None:
        started = time.perf_counter()
        epochs = len(trial.user_attrs.get("curve", {}).get("val_loss", []))
        hp = real_params(trial)
        self.done.append((hp, trial.number, epochs))
        if epochs:
            hp = {**self.fixed, **hp}
            seed = trial_seed(self.config.seed, trial.number)
            torch.manual_seed(seed)
            spec = ModelSpec(self.data.n_features, self.data.n_classes, None, hp["depth"],
                             hp["width"], hp["activation"])
            model = apply_init(MODELS.get("mlp")(spec), hp["init"], hp["activation"])
            cfg = TrainConfig(lr=hp["lr"], batch_size=hp["batch_size"], epochs=epochs,
                              optimizer=hp["optimizer"], momentum=hp["momentum"])
            train(model, self.data, cfg, generator=torch.Generator().manual_seed(seed))
        self.seconds += time.perf_counter() - started


def study_run(config, n_trials, storage) -> tuple[float, float, list[tuple[dict, int, int]]]:
    """Seconds of the run without the replays, seconds of the bare replays, and (params, trial
    number, epochs trained) per trial."""
    study = prepare_study(config, storage)
    replay = Replay(config)
    started = time.perf_counter()
    run_trials(study, config, n_trials=n_trials, budget=None, progress=replay)
    elapsed = time.perf_counter() - started
    return elapsed - replay.seconds, replay.seconds, replay.done


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--postgres", action="store_true",
                   help="also on the local PostgreSQL server (a scratch database)")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # as the command does (tuner.cli): the patient pruner's warning, once per study, hid the table
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    use_cpu_threads()
    config = load_config("studies/quickstart.toml", n_trials=args.trials)
    no_pictures = config.to_dict()
    no_pictures["objective"]["artifacts"] = False
    from tuner.run.config import config_from_dict

    plain = config_from_dict(no_pictures, config.source)
    kinds = {"sqlite": config, "sqlite, no pictures": plain, OPTUNA_MEDIAN: config,
             "in-memory": config}
    if args.postgres:
        kinds["postgresql"] = config
    times: dict[str, list[float]] = {k: [] for k in kinds}
    bare: dict[str, list[float]] = {k: [] for k in kinds}
    print(f"machine: {machine()}")
    print(f"quickstart study, {args.trials} identical trials, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp, (
            scratch_pg() if args.postgres else contextlib.nullcontext()) as pg_url:
        os.environ["TUNER_ARTIFACT_DIR"] = str(Path(tmp) / "artifacts")
        study_run(plain.with_overrides(name="warm-up"), 3, optuna.storages.InMemoryStorage())
        for r in range(args.rounds):
            runs = []
            for kind, cfg in kinds.items():
                db = Path(tmp) / f"{r}-{len(times[kind])}-{len(kind)}.db"
                storage = (optuna.storages.InMemoryStorage() if kind == "in-memory"
                           else open_storage(pg_url if kind == "postgresql"
                                             else f"sqlite:///{db}"))
                with median_pruner(MedianPruner if kind == OPTUNA_MEDIAN else None):
                    elapsed, replayed, done = study_run(
                        cfg.with_overrides(name=f"b{r}{len(kind)}"), args.trials, storage)
                runs.append(done)
                times[kind].append(elapsed / args.trials)
                bare[kind].append(replayed / args.trials)
            if any(done != runs[0] for done in runs):
                print("  warning: the runs drew different trials; per-trial times still compare")
            print(f"  round {r + 1}: " + "  ".join(
                f"{k} {times[k][-1] * 1000:.0f}/{bare[k][-1] * 1000:.0f} ms" for k in kinds),
                flush=True)
    print(f"{'per trial (median of rounds)':<32} {'ms':>7} {'bare ms':>8} "
          f"{'overhead vs its own bare replays':>36}")
    for kind in kinds:
        paired = [k / b - 1 for k, b in zip(times[kind], bare[kind], strict=True)]
        ms = statistics.median((k - b) * 1000 for k, b in zip(times[kind], bare[kind],
                                                               strict=True))
        print(f"{'tuner, ' + kind:<32} {statistics.median(times[kind]) * 1000:7.1f} "
              f"{statistics.median(bare[kind]) * 1000:8.1f} {ms:8.1f} ms "
              f"{statistics.median(paired):6.1%}  (rounds: {min(paired):.1%} to "
              f"{max(paired):.1%})")
    print(f"goal (issue 11): at most 15% on SQLite, 25% on PostgreSQL; load average after: "
          f"{machine().rsplit('load average ', 1)[1]}")


if __name__ == "__main__":
    main()
