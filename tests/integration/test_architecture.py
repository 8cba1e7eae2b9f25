"""The package's layers hold (ARCHITECTURE.md): the import-linter contracts in pyproject.toml,
no import cycle counting function-local imports, and no hidden function-local import of a
tuner module outside the documented lazy loaders."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp
import optuna
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tuner"
# Where a function-local import of a tuner module is allowed, and why (ARCHITECTURE.md):
LAZY_LOADERS = {
    "tuner/__main__.py": "the console entry answers Ctrl-C before the CLI is imported",
    "tuner/cli": "each command imports only what it needs, so --help and list stay light",
}


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("tuner", cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []


def function_local_tuner_imports(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(root)}:{node.lineno} {n}" for n in names
                      if n == "tuner" or n.startswith("tuner.")]
    return found


def test_tuner_modules_are_imported_at_the_top_except_by_the_lazy_loaders() -> None:
    hidden = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if any(rel == lazy or rel.startswith(lazy + "/") for lazy in LAZY_LOADERS):
            continue
        hidden += function_local_tuner_imports(path)
    assert hidden == []


def test_the_checker_sees_a_function_local_import(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("def f():\n    from tuner.core import errors\n")
    assert function_local_tuner_imports(tmp_path / "m.py", tmp_path) == ["m.py:2 tuner.core"]


HEAVY = ("torch", "sklearn", "plotly", "matplotlib", "alembic")  # alembic: tuner.store.schema
# list, show, export and delete read (and delete from) a plain SQLite file with the standard
# library (tuner.store.sqlite_reader, sqlite_delete)
READERS_NEVER = (*HEAVY, "optuna", "sqlalchemy")
PROBE = """
import sys
from tuner.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print("heavy:", ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
sys.exit(code or 0)
"""


@pytest.mark.parametrize(("args", "never"), [
    (["--help"], READERS_NEVER), (["list"], READERS_NEVER), (["show", "light"], READERS_NEVER),
    (["show", "light", "--json"], READERS_NEVER), (["export", "light", "-o", "-"], READERS_NEVER),
    (["list", "--storage", "sqlite:///tuner.db?timeout=9"], HEAVY),  # through Optuna
    (["delete", "light", "--yes"], READERS_NEVER),
    (["delete", "light", "--yes", "--storage", "sqlite:///tuner.db?timeout=9"], HEAVY),
])
def test_commands_that_do_not_train_never_import_torch(args: list[str], never: tuple[str, ...],
                                                       tmp_path: Path) -> None:
    study = optuna.create_study(study_name="light", storage=f"sqlite:///{tmp_path / 'tuner.db'}",
                                direction="maximize")
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=3)
    r = subprocess.run([sys.executable, "-c", PROBE.format(heavy=never), *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "TUNER_STORAGE": ""})
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "heavy:", r.stderr
