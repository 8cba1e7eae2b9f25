"""`tuner serve` as a real subprocess on a free 127.0.0.1 port, through HTTP: the token, the
login page, the allow-list, the data root, the body cap, a study submitted and run by the
server's own pool, and schemathesis against the server's own OpenAPI description."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, TUNER, merged, run_tuner, to_toml

pytestmark = pytest.mark.slow

TOKEN = "test-token-" + "x" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Server:
    def __init__(self, proc: subprocess.Popen[str], base: str, lines: list[str]) -> None:
        self.proc, self.base, self.lines = proc, base, lines

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None
             = None, raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json",
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                payload = r.read()
                status, got = r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            payload, status, got = e.read(), e.code, dict(e.headers)
        try:
            return status, json.loads(payload), got
        except ValueError:
            return status, payload.decode("utf-8", "replace"), got


def start_server(folder: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    full = {k: v for k, v in os.environ.items() if k not in ("TUNER_STORAGE",)}
    proc = subprocess.Popen([TUNER, "serve", "--port", "0", *args], cwd=folder,
                            env={**full, "TUNER_API_TOKEN": TOKEN, **(env or {})}, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("tuner serve exited: " + "".join(lines))
        lines.append(line)
        if (m := re.search(r"on (http://127\.0\.0\.1:\d+)", line)):
            server = Server(proc, m.group(1), lines)
            while server.call("GET", "/healthz")[0] != 200:
                time.sleep(0.1)
            return server
    raise AssertionError("tuner serve did not start: " + "".join(lines))


def stop(server: Server) -> str:
    server.proc.terminate()
    try:
        rest, _ = server.proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        rest, _ = server.proc.communicate()
    return "".join(server.lines) + (rest or "")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(*args: str, **kwargs: Any) -> Server:
        started.append(start_server(tmp_path, "--storage", f"sqlite:///{tmp_path / 'q.db'}",
                                    *args, **kwargs))
        return started[-1]

    yield make
    for s in started:
        if s.proc.poll() is None:
            stop(s)


def study_text(name: str = "tiny", study: dict[str, Any] | None = None, **sections: Any) -> str:
    return to_toml(merged(TINY, study={"name": name, "n_trials": 2, **(study or {})},
                          **sections))


def test_every_request_needs_the_token(serve: Callable[..., Server]) -> None:
    s = serve()
    assert s.call("GET", "/healthz")[:2] == (200, {"status": "ok"})
    for path in ("/api/v1/studies", "/api/v1/workers", "/openapi.json", "/api/studies",
                 "/dashboard/"):
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                        {"Authorization": TOKEN}, {"Cookie": "tuner_token=nope"}):
            status, _, got = s.call("GET", path, headers=headers)
            assert status == 401, (path, headers, status)
            assert got.get("www-authenticate") == "Bearer"
    status, _body, _ = s.call("POST", "/api/v1/studies", {"study_file": study_text()})
    assert status == 401
    assert s.call("GET", "/api/v1/studies", headers=AUTH)[1]["studies"] == []  # nothing done
    assert s.call("GET", "/api/v1/studies", headers=AUTH)[0] == 200


def test_the_dashboard_asks_for_the_token_once_and_keeps_it_in_a_cookie(
        serve: Callable[..., Server]) -> None:
    s = serve()
    jar = CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

    def get(path: str, data: bytes | None = None) -> tuple[int, str, dict[str, str]]:
        request = urllib.request.Request(s.base + path, data=data,
                                         headers={"Accept": "text/html"})
        try:
            with browser.open(request, timeout=30) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    status, _, headers = get("/dashboard/studies/1")
    assert status == 303 and headers["location"] == "/login?next=/dashboard/studies/1"
    status, page, _ = get("/login?next=/dashboard/studies/1")
    assert status == 200 and 'name="token"' in page and 'value="/dashboard/studies/1"' in page
    status, _, headers = get("/login", b"token=wrong&next=/dashboard/")
    assert status == 303 and "wrong=1" in headers["location"] and not list(jar)
    status, _, headers = get("/login", b"token=" + TOKEN.encode() + b"&next=//evil.example/")
    assert status == 303 and headers["location"] == "/dashboard/"  # never another site
    cookie = next(iter(jar))
    assert cookie.name == "tuner_token" and cookie.has_nonstandard_attr("HttpOnly")
    status, page, _ = get("/dashboard/")
    assert status == 200 and "Optuna Dashboard" in page
    status, body, _ = get("/api/studies")  # the dashboard's own API, with the cookie
    assert status == 200 and "study_summaries" in body


def test_a_submitted_study_runs_on_the_servers_pool(serve: Callable[..., Server],
                                                    tmp_path: Path) -> None:
    s = serve("--workers", "1")
    status, row, _ = s.call("POST", "/api/v1/studies",
                            {"study_file": study_text("served"), "priority": 3}, AUTH)
    assert status == 201, row
    assert (row["name"], row["state"], row["priority"], row["budget"]) == \
        ("served", "queued", 3, 2)
    assert row["metric"] == "val_accuracy" and row["direction"] == "maximize"
    deadline = time.monotonic() + 180
    while s.call("GET", "/api/v1/studies/served", headers=AUTH)[1]["state"] != "finished":
        assert time.monotonic() < deadline, stop(s)
        time.sleep(0.5)
    status, best, _ = s.call("GET", "/api/v1/studies/served/best", headers=AUTH)
    assert status == 200 and len(best["trials"]) == 1
    assert set(best["trials"][0]["params"]) >= {"lr", "batch_size", "init"}
    status, trials, _ = s.call("GET", "/api/v1/studies/served/trials", headers=AUTH)
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(t["user_attrs"]["worker"] for t in trials)
    status, workers, _ = s.call("GET", "/api/v1/workers", headers=AUTH)
    assert status == 200 and len(workers) == 1 and workers[0]["last_heartbeat_s_ago"] < 60
    # through the commands, as a user would
    env = {"TUNER_API_TOKEN": TOKEN}
    r = run_tuner("queue", "--server", s.base, cwd=tmp_path, env=env)
    assert r.returncode == 0 and "served" in r.stdout and "finished" in r.stdout, r.stderr
    r = run_tuner("resume", "served", "--n-trials", "1", "--storage",
                  f"sqlite:///{tmp_path / 'q.db'}", cwd=tmp_path)
    assert r.returncode == 0 and "queued with 1 more trial" in r.stdout, r.stderr
    r = run_tuner("pause", "served", "--server", s.base, cwd=tmp_path,
                  env={"TUNER_API_TOKEN": "wrong-token-wrong-token"})
    assert r.returncode == 2 and "refused the token" in r.stderr


def test_submitted_objectives_come_from_the_allow_list_only(serve: Callable[..., Server],
                                                            tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\ndef objective(trial, ctx):\n    return 0.0\n")
    (tmp_path / "mine.py").write_text((tmp_path / "evil.py").read_text().replace(
        str(marker), str(tmp_path / "mine-imported")))
    s = serve("--allow-objective", "mine:objective")
    for name in ("evil:objective", "os:system", "builtins:exec"):
        status, body, _ = s.call("POST", "/api/v1/studies", {"study_file": study_text(
            "x", objective={"name": name, "dataset": None, "model": None, "epochs": None},
            study={"name": "x", "direction": "maximize"})}, AUTH)
        assert status == 403 and "not allowed on this server" in body["detail"], body
    assert not marker.exists()  # never imported
    status, body, _ = s.call("POST", "/api/v1/studies", {"study_file": study_text(
        "mine", objective={"name": "mine:objective", "dataset": None, "model": None,
                           "epochs": None},
        study={"name": "mine", "direction": "maximize"})}, AUTH)
    assert status == 201, body
    assert [r["name"] for r in s.call("GET", "/api/v1/studies", headers=AUTH)[1]["studies"]] \
        == ["mine"]


def test_data_files_must_lie_under_the_data_root(serve: Callable[..., Server],
                                                 tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    rows = "a,b,label\n" + "".join(f"{i % 7},{i % 5},{i % 2}\n" for i in range(80))
    (root / "ok.csv").write_text(rows)
    (tmp_path / "secret.csv").write_text(rows)
    (root / "link.csv").symlink_to(tmp_path / "secret.csv")
    csv = {"dataset": "csv", "target": "label"}
    without = serve()
    status, body, _ = without.call("POST", "/api/v1/studies", {"study_file": study_text(
        "f", objective={**csv, "path": "ok.csv"})}, AUTH)
    assert status == 403 and "--data-root" in body["detail"]
    stop(without)
    s = serve("--data-root", str(root))
    for path in ("../secret.csv", str(tmp_path / "secret.csv"), "link.csv", "sub/../../secret.csv"):
        status, body, _ = s.call("POST", "/api/v1/studies", {"study_file": study_text(
            "f", objective={**csv, "path": path})}, AUTH)
        assert status == 403 and "outside the server's data root" in body["detail"], (path, body)
    status, body, _ = s.call("POST", "/api/v1/studies", {"study_file": study_text(
        "f", objective={**csv, "path": "ok.csv"})}, AUTH)
    assert status == 201, body
    assert [r["name"] for r in s.call("GET", "/api/v1/studies", headers=AUTH)[1]["studies"]] \
        == ["f"]


def test_bad_requests_are_refused_with_a_reason(serve: Callable[..., Server]) -> None:
    s = serve()
    # a body over the cap is refused from its Content-Length, before it is read (a client
    # still sending 2 MiB may see the connection closed first: only the header is sent here)
    import http.client

    conn = http.client.HTTPConnection(s.base.removeprefix("http://"), timeout=30)
    conn.putrequest("POST", "/api/v1/studies")
    for key, value in {**AUTH, "Content-Type": "application/json",
                       "Content-Length": str(2 << 20)}.items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and b"over" in response.read()
    conn.close()
    cases = [
        ({"study_file": "[study\n"}, 422, "invalid TOML"),
        ({"study_file": study_text(space={"lr": None, "batch_size": None, "init": None,
                                          "width": None, "depth": None})}, 422, "[space]"),
        ({"study_file": study_text(), "priority": "high"}, 422, "priority"),
        ({"study_file": study_text(), "seed": False}, 422, "seed"),
        ({"study_file": study_text(), "surprise": 1}, 422, "surprise"),
    ]
    for request, code, word in cases:
        status, body, _ = s.call("POST", "/api/v1/studies", request, AUTH)
        assert status == code and word in json.dumps(body), (request, body)
    status, body, _ = s.call("POST", "/api/v1/studies/nope/pause", headers=AUTH)
    assert status == 404 and "nope" in body["detail"]
    status, body, got = s.call("DELETE", "/api/v1/studies", headers=AUTH)
    assert status == 405 and set(got["allow"].split(", ")) == {"GET", "POST"}
    assert s.call("GET", "/api/v1/studies", headers=AUTH)[1]["studies"] == []


def test_a_password_in_the_storage_url_never_reaches_the_terminal(tmp_path: Path,
                                                                  own_pg_url: str) -> None:
    with_password = own_pg_url.replace("postgres@", "postgres:hunter2secret@")
    s = start_server(tmp_path, "--storage", with_password, "--token-file",
                     str(_token_file(tmp_path)))
    status, body, _ = s.call("GET", "/api/v1/studies", headers=AUTH)
    assert status == 200
    output = stop(s)
    assert "hunter2secret" not in output and "***" in output
    assert "hunter2secret" not in json.dumps(body)


def _token_file(folder: Path) -> Path:
    path = folder / "token"
    path.write_text(TOKEN + "\n")
    return path


def test_serve_makes_a_private_token_file_and_refuses_a_weak_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TUNER_API_TOKEN"}
    proc = subprocess.Popen([TUNER, "serve", "--port", "0", "--storage",
                             f"sqlite:///{tmp_path / 'q.db'}"], cwd=tmp_path, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server = None
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert f"API token: in {tmp_path / 'q.db.api-token'}" in "".join(lines), lines
        token_file = tmp_path / "q.db.api-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert len(token_file.read_text().strip()) >= 32
        assert token_file.read_text().strip() not in "".join(lines)  # never printed
        server = Server(proc, re.search(r"(http://127\.0\.0\.1:\d+)", lines[0]).group(1), lines)
        got = server.call("GET", "/api/v1/studies",
                          headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
        assert got[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    r = run_tuner("serve", "--port", "0", cwd=tmp_path, env={"TUNER_API_TOKEN": "short"})
    assert r.returncode == 2 and "too short" in r.stderr
    r = run_tuner("serve", "--port", "0", "--data-root", str(tmp_path / "none"), cwd=tmp_path,
                  env={"TUNER_API_TOKEN": TOKEN})
    assert r.returncode == 2 and "is not a folder" in r.stderr


def test_schemathesis_finds_nothing_against_the_servers_own_openapi(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    s = serve()
    # positive_data_acceptance is left out: a study file is TOML inside a JSON string, and no
    # schema can say which texts are valid studies (an invalid one is a 422, rightly)
    r = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run",
                        f"{s.base}/openapi.json", "-H", f"Authorization: Bearer {TOKEN}",
                        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                        "--max-examples", "10", "-w", "1", "--seed", "1"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its cache
    assert r.returncode == 0, r.stdout[-6000:]
    assert "10 selected" in r.stdout


@pytest.mark.browser
def test_the_readme_way_two_studies_on_the_servers_pool_seen_through_the_login(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    from _browser import ink, signed_in_screenshot

    s = serve("--workers", "2")
    env = {"TUNER_API_TOKEN": TOKEN}
    for name, priority in (("urgent", "5"), ("later", "0")):
        (tmp_path / f"{name}.toml").write_text(study_text(name, study={"n_trials": 3}))
        r = run_tuner("submit", f"{name}.toml", "--priority", priority, "--server", s.base,
                      cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 240
    while {r["state"] for r in s.call("GET", "/api/v1/studies", headers=AUTH)[1]["studies"]} \
            != {"finished"}:
        assert time.monotonic() < deadline, stop(s)
        time.sleep(0.5)
    rows = s.call("GET", "/api/v1/studies", headers=AUTH)[1]["studies"]
    assert [(r["name"], r["finished"], r["budget"]) for r in rows] == \
        [("urgent", 3, 3), ("later", 3, 3)]
    r = run_tuner("queue", "--server", s.base, cwd=tmp_path, env={**env, "COLUMNS": "150"})
    assert r.returncode == 0 and "urgent" in r.stdout and "pool: 2 worker(s)" in r.stdout
    (tmp_path / "queue.txt").write_text(r.stdout)
    png, text = signed_in_screenshot(s.base, TOKEN, "/dashboard/", "serve-dashboard.png",
                                     until=lambda t: "urgent" in t and "later" in t)
    assert ink(png) > 0.02 and "login" not in text.lower()
    png, _ = signed_in_screenshot(s.base, TOKEN, "/dashboard/studies/1",
                                     "serve-dashboard-study.png",
                                     until=lambda t: "urgent" in t and "val_accuracy" in t)
    assert ink(png) > 0.02
