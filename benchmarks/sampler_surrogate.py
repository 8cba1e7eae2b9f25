"""Screen sampler settings in seconds on a surrogate of a study made of its own real trials.

    .venv/bin/python benchmarks/sampler_surrogate.py collect [--study studies/quickstart.toml]
        [--seeds 1000 1001] [--trials 2000] [--pool DIR]
    .venv/bin/python benchmarks/sampler_surrogate.py screen random tpe \\
        "tpe:n_startup_trials=5,gamma=0.25" gp [--seeds 1000] [--target 0.9755] [--pool DIR]

``collect`` runs the study under random search without pruning (one process per study seed,
two at a time; each seed is also a data split) and keeps every trial's parameters and its
learning curve (the metric per epoch, from the ``curve`` user attribute) in ``DIR/pool-SEED.json``.
8,000 quickstart trials take ~4 min on 2 cores.

``screen`` runs each variant (``sampler[:option=value,...]``, the options of a ``[sampler]``
table) with ``--seeds`` seeds, in memory, with tuner's own sampler and the study file's pruner.
A simulated trial asks the sampler for its parameters as the study would, finds the pool trials
with the same values of every parameter but the study's one float range (lr), takes one of the
4 nearest in that range (its log where the range is log; chosen by the seed and trial number),
and reports its curve epoch by epoch, stopping where the pruner prunes; a pool trial pruned
before its first epoch (a dead init) is pruned at step 0 with its value. Printed per variant:
runs that reached the target, expected trials to it (as ``tuner compare``), and the ratio to
random search's with a 90% interval over the seeds (paired) when ``random`` is screened too.

A screen, not a result: the surrogate mixes the pool's data splits and is kinder to TPE than the
real study (quickstart: default TPE 0.60x random here, 0.79x in ``tuner compare``), but it ranked
the settings tried in stop 24 as the real runs did (BENCHMARKS.md). Confirm a setting with
``tuner compare`` on seeds the screen did not use.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import math
import random
import subprocess
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEAREST = 4


def collect(args: argparse.Namespace) -> None:
    if args.trials < 1:
        fail(f"--trials must be >= 1, got {args.trials}")
    args.pool.mkdir(parents=True, exist_ok=True)
    cmds = [[sys.executable, __file__, "_collect_one", str(args.study), str(seed),
             str(args.trials), str(args.pool / f"pool-{seed}.json")] for seed in args.seeds]
    with ThreadPoolExecutor(2) as pool:  # each seed is its own process
        for r in pool.map(lambda c: subprocess.run(c, capture_output=True, text=True), cmds):
            if r.returncode != 0:
                fail(f"collecting failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            print(r.stdout.strip(), flush=True)


def collect_one(study_file: str, seed: int, trials: int, out: str) -> None:
    import optuna

    from tuner.run.config import config_from_dict, load_config
    from tuner.run.loop import run_trials
    from tuner.run.study import prepare_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    raw = load_config(study_file).to_dict()
    raw["study"].update(sampler="random", pruner="none", seed=seed, n_trials=trials,
                        name=f"pool-{seed}")
    raw["sampler"], raw["pruner"] = {}, {}
    config = config_from_dict(raw, f"{study_file} (pool, seed {seed})")
    study = prepare_study(config, optuna.storages.InMemoryStorage())
    run_trials(study, config, budget=trials)
    rows = [{"params": t.params, "curve": t.user_attrs.get("curve", {}).get(config.metric),
             "first": t.intermediate_values.get(0)}
            for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    Path(out).write_text(json.dumps({"seed": seed, "metric": config.metric, "rows": rows}))
    print(f"seed {seed}: {len(rows)} trials -> {out}")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class Pool:
    """The pool's trials by their non-float parameters, sorted along the float one."""

    def __init__(self, folder: Path, space) -> None:
        floats = [p for p in space.searched() if p.kind == "float"]
        if len(floats) != 1:
            fail("the surrogate needs exactly one float range in [space]")
        self.axis, self.log = floats[0].name, floats[0].log
        self.cells: dict[tuple, list[tuple[float, dict]]] = {}
        for f in sorted(folder.glob("pool-*.json")):
            for row in json.loads(f.read_text())["rows"]:
                self.cells.setdefault(self.key(row["params"]), []).append(
                    (self.x(row["params"]), row))
        if not self.cells:
            fail(f"no pool-*.json in {folder}; run `collect` first")
        for rows in self.cells.values():
            rows.sort(key=lambda r: r[0])
        self.everything: list[tuple[float, dict]] | None = None

    def key(self, params: dict) -> tuple:
        return tuple(sorted((k, v) for k, v in params.items() if k != self.axis))

    def x(self, params: dict) -> float:
        return math.log(params[self.axis]) if self.log else params[self.axis]

    def draw(self, params: dict, rng: random.Random) -> tuple[dict, bool]:
        """A pool trial near ``params``, and whether its cell was empty (then: the nearest of
        the whole pool, a poor stand-in: collect more)."""
        rows = self.cells.get(self.key(params))
        if rows is None:
            if self.everything is None:
                self.everything = sorted((r for rs in self.cells.values() for r in rs),
                                         key=lambda r: r[0])
            return self.nearest(self.everything, params, rng), True
        return self.nearest(rows, params, rng), False

    def nearest(self, rows: list[tuple[float, dict]], params: dict, rng: random.Random) -> dict:
        x = self.x(params)
        i = bisect.bisect_left(rows, x, key=lambda r: r[0])
        near = sorted(rows[max(0, i - NEAREST):i + NEAREST], key=lambda r: abs(r[0] - x))
        return rng.choice(near[:NEAREST])[1]


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        try:
            options[k.strip()] = json.loads(v.strip())  # numbers, true, false
        except ValueError:
            options[k.strip()] = v.strip()  # a word, e.g. qmc_type=halton
    return name, options


@functools.cache
def study_and_pool(study_file: str, pool_dir: str) -> tuple:
    """The study file and its pool, read once per worker process."""
    from tuner.run.config import load_config

    config = load_config(study_file)
    return config, Pool(Path(pool_dir), config.space)


def one_run(task: tuple) -> tuple[str, int, int | None, int, int]:
    study_file, pool_dir, variant, seed, target = task
    import optuna

    from tuner.run.config import config_from_dict
    from tuner.search.best_so_far import best_so_far, trials_to_target
    from tuner.search.pruners import build_pruner
    from tuner.search.samplers import build_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    config, pool = study_and_pool(study_file, pool_dir)
    name, options = parse_variant(variant)
    if name == "gp":  # its process is fitted with torch: one thread per worker, or two workers
        import torch  # oversubscribe 2 cores (load 3.7, ~3x slower; BENCHMARKS.md stop 25)

        torch.set_num_threads(1)
    raw = config.to_dict()
    raw["study"].update(sampler=name, seed=seed)
    raw["sampler"] = options
    config = config_from_dict(raw, variant)
    study = optuna.create_study(
        direction=config.direction,
        sampler=build_sampler(name, options, seed, config.space),
        pruner=build_pruner(config.pruner, config.pruner_options,
                            config.objective_settings.get("epochs", 1)))

    empty_cells: list[bool] = []

    def objective(trial: optuna.Trial) -> float:
        config.space.suggest(trial)
        row, fell_back = pool.draw(trial.params, random.Random(seed * 100_003 + trial.number))
        empty_cells.append(fell_back)
        if row["curve"] is None:
            trial.report(row["first"], 0)
            raise optuna.TrialPruned()
        for epoch, value in enumerate(row["curve"], 1):
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return row["curve"][-1]

    study.optimize(objective, n_trials=config.n_trials)
    maximize = config.direction == "maximize"
    values = [t.value if t.state.name == "COMPLETE" else None for t in study.trials]
    reached = trials_to_target(best_so_far(values, maximize), target, maximize)  # as compare
    return variant, seed, reached, config.n_trials, sum(empty_cells)


def screen(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE.parent))
    from tuner.core.errors import ConfigError
    from tuner.search.best_so_far import expected_trials, ratio_interval
    from tuner.search.samplers import build_sampler

    warnings.filterwarnings("ignore")
    config, _ = study_and_pool(str(args.study), str(args.pool))  # no pool, a bad space: say so
    for variant in args.variants:
        try:
            build_sampler(*parse_variant(variant), 0, config.space, f"variant {variant!r}")
        except ConfigError as e:
            fail(str(e))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    tasks = [(str(args.study), str(args.pool), v, s, args.target)
             for v in args.variants for s in seeds]
    runs: dict[str, dict[int, tuple[int | None, int]]] = {}
    empty = 0
    with ProcessPoolExecutor(args.jobs) as pool:
        for variant, seed, to, n, fell_back in pool.map(one_run, tasks, chunksize=8):
            runs.setdefault(variant, {})[seed] = (to, n)
            empty += fell_back
    base = [runs["random"][s] for s in seeds] if "random" in runs else None
    for v in args.variants:
        mine = [runs[v][s] for s in seeds]
        line = (f"{v:45s} reached {sum(to is not None for to, _ in mine):5d}/{len(mine)}  "
                f"expected trials {expected_trials(mine):6.2f}")
        if base and v != "random":
            lo, hi = ratio_interval(mine, base)
            line += f"  vs random {expected_trials(mine) / expected_trials(base):.2f} " \
                    f"[{lo:.2f}, {hi:.2f}]"
        print(line, flush=True)
    if empty:
        print(f"note: {empty} trials asked for parameter values the pool has no trial of; they "
              "replayed the nearest trial of any kind: collect more trials", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["_collect_one"]:
        sys.path.insert(0, str(HERE.parent))
        collect_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="run the study under random search, keep every curve")
    c.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001])
    c.add_argument("--trials", type=int, default=2000)
    s = sub.add_parser("screen", help="run sampler variants on the pool")
    s.add_argument("variants", nargs="+", help='e.g. random tpe "tpe:n_startup_trials=5"')
    s.add_argument("--seeds", type=int, default=1000)
    s.add_argument("--first-seed", type=int, default=0)
    s.add_argument("--target", type=float, required=True,
                   help="metric value to reach, e.g. 0.9755 (439/450) on the quickstart")
    s.add_argument("--jobs", type=int, default=2)
    for q in (c, s):
        q.add_argument("--study", type=Path, default=HERE.parent / "studies" / "quickstart.toml")
        q.add_argument("--pool", type=Path, default=Path("surrogate-pool"))
    args = p.parse_args()
    collect(args) if args.command == "collect" else screen(args)


if __name__ == "__main__":
    main()
