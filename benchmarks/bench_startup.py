"""Issue 11's start-up goal: the commands that do not train, timed from outside.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 5] [--before TREE]

Makes a 25-trial quickstart study in a scratch folder, then times each command as the user
waits for it (a fresh interpreter, imports included): ``--help``, ``list``, ``show``,
``export`` and ``delete`` (on a fresh copy of the database each time), and ``python -c "import
torch"`` beside them. With ``--before TREE`` (e.g. ``git worktree add TREE COMMIT``) every
command also runs with the tuner package of TREE, alternating with this one, and the table gives
before/now ratios. Goal (issue 11): each command in at most 0.5 s. Medians over ``--rounds``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine

HERE = Path(__file__).resolve().parent
QUICKSTART = HERE.parent / "studies" / "quickstart.toml"
COMMANDS = {"--help": ["--help"], "list": ["list"], "show": ["show", "quickstart"],
            "export": ["export", "quickstart", "-o", "-"],
            "delete": ["delete", "quickstart", "--yes"]}


def fresh_copy(folder: Path) -> None:
    """tuner.db as the study left it (its -wal and -shm files would belong to another one)."""
    for stale in folder.glob("tuner.db*"):
        stale.unlink()
    shutil.copy(folder / "keep.db", folder / "tuner.db")


def timed(args: list[str], cwd: Path, tree: Path | None) -> float:
    env = {**os.environ, "TUNER_STORAGE": ""}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--before", metavar="TREE", type=Path,
                   help="also time the tuner package of TREE, alternating with this one")
    args = p.parse_args()
    trees: dict[str, Path | None] = {"now": None}
    if args.before is not None:
        trees = {"before": args.before.resolve(), "now": None}
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, "-m", "tuner", "run", str(QUICKSTART)], cwd=folder,
                       check=True, capture_output=True, env={**os.environ, "TUNER_STORAGE": ""})
        with sqlite3.connect(folder / "tuner.db") as conn:  # one file holds everything
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(folder / "tuner.db", folder / "keep.db")
        fresh_copy(folder)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            times.setdefault(("import torch", "now"), []).append(
                timed([sys.executable, "-c", "import torch"], folder, None))
            for label, tree in trees.items():
                for name, command in COMMANDS.items():
                    times.setdefault((name, label), []).append(
                        timed([sys.executable, "-m", "tuner", *command], folder, tree))
                fresh_copy(folder)  # after the delete
    print(f"\n| command | {' | '.join(trees)} |{' before / now |' if len(trees) > 1 else ''}")
    print("|---|" + "---|" * (len(trees) + (len(trees) > 1)))
    for name in ["import torch", *COMMANDS]:
        medians = {label: statistics.median(times[(name, label)])
                   for label in trees if (name, label) in times}
        cells = [f"{medians[label]:.2f} s" if label in medians else "" for label in trees]
        ratio = (f" {medians['before'] / medians['now']:.2f}x |"
                 if len(medians) > 1 else (" |" if len(trees) > 1 else ""))
        print(f"| {name} | {' | '.join(cells)} |{ratio}")
    print(f"goal (issue 11): at most 0.5 s each; load average after: "
          f"{machine().rsplit('load average ', 1)[1]}")


if __name__ == "__main__":
    main()
