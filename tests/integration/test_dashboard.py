"""``tuner dashboard``: the real command in a subprocess, read over HTTP and in Chromium."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from tests._browser import dump_dom, ink, screenshot
from tests.conftest import TINY, TUNER, merged, to_toml

pytestmark = pytest.mark.slow
URL_RE = re.compile(r"dashboard on (http://\S+/dashboard/)")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("TUNER_STORAGE", "TUNER_ARTIFACT_DIR")}


@dataclass
class Served:
    folder: Path
    url: str  # http://127.0.0.1:PORT/dashboard/
    proc: subprocess.Popen[str]

    @property
    def base(self) -> str:
        return self.url.removesuffix("/dashboard/")

    def get(self, path: str) -> tuple[str, bytes]:
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return r.headers["Content-Type"], r.read()


def start(*args: str, cwd: Path) -> Served:
    """``tuner dashboard --port 0 ARGS`` in ``cwd``; returns once it printed its URL."""
    proc = subprocess.Popen([TUNER, "dashboard", "--port", "0", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 1)[0]:
            match = URL_RE.search(proc.stdout.readline())
            if match:
                return Served(cwd, match[1], proc)
    proc.kill()
    pytest.fail(f"the dashboard did not start: {proc.communicate()[1]}")


def stop(served: Served) -> tuple[int, str]:
    served.proc.send_signal(signal.SIGINT)
    _, err = served.proc.communicate(timeout=30)
    return served.proc.returncode, err


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("dashboard")
    (folder / "study.toml").write_text(to_toml(merged(TINY, study={"name": "dash-study"})))
    proc = subprocess.run([TUNER, "run", "study.toml"], cwd=folder, env=_env(), text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    board = start(cwd=folder)
    yield board
    if board.proc.poll() is None:
        stop(board)


def _best(served: Served) -> optuna.trial.FrozenTrial:
    study = optuna.load_study(study_name="dash-study",
                              storage=f"sqlite:///{served.folder / 'tuner.db'}")
    return study.best_trial


def test_binds_localhost_and_serves_the_study_with_its_pictures(served):
    assert served.url.startswith("http://127.0.0.1:")
    _, body = served.get("/api/studies")
    assert [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["dash-study"]
    _, body = served.get("/api/studies/1?after=0")
    detail = json.loads(body)
    assert detail["objective_names"] == ["val_accuracy"]  # what a person reads, not "Objective 0"
    trials = detail["trials"]
    assert len(trials) == 3
    for t in trials:
        files = {a["filename"]: a for a in t["artifacts"]}
        assert set(files) == {"init-activations.svg", "learning-curve.svg"}
        init_id = files["init-activations.svg"]["artifact_id"]
        kind, svg = served.get(f"/artifacts/1/{t['trial_id']}/{init_id}")
        assert kind == "image/svg+xml" and svg.startswith(b"<svg") and b"layer 1" in svg


def test_its_own_views_show_the_real_batch_size(served):
    """The dashboard's trial table, plots and importance read ``batch_size: 16``, not the
    searched exponent ``batch_size_log2: 4`` (issue 12 item 7); the stored study keeps it."""
    stored = {t.number: t for t in optuna.load_study(
        study_name="dash-study", storage=f"sqlite:///{served.folder / 'tuner.db'}").trials}
    _, body = served.get("/api/studies/1?after=0")
    detail = json.loads(body)
    for t in detail["trials"]:
        params = {p["name"]: p["param_external_value"] for p in t["params"]}
        assert set(params) == {"lr", "batch_size", "init"}
        real = stored[t["number"]].user_attrs["batch_size"]
        assert params["batch_size"] == str(real) and real in (16, 32)
        assert stored[t["number"]].params["batch_size_log2"] == real.bit_length() - 1
    for key in ("union_search_space", "intersection_search_space"):
        assert {p["name"] for p in detail[key]} == {"lr", "batch_size", "init"}, key
    _, body = served.get("/api/studies/1/param_importances")
    names = {p["name"] for p in json.loads(body)["param_importances"][0]}
    assert "batch_size" in names and "batch_size_log2" not in names


@pytest.mark.browser
def test_study_page_renders_name_and_plots_in_chromium(served):
    dom = dump_dom(served.url + "studies/1", until=lambda d: "main-svg" in d)
    assert "dash-study" in dom
    assert "main-svg" in dom, "no plotly figure was drawn (history plot)"
    png = screenshot(served.url + "studies/1", "dashboard-study.png", min_ink=0.05)
    assert ink(png) > 0.05, f"{png} looks blank"


@pytest.mark.browser
def test_trial_page_shows_its_pictures_in_chromium(served):
    page = served.url + f"studies/1/trials?numbers={_best(served).number}"
    dom = dump_dom(page, until=lambda d: "learning-curve.svg" in d and "/artifacts/1/" in d)
    assert "init-activations.svg" in dom and "learning-curve.svg" in dom
    assert re.search(r'<img[^>]+src="/artifacts/1/\d+/[0-9a-f-]+"', dom), "pictures not shown"
    png = screenshot(page, "dashboard-trial.png", size=(1400, 1300), min_ink=0.05)
    assert ink(png) > 0.05, f"{png} looks blank"
    _, body = served.get("/api/studies/1?after=0")
    trial = next(t for t in json.loads(body)["trials"] if t["number"] == _best(served).number)
    for art in trial["artifacts"]:
        name = "dashboard-" + art["filename"].replace(".svg", ".png")
        png = screenshot(f"{served.base}/artifacts/1/{trial['trial_id']}/{art['artifact_id']}",
                         name, size=(780, 330), min_ink=0.02)
        assert ink(png) > 0.02, f"{png} looks blank"


def test_ctrl_c_stops_it_cleanly_and_frees_the_port(served, tmp_path):
    board = start(cwd=served.folder)
    port = int(board.base.rsplit(":", 1)[1])
    code, err = stop(board)
    assert code == 0 and "dashboard stopped" in err and "Traceback" not in err, err
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again


@pytest.mark.parametrize("args, message", [
    (["--port", "{busy}"], "the port is busy"),
    (["--host", "192.0.2.1"], "'192.0.2.1' is not an address of this machine"),
    (["--storage", "sqlite:///{tmp}/none.db"], "no storage at"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/x"], "cannot open storage"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, args, message):
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        fill = {"tmp": tmp_path, "busy": busy.getsockname()[1]}
        proc = subprocess.run([TUNER, "dashboard", *(a.format(**fill) for a in args)],
                              cwd=tmp_path, env=_env(), text=True, capture_output=True,
                              timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "secret" not in proc.stderr
    assert not (tmp_path / "tuner-artifacts").exists(), "nothing written"


@pytest.mark.postgres
def test_prints_the_storage_with_its_password_masked(pg_url, tmp_path):
    url = pg_url.replace("postgres@", "postgres:s3cret@", 1)  # trust auth ignores it
    board = start("--storage", url, "--artifact-dir", str(tmp_path / "pics"), cwd=tmp_path)
    code, err = stop(board)
    assert code == 0, err
    assert "postgres:***@" in err and "s3cret" not in err
    assert f"artifacts {tmp_path / 'pics'}" in err
