"""docker/: the image and the compose stack agree with the CLI.

Without a Docker engine (this machine has only the client) the files are checked as text:
compose.yaml parses, its services run commands and options the real ``tuner`` accepts, the
credentials come from the env file. Where an engine answers, the image is built and the stack
runs a small study end to end.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TUNER

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
TUNER_SERVICES = ("study", "worker", "dashboard")


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


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load((DOCKER / "compose.yaml").read_text()), env_example())


def cli_help(command: str) -> str:
    done = subprocess.run([TUNER, command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"`tuner {command}` is not a command: {done.stderr}"
    return done.stdout


def test_compose_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", *TUNER_SERVICES}
    assert set(compose["volumes"]) == {"pgdata", "artifacts"}


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
    svc = compose["services"][service]
    command = svc["command"]
    text = cli_help(command[0])
    for option in (a for a in command[1:] if a.startswith("--")):
        assert option in text, f"{service}: `tuner {command[0]}` has no option {option}"
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
