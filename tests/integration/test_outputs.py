"""Output files (-o) onto targets that are not regular files: a device node is written into,
never replaced (as root, ``tuner report … -o /dev/null`` once turned the machine's /dev/null
into a 4.9 MB file). Tested on a node made in tmp_path, never on the real /dev/null."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import optuna
import pytest
from conftest import run_tuner

from tuner.core.paths import replaced_on_write

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")


@pytest.fixture
def null(tmp_path: Path) -> Path:
    node = tmp_path / "dev" / "null"
    node.parent.mkdir()
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return node


def _is_null(node: Path) -> bool:
    st = node.stat()
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


@needs_root
def test_report_onto_a_device_node_writes_into_it(null: Path, tmp_path: Path) -> None:
    study = optuna.create_study(study_name="r", storage=f"sqlite:///{tmp_path / 'tuner.db'}",
                                direction="maximize")
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=3)
    r = run_tuner("report", "r", "-o", str(null), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _is_null(null)
    assert sorted(p.name for p in null.parent.iterdir()) == ["null"]  # no temporary left


@needs_root
@pytest.mark.slow
def test_pretrain_onto_a_device_node_writes_into_it(null: Path, tmp_path: Path) -> None:
    r = run_tuner("pretrain", "--dataset", "iris", "--epochs", "1", "-o", str(null),
                  cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _is_null(null) and "not read back" in r.stdout
    assert sorted(p.name for p in null.parent.iterdir()) == ["null"]


def test_how_each_kind_of_target_is_written(tmp_path: Path) -> None:
    assert replaced_on_write(tmp_path / "missing.html")
    (tmp_path / "file.html").write_text("old")
    assert replaced_on_write(tmp_path / "file.html")
    os.mkfifo(tmp_path / "fifo")
    assert not replaced_on_write(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        with pytest.raises(OSError, match="neither a regular file"):
            replaced_on_write(tmp_path / "sock")
