"""docker/: the image and the compose stack agree with the CLI.

Without a Docker engine (this machine has only the client) the files are checked as text:
compose.yaml parses, its services run commands and options the real ``tuner`` accepts, the
credentials come from the env file. Both ways of using it are checked: one study with workers
(the default services) and the shared service (``serve`` and a scalable ``pool``, profile
``serve``). Where an engine answers, the image is built and the stack runs a small study end to
end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TUNER

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
ONE_STUDY = ("study", "worker", "dashboard")
SHARED = ("serve", "pool")  # profile `serve`: tuner serve and tuner worker --pool
TUNER_SERVICES = (*ONE_STUDY, *SHARED)
# issue 30's command-line surface, which `serve` and `pool` are written against before the two
# commands land (test_every_tuner_service_runs_a_real_command checks the real CLI once they do).
PLANNED = {
    "serve": {"--storage", "--host", "--port", "--workers", "--devices", "--token-file",
              "--allow-objective", "--data-root", "--artifact-dir"},
    "worker --pool": {"--pool", "--storage", "--slots", "--devices", "--device", "--ray",
                      "--until-empty", "--n-trials", "--timeout", "--threads", "--quiet"},
}


def env_example() -> dict[str, str]:
    lines = (DOCKER / "env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` escaping."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name, op, arg = m["name"], m["op"], m["arg"] or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose would stop: {arg}")
        return arg

    return re.sub(r"(?P<escaped>\$\$)|\$\{(?P<name>\w+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}",
                  one, value)


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(raw_compose(), env_example())


def cli_help(command: str) -> str:
    done = subprocess.run([TUNER, command, "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, f"`tuner {command}` is not a command: {done.stderr}"
    return done.stdout


def published(port: str) -> tuple[str, str, str]:
    """``BIND:HOST_PORT:CONTAINER_PORT`` of a compose port entry."""
    bind, host, inside = port.rsplit(":", 2)
    return bind, host, inside


def test_compose_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", *TUNER_SERVICES}
    assert set(compose["volumes"]) == {"pgdata", "artifacts"}
    # `up` alone starts the one-study way, as before; the shared service only when asked for.
    for name in ("postgres", *ONE_STUDY):
        assert "profiles" not in compose["services"][name], name
    for name in SHARED:
        assert compose["services"][name]["profiles"] == ["serve"], name


def test_the_header_says_how_to_use_both_ways() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    header = text[: text.index("\nname:")]
    assert "cp docker/env.example docker/.env" in header
    assert "docker compose -f docker/compose.yaml up --build --scale worker=" in header
    shared = re.search(r"docker compose -f docker/compose.yaml up .*--scale pool=\d+ (.*)",
                       header)
    assert shared and set(shared[1].split()) == set(SHARED)  # naming them starts the profile
    assert "tuner submit" in header
    assert "--profile serve down" in header  # plain `down` leaves a profile's containers


def test_postgres_has_a_volume_a_healthcheck_and_credentials_from_the_env_file(
    compose: dict[str, Any],
) -> None:
    pg = compose["services"]["postgres"]
    assert "pgdata:/var/lib/postgresql/data" in pg["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert pg["env_file"] == ".env"
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(env_example())
    assert "environment" not in pg  # no credentials written in compose.yaml itself
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


@pytest.mark.parametrize("service", TUNER_SERVICES)
def test_every_tuner_service_runs_a_real_command_with_real_options(
    service: str, compose: dict[str, Any]
) -> None:
    command = compose["services"][service]["command"]
    done = subprocess.run([TUNER, command[0], "--help"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0 and service in SHARED:
        pytest.skip(f"`tuner {command[0]}` does not exist yet (issue 30); "
                    "test_the_shared_services_use_the_planned_cli checks it")
    text = cli_help(command[0])
    if service == "pool" and not re.search(r"--pool\b", text):
        pytest.skip("`tuner worker` has no --pool yet (issue 30); "
                    "test_the_shared_services_use_the_planned_cli checks it")
    for option in (a for a in command[1:] if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}\b", text), (
            f"{service}: `tuner {command[0]}` has no option {option}")


@pytest.mark.parametrize("service", SHARED)
def test_the_shared_services_use_the_planned_cli(service: str, compose: dict[str, Any]) -> None:
    command = compose["services"][service]["command"]
    key = "worker --pool" if command[:2] == ["worker", "--pool"] else command[0]
    assert key in PLANNED, f"{service}: runs `tuner {command[0]}`"
    unknown = {a for a in command if a.startswith("--")} - PLANNED[key]
    assert not unknown, f"{service}: `tuner {key}` has no option {sorted(unknown)}"


@pytest.mark.parametrize("service", TUNER_SERVICES)
def test_every_tuner_service_uses_the_image_and_postgres_without_a_password_in_its_url(
    service: str, compose: dict[str, Any]
) -> None:
    svc = compose["services"][service]
    assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert svc["build"]["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    storage = svc["environment"]["TUNER_STORAGE"]
    assert storage.startswith("postgresql://tuner@postgres:5432/")  # user, no password
    assert svc["environment"]["TUNER_STORAGE_PASSWORD"] == env_example()["POSTGRES_PASSWORD"]


def test_the_study_and_the_workers_agree_on_the_study(compose: dict[str, Any]) -> None:
    study = compose["services"]["study"]["command"]
    worker = compose["services"]["worker"]["command"]
    assert study[:2] == ["run", "studies/quickstart.toml"] and "--jobs" in study
    name = tomllib.loads((ROOT / study[1]).read_text())["study"]["name"]
    assert worker[:2] == ["worker", name]
    assert "--wait" in worker  # workers may start before the study exists
    assert compose["services"]["dashboard"]["command"][:3] == ["dashboard", "--host", "0.0.0.0"]
    assert "8080:8080" in compose["services"]["dashboard"]["ports"][0]


def test_serve_binds_all_interfaces_only_inside_its_container(compose: dict[str, Any]) -> None:
    serve = compose["services"]["serve"]
    command = serve["command"]
    assert command[0] == "serve"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    (entry,) = serve["ports"]
    bind, host_port, inside = published(entry)
    assert bind == "127.0.0.1" == env_example()["SERVE_BIND"]  # private unless changed
    assert inside == port == "8080"
    dashboard_bind, dashboard_port, _ = published(compose["services"]["dashboard"]["ports"][0])
    assert dashboard_bind == "127.0.0.1"
    assert host_port != dashboard_port  # both ways can run at once (`--profile serve up`)
    # An .env with only what compose requires (no SERVE_BIND): still 127.0.0.1.
    bare = interpolate(raw_compose(), {"POSTGRES_PASSWORD": "pw", "TUNER_API_TOKEN": "token"})
    assert published(bare["services"]["serve"]["ports"][0])[0] == "127.0.0.1"


def test_the_api_token_must_be_set_and_goes_to_serve_only(compose: dict[str, Any]) -> None:
    raw = raw_compose()["services"]
    assert raw["serve"]["environment"]["TUNER_API_TOKEN"].startswith("${TUNER_API_TOKEN:?")
    env = env_example()
    assert compose["services"]["serve"]["environment"]["TUNER_API_TOKEN"] == env[
        "TUNER_API_TOKEN"]
    without = {k: v for k, v in env.items() if k != "TUNER_API_TOKEN"}
    with pytest.raises(AssertionError, match=r"set TUNER_API_TOKEN in docker/\.env"):
        interpolate(raw, without)
    for name in ("postgres", *ONE_STUDY, "pool"):  # workers reach the storage, not the API
        assert "TUNER_API_TOKEN" not in (raw[name].get("environment") or {}), name
    # Placeholders that tell each other apart (the end-to-end test replaces the password's),
    # and one that `tuner serve` refuses, so a copied env.example cannot serve as it is.
    assert "change-me" not in env["TUNER_API_TOKEN"]
    assert env["TUNER_API_TOKEN"] != env["POSTGRES_PASSWORD"]
    token = pytest.importorskip("tuner.service.token")
    assert len(env["TUNER_API_TOKEN"]) < token.MIN_TOKEN
    assert "token_urlsafe" in (DOCKER / "env.example").read_text()  # how to make a real one


def test_the_serve_healthcheck_is_python_on_healthz(compose: dict[str, Any]) -> None:
    test = compose["services"]["serve"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8080/healthz" in test[3]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "curl" not in dockerfile and "wget" not in dockerfile  # so no curl in the healthcheck
    assert re.search(r"PATH=/opt/tuner/bin:", dockerfile)  # the venv's `python` comes first
    assert re.search(r"^EXPOSE 8080$", dockerfile, re.M)


class _Health(BaseHTTPRequestHandler):
    answer: tuple[int, bytes] = (200, b"")

    def do_GET(self) -> None:  # the http.server API's name
        status, body = self.answer if self.path == "/healthz" else (404, b"{}")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "body", "healthy"), [
    (200, {"status": "ok"}, True),
    (200, {"status": "starting"}, False),
    (503, {"status": "ok"}, False),
])
def test_the_serve_healthcheck_passes_only_on_an_ok_answer(
    compose: dict[str, Any], health_server: ThreadingHTTPServer, status: int, body: Any,
    healthy: bool,
) -> None:
    code = compose["services"]["serve"]["healthcheck"]["test"][3]
    port = health_server.server_address[1]
    _Health.answer = (status, json.dumps(body).encode())
    done = subprocess.run([sys.executable, "-c", code.replace(":8080/", f":{port}/")],
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode == 0) is healthy, done.stderr


def test_the_serve_healthcheck_fails_when_nothing_listens(compose: dict[str, Any]) -> None:
    code = compose["services"]["serve"]["healthcheck"]["test"][3]
    with ThreadingHTTPServer(("127.0.0.1", 0), _Health) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    done = subprocess.run([sys.executable, "-c", code.replace(":8080/", f":{port}/")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0


def test_the_pool_scales_and_stops_gracefully(compose: dict[str, Any]) -> None:
    pool = compose["services"]["pool"]
    assert pool["command"][:2] == ["worker", "--pool"]
    assert "ports" not in pool and "container_name" not in pool  # --scale pool=N works
    assert pool["restart"] == "unless-stopped"  # a long-running worker, not a one-off job
    grace = re.fullmatch(r"(\d+)s", pool["stop_grace_period"])
    assert grace and int(grace[1]) >= 10  # SIGTERM marks its trial failed before a kill
    assert pool["environment"]["TUNER_CPU_THREADS"] == env_example()["WORKER_THREADS"]
    slots = pool["command"][pool["command"].index("--slots") + 1]
    assert slots == env_example()["POOL_SLOTS"]


@pytest.mark.slow
def test_the_pool_command_runs_on_the_real_cli(compose: dict[str, Any], tmp_path: Path) -> None:
    """The pool's command plus --until-empty, on an empty queue: it starts and stops."""
    command = compose["services"]["pool"]["command"]
    env = {**os.environ, "TUNER_STORAGE": f"sqlite:///{tmp_path / 'queue.db'}"}
    done = subprocess.run([TUNER, *command, "--until-empty"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and not re.search(r"--pool\b", cli_help("worker")):
        pytest.skip("`tuner worker` has no --pool yet (issue 30)")
    assert done.returncode == 0, done.stderr
    assert "stopped: empty" in done.stderr


def test_dockerfile_entry_point_is_the_tuner_console_script() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tuner"] == "tuner.__main__:main"  # Ctrl-C while importing: exit 130
    assert 'ENTRYPOINT ["tuner"]' in text
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11", text, re.M)  # CPU by default
    assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    assert "-c constraints.txt torch" in text  # the pinned torch, from that index
    assert re.search(r"^USER tuner$", text, re.M)


def _engine() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = [[docker, "info"], [docker, "compose", "version"]]
    return all(subprocess.run(p, capture_output=True, timeout=30).returncode == 0 for p in probe)


@pytest.mark.slow
@pytest.mark.skipif(not _engine(), reason="no Docker engine (or compose plugin) answers here")
def test_stack_runs_a_study_end_to_end(tmp_path: Path) -> None:  # pragma: no cover - needs Docker
    env = tmp_path / ".env"
    env.write_text((DOCKER / "env.example").read_text().replace("change-me", "test-pw-7")
                   + "STUDY_FILE=studies/quickstart.toml\nTUNER_IMAGE=tuner:test\n")
    base = ["docker", "compose", "-f", str(DOCKER / "compose.yaml"), "--env-file", str(env),
            "-p", "tunertest"]
    try:
        subprocess.run([*base, "build"], check=True, timeout=1800)
        subprocess.run([*base, "up", "-d", "--scale", "worker=2", "study", "worker"],
                       check=True, timeout=600)
        study = subprocess.run([*base, "ps", "-aq", "study"], capture_output=True, text=True,
                               check=True).stdout.split()
        code = subprocess.run(["docker", "wait", *study], capture_output=True, text=True,
                              timeout=1800).stdout.split()
        logs = subprocess.run([*base, "logs"], capture_output=True, text=True).stdout
        assert code == ["0"], logs[-3000:]
        assert "test-pw-7" not in logs
        assert re.search(r"\d+ trials? this run|already has its budget", logs)
    finally:
        subprocess.run([*base, "down", "-v"], timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not _engine(), reason="no Docker engine (or compose plugin) answers here")
def test_shared_service_runs_a_submitted_study(tmp_path: Path) -> None:  # pragma: no cover
    import urllib.error
    import urllib.request

    env = tmp_path / ".env"
    env.write_text((DOCKER / "env.example").read_text().replace("change-me", "test-pw-8")
                   .replace("TUNER_API_TOKEN=replace-me", "TUNER_API_TOKEN=test-token-8-0123456789")
                   + "SERVE_PORT=18080\nTUNER_IMAGE=tuner:test\n")
    base = ["docker", "compose", "-f", str(DOCKER / "compose.yaml"), "--env-file", str(env),
            "-p", "tunerservetest", "--profile", "serve"]
    try:
        subprocess.run([*base, "build"], check=True, timeout=1800)
        subprocess.run([*base, "up", "-d", "--wait", "--scale", "pool=2", "serve", "pool"],
                       check=True, timeout=900)  # --wait: until serve's healthcheck passes
        with urllib.request.urlopen("http://127.0.0.1:18080/healthz", timeout=10) as r:
            assert json.load(r) == {"status": "ok"}
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen("http://127.0.0.1:18080/api/v1/studies", timeout=10)
        assert denied.value.code == 401
        subprocess.run([*base, "exec", "-T", "serve", "tuner", "submit",
                        "studies/quickstart.toml"], check=True, timeout=300)
        n_trials = tomllib.loads((ROOT / "studies/quickstart.toml").read_text())["study"][
            "n_trials"]
        count = ("import optuna, os; s = optuna.load_study(study_name='quickstart', storage="
                 "os.environ['TUNER_STORAGE'].replace('tuner@', 'tuner:' + os.environ["
                 "'TUNER_STORAGE_PASSWORD'] + '@')); print(sum(t.state.is_finished() and "
                 "t.state.name != 'FAIL' for t in s.trials))")
        finished = 0
        for _ in range(180):
            out = subprocess.run([*base, "exec", "-T", "serve", "python", "-c", count],
                                 capture_output=True, text=True, timeout=60).stdout.split()
            finished = int(out[-1]) if out else 0
            if finished >= n_trials:
                break
            subprocess.run(["sleep", "5"])
        logs = subprocess.run([*base, "logs"], capture_output=True, text=True).stdout
        assert finished == n_trials, logs[-3000:]
        assert "test-pw-8" not in logs and "test-token-8-0123456789" not in logs
    finally:
        subprocess.run([*base, "down", "-v"], timeout=300)
