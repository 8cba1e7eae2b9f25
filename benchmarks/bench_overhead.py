"""(d) tuner's overhead per trial vs the bare training time, on SQLite (and in memory).

    .venv/bin/python benchmarks/bench_overhead.py [--trials 30] [--rounds 3] [--postgres]

The quickstart study as it ships (digits, MLP 2x64, 10 epochs, TPE, median pruner) runs
through :func:`tuner.run.study.optimize` (the ``tuner run`` path) on a SQLite file and in memory,
with the study's defaults (init health check, per-trial pictures) and with pictures off. The
sampler is seeded and training is deterministic, so every run draws the same trials (checked).
Trials are not queued in advance: a user's study draws them as it goes. Then every trial is
replayed bare: seed, build, initialise and train the same configuration for exactly the epochs
it trained in the study (pruned trials train less), with no Optuna and no storage. Runs
alternate within each round, and the bare replay runs after the round's first study and again
at its end (their mean is the round's bare time). Overhead is paired by round: (study time −
that round's bare time) / bare; the table gives its median over the rounds and its range, so
that a drift of the machine's speed across rounds (±5% on a shared box) stays out of it.
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


def study_run(config, n_trials, storage) -> tuple[float, list[tuple[dict, int, int]]]:
    """Seconds for the whole run, and (params, trial number, epochs trained) per trial."""
    study = prepare_study(config, storage)
    started = time.perf_counter()
    run_trials(study, config, n_trials=n_trials, budget=None)
    elapsed = time.perf_counter() - started
    done = [(real_params(t), t.number, len(t.user_attrs.get("curve", {}).get("val_loss", [])))
            for t in study.get_trials(deepcopy=False)]
    return elapsed, done


def bare_run(config, done) -> float:
    """The same trainings with nothing around them: seconds."""
    data = load_dataset("digits", seed=config.seed)
    settings = {p.name: p.value for p in config.space.params if p.kind == "fixed"}
    started = time.perf_counter()
    for hp, number, epochs in done:
        hp = {**settings, **hp}
        if epochs == 0:
            continue
        seed = trial_seed(config.seed, number)
        torch.manual_seed(seed)
        spec = ModelSpec(data.n_features, data.n_classes, None, hp["depth"], hp["width"],
                         hp["activation"])
        model = apply_init(MODELS.get("mlp")(spec), hp["init"], hp["activation"])
        cfg = TrainConfig(lr=hp["lr"], batch_size=hp["batch_size"], epochs=epochs,
                          optimizer=hp["optimizer"], momentum=hp["momentum"])
        train(model, data, cfg, generator=torch.Generator().manual_seed(seed))
    return time.perf_counter() - started


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
    times: dict[str, list[float]] = {k: [] for k in [*kinds, "bare"]}
    print(f"machine: {machine()}")
    print(f"quickstart study, {args.trials} identical trials, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp, (
            scratch_pg() if args.postgres else contextlib.nullcontext()) as pg_url:
        os.environ["TUNER_ARTIFACT_DIR"] = str(Path(tmp) / "artifacts")
        study_run(plain.with_overrides(name="warm-up"), 3, optuna.storages.InMemoryStorage())
        for r in range(args.rounds):
            runs = []
            first_bare = None
            for kind, cfg in kinds.items():
                db = Path(tmp) / f"{r}-{len(times[kind])}-{len(kind)}.db"
                storage = (optuna.storages.InMemoryStorage() if kind == "in-memory"
                           else open_storage(pg_url if kind == "postgresql"
                                             else f"sqlite:///{db}"))
                with median_pruner(MedianPruner if kind == OPTUNA_MEDIAN else None):
                    elapsed, done = study_run(cfg.with_overrides(name=f"b{r}{len(kind)}"),
                                              args.trials, storage)
                runs.append(done)
                times[kind].append(elapsed / args.trials)
                if first_bare is None:  # the same trials, bare, early in the round
                    first_bare = bare_run(config, done) / args.trials
            if any(done != runs[0] for done in runs):
                print("  warning: the runs drew different trials; per-trial times still compare")
            times["bare"].append((first_bare + bare_run(config, runs[0]) / args.trials) / 2)
            print(f"  round {r + 1}: " + "  ".join(f"{k} {v[-1] * 1000:.0f} ms"
                                                  for k, v in times.items()), flush=True)
    bare = statistics.median(times["bare"])
    print(f"{'per trial (median of rounds)':<32} {'ms':>7} "
          f"{'overhead vs bare, paired by round':>36}")
    print(f"{'bare training':<32} {bare * 1000:7.1f}")
    for kind in kinds:
        t = statistics.median(times[kind])
        paired = [(k - b) / b for k, b in zip(times[kind], times["bare"], strict=True)]
        ms = statistics.median((k - b) * 1000 for k, b in zip(times[kind], times["bare"],
                                                               strict=True))
        print(f"{'tuner, ' + kind:<32} {t * 1000:7.1f} {ms:8.1f} ms "
              f"{statistics.median(paired):6.1%}  (rounds: {min(paired):.1%} to "
              f"{max(paired):.1%})")
    print(f"goal (issue 11): at most 15% on SQLite, 25% on PostgreSQL; load average after: "
          f"{machine().rsplit('load average ', 1)[1]}")


if __name__ == "__main__":
    main()
