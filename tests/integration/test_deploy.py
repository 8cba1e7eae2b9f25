"""deploy/kubernetes/: valid Kubernetes objects, offline, that agree with each other and the CLI.

Every manifest is checked with ``kubernetes-validate`` against the schemas it bundles for one
pinned Kubernetes version (strict: an unknown or misspelt field fails), with the network shut.
Then what the schemas cannot know: the Secret is created by hand and only referenced, ``serve``
listens on 0.0.0.0 inside its pod behind a ClusterIP Service, its probes hit ``/healthz``, the
pool asks for resources, the storage URL names the PostgreSQL Service, and every ``tuner``
command in the manifests is one the CLI has: statically against issue 30's surface, then
against ``tuner CMD --help``, and (slow) by running the real ``tuner serve`` with the manifest's
arguments (its probe paths, and compose's healthcheck, answer 200 without a token while the API
answers 401) and the pool's arguments with ``--until-empty`` on an empty queue.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from conftest import TUNER
from kubernetes_validate.utils import SchemaNotFoundError, all_versions, major_minor

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "docker" / "compose.yaml"
# A version whose schemas kubernetes-validate bundles (checked below); the manifests use only
# long-stable APIs (v1, apps/v1), so one pin is enough.
K8S_VERSION = "1.33.0"
# In the folder, validated, but not applied by `kubectl apply -k`: the Secret is created with
# kubectl (never a file in the repository), the GPU pool is opt-in.
NOT_APPLIED = {"secret.template.yaml", "pool-gpu.yaml"}
SECRET = "tuner-secrets"
SECRET_KEYS = {"api-token", "postgres-password"}
TUNER_IMAGE = re.compile(r"^tuner(:|$)")
NAMESPACED = {"ConfigMap", "Secret", "Service", "Deployment", "StatefulSet"}

# The command-line surface of issue 30 (as `tuner serve --help` and `tuner worker --help` give
# it): checked without running tuner, and again against the live CLI below where it exists.
SURFACE = {
    "serve": {"--storage", "--host", "--port", "--workers", "--devices", "--token-file",
              "--allow-objective", "--data-root", "--artifact-dir"},
    "worker --pool": {"--pool", "--storage", "--slots", "--devices", "--device", "--ray",
                      "--until-empty", "--n-trials", "--timeout", "--threads", "--quiet"},
}


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def objects(names: set[str] | None = None) -> list[dict[str, Any]]:
    return [doc for p in manifest_files() if names is None or p.name in names for doc in load(p)]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in objects() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects in {KUBE}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def workloads() -> list[dict[str, Any]]:
    return [d for d in objects() if d["kind"] in {"Deployment", "StatefulSet"}]


def tuner_containers() -> list[tuple[str, dict[str, Any]]]:
    return [(w["metadata"]["name"], c) for w in workloads() for c in pod_spec(w)["containers"]
            if TUNER_IMAGE.match(c["image"])]


def container(workload: str) -> dict[str, Any]:
    kind = "StatefulSet" if workload == "postgres" else "Deployment"
    (c,) = pod_spec(one(kind, workload))["containers"]
    return c


def config() -> dict[str, str]:
    return one("ConfigMap", "tuner-config")["data"]


def options(command: list[str]) -> list[str]:
    return [a for a in command if a.startswith("--")]


def surface_key(command: list[str]) -> str:
    return "worker --pool" if command[0] == "worker" and "--pool" in command else command[0]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or name lookup while validating fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"tried the network: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_the_pinned_kubernetes_version_is_bundled() -> None:
    assert major_minor(K8S_VERSION) in {major_minor(v) for v in all_versions()}


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_is_a_valid_kubernetes_object_offline(
    path: Path, no_network: None
) -> None:
    docs = load(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        # strict: an unknown field (a typo, a field of another version) is an error; a kind
        # without a bundled schema raises SchemaNotFoundError instead of passing unchecked.
        version = kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert version == major_minor(K8S_VERSION), f"{path.name}: validated against {version}"


def test_the_validator_rejects_broken_objects(no_network: None) -> None:
    good = one("Deployment", "tuner-serve")
    kubernetes_validate.validate(good, K8S_VERSION, strict=True)
    typo = copy.deepcopy(good)
    pod_spec(typo)["containers"][0]["imagePullPolicyy"] = "Always"
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "one"
    no_image = copy.deepcopy(good)
    del pod_spec(no_image)["containers"][0]["name"]
    for bad in (typo, wrong_type, no_image):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    with pytest.raises(SchemaNotFoundError):
        kubernetes_validate.validate({**good, "kind": "Deploymnet"}, K8S_VERSION, strict=True)


def test_kustomization_applies_every_manifest_but_the_secret_and_the_gpu_pool() -> None:
    text = (KUBE / "kustomization.yaml").read_text()
    kust = yaml.safe_load(text)
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kust["kind"] == "Kustomization"
    resources = kust["resources"]
    assert len(resources) == len(set(resources))
    assert all((KUBE / r).is_file() for r in resources), resources
    assert set(resources) == {p.name for p in manifest_files()} - NOT_APPLIED
    assert re.search(r"^\s*#\s*-\s*pool-gpu\.yaml", text, re.M)  # opt-in, one uncomment away
    applied = objects(set(resources))
    assert "Secret" not in {d["kind"] for d in applied}
    (namespace,) = [d["metadata"]["name"] for d in applied if d["kind"] == "Namespace"]
    assert kust["namespace"] == namespace
    for doc in objects():  # `kubectl apply -f FILE` lands in the same namespace as -k
        if doc["kind"] in NAMESPACED:
            assert doc["metadata"].get("namespace") == namespace, doc["metadata"]["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here to run kustomize")
def test_kubectl_kustomize_builds_what_the_files_hold(no_network: None) -> None:
    done = subprocess.run(["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d]
    kust = yaml.safe_load((KUBE / "kustomization.yaml").read_text())

    def ids(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in docs}

    assert ids(built) == ids(objects(set(kust["resources"])))
    for doc in built:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] in NAMESPACED:
            assert doc["metadata"]["namespace"] == kust["namespace"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tuner"


def test_the_secret_template_holds_placeholders_and_the_readme_says_how_to_create_it() -> None:
    secret = one("Secret", SECRET)
    assert "data" not in secret  # nothing base64-encoded that could be a real value
    assert set(secret["stringData"]) == SECRET_KEYS
    for value in secret["stringData"].values():
        assert value.startswith("REPLACE_"), value
    token = pytest.importorskip("tuner.service.token")
    assert len(secret["stringData"]["api-token"]) < token.MIN_TOKEN  # serve refuses it as is
    readme = (KUBE / "README.md").read_text()
    assert f"kubectl -n tuner create secret generic {SECRET}" in readme
    for key in SECRET_KEYS:
        assert f"--from-literal={key}=" in readme
        assert f"--from-literal={key}=" in (KUBE / "secret.template.yaml").read_text()
    assert "jsonpath='{.data.api-token}'" in readme  # where the token is


def test_secrets_are_referenced_never_inlined() -> None:
    refs: list[tuple[str, str]] = []
    for w in workloads():
        spec = pod_spec(w)
        for vol in spec.get("volumes", []):
            if "secret" in vol:
                assert vol["secret"]["secretName"] == SECRET
                refs += [(SECRET, item["key"]) for item in vol["secret"]["items"]]
        for c in spec["containers"]:
            for env in c.get("env", []):
                if re.search(r"PASSWORD|TOKEN|SECRET", env["name"]) and not env["name"].endswith(
                    "_FILE"
                ):
                    assert "value" not in env, f"{w['metadata']['name']}: {env['name']} inlined"
                    ref = env["valueFrom"]["secretKeyRef"]
                    refs.append((ref["name"], ref["key"]))
    assert refs and set(refs) <= {(SECRET, k) for k in SECRET_KEYS}
    assert {k for _, k in refs} == SECRET_KEYS  # each key is used somewhere
    for key in config():
        assert not re.search(r"PASSWORD$|TOKEN", key), f"ConfigMap holds {key}"
    assert urlsplit(config()["TUNER_STORAGE"]).password is None
    placeholders = one("Secret", SECRET)["stringData"].values()
    for path in manifest_files():
        if path.name != "secret.template.yaml":
            assert not any(p in path.read_text() for p in placeholders), path.name


@pytest.mark.parametrize("name", sorted({n for n, _ in tuner_containers()}))
def test_tuner_pods_read_the_database_password_from_the_mounted_secret(name: str) -> None:
    spec = pod_spec(one("Deployment", name))
    (c,) = spec["containers"]
    assert {"configMapRef": {"name": "tuner-config"}} in c["envFrom"]
    password_file = Path(config()["TUNER_STORAGE_PASSWORD_FILE"])
    secret_volumes = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
    mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == password_file.parent)
    assert mount.get("readOnly") is True
    items = {i["path"]: i["key"] for i in secret_volumes[mount["name"]]["items"]}
    assert items[password_file.name] == "postgres-password"
    assert secret_volumes[mount["name"]]["defaultMode"] & 0o077 == 0  # not world/group-readable


def test_serve_listens_on_all_interfaces_only_inside_its_pod_behind_a_cluster_ip() -> None:
    c = container("tuner-serve")
    args = c["args"]
    assert args[0] == "serve"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    port = int(args[args.index("--port") + 1])
    assert port == 8080
    (http,) = c["ports"]
    assert http["containerPort"] == port and "hostPort" not in http
    assert not pod_spec(one("Deployment", "tuner-serve")).get("hostNetwork")
    service = one("Service", "tuner-serve")["spec"]
    assert service.get("type", "ClusterIP") == "ClusterIP"
    (sport,) = service["ports"]
    assert sport["port"] == 8080 and sport["targetPort"] in (http["name"], port)
    labels = one("Deployment", "tuner-serve")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert one("Deployment", "tuner-serve")["spec"]["selector"]["matchLabels"] == service[
        "selector"]
    env = {e["name"]: e for e in c["env"]}
    assert env["TUNER_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": SECRET,
                                                                   "key": "api-token"}


def test_serve_probes_hit_healthz_on_its_port() -> None:
    c = container("tuner-serve")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert ports.get(get["port"], get["port"]) == 8080, probe
        assert "httpHeaders" not in get  # /healthz needs no token; the token stays out of it


@pytest.mark.parametrize("name", ["tuner-serve", "tuner-pool", "tuner-pool-gpu", "postgres"])
def test_every_pod_runs_as_non_root_with_requests_and_limits(name: str) -> None:
    w = one("StatefulSet" if name == "postgres" else "Deployment", name)
    spec = pod_spec(w)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec.get("automountServiceAccountToken") is False  # no pod talks to the API server
    (c,) = spec["containers"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][section]), f"{name}: {section}"


def test_tuner_pods_run_as_the_images_user() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+) tuner", dockerfile)[1])
    for name in {n for n, _ in tuner_containers()}:
        assert pod_spec(one("Deployment", name))["securityContext"]["runAsUser"] == uid


def cpus(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_the_cpu_pool_requests_what_its_workers_use_and_stops_gracefully() -> None:
    pool = one("Deployment", "tuner-pool")
    c = container("tuner-pool")
    assert c["args"][:2] == ["worker", "--pool"]
    assert "ports" not in c  # nothing listens: scale it freely
    requests = c["resources"]["requests"]
    assert cpus(requests["cpu"]) >= 1 and "memory" in requests
    threads = {e["name"]: e["value"] for e in c["env"] if "value" in e}["TUNER_CPU_THREADS"]
    assert int(threads) <= cpus(c["resources"]["limits"]["cpu"])
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert pod_spec(pool)["terminationGracePeriodSeconds"] >= 30  # SIGTERM, then the trial ends
    assert pool["spec"]["replicas"] >= 1


def test_the_gpu_pool_asks_for_one_gpu_per_pod() -> None:
    c = container("tuner-pool-gpu")
    assert c["args"][:2] == ["worker", "--pool"]
    assert c["args"][c["args"].index("--devices") + 1] == "cuda:0"  # the one GPU it is given
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "cpu" in c["resources"]["requests"]
    assert c["image"] != container("tuner-pool")["image"]  # a CUDA build, not the CPU image
    tolerations = pod_spec(one("Deployment", "tuner-pool-gpu"))["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)


def test_the_storage_url_names_the_postgres_service_and_its_credentials() -> None:
    url = urlsplit(config()["TUNER_STORAGE"])
    assert url.scheme == "postgresql"
    service = one("Service", "postgres")
    (port,) = service["spec"]["ports"]
    assert (url.hostname, url.port) == ("postgres", port["port"])
    assert url.username == config()["POSTGRES_USER"]
    assert url.path.lstrip("/") == config()["POSTGRES_DB"]
    sts = one("StatefulSet", "postgres")
    assert sts["spec"]["serviceName"] == "postgres"
    assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"][
        "labels"].items()
    pg = container("postgres")
    assert {p["name"]: p["containerPort"] for p in pg["ports"]}[port["targetPort"]] == 5432
    env = {e["name"]: e for e in pg["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "postgres-password"
    assert "pg_isready" in " ".join(pg["readinessProbe"]["exec"]["command"])


def test_postgres_keeps_its_data_on_a_claim() -> None:
    sts = one("StatefulSet", "postgres")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    pg = container("postgres")
    mount = next(m for m in pg["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    pgdata = {e["name"]: e.get("value") for e in pg["env"]}["PGDATA"]
    # A folder inside the volume (its root may hold lost+found, which initdb refuses).
    assert Path(pgdata).parent == Path(mount["mountPath"])


def manifest_commands() -> list[tuple[str, list[str]]]:
    return [(name, c["args"]) for name, c in tuner_containers()]


@pytest.mark.parametrize(("name", "command"), manifest_commands(),
                         ids=[n for n, _ in manifest_commands()])
def test_every_tuner_command_is_in_the_planned_cli(name: str, command: list[str]) -> None:
    key = surface_key(command)
    assert key in SURFACE, f"{name}: `tuner {command[0]}` is not what these manifests run"
    unknown = set(options(command)) - SURFACE[key]
    assert not unknown, f"{name}: `tuner {key}` has no option {sorted(unknown)}"
    for option in ("--host", "--port", "--devices", "--slots"):
        if option in command:  # every option here takes one value, never a missing one
            assert not command[command.index(option) + 1].startswith("--"), option


def help_text(command: str) -> str | None:
    done = subprocess.run([TUNER, command, "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    return done.stdout if done.returncode == 0 else None


@pytest.mark.parametrize(("name", "command"), manifest_commands(),
                         ids=[n for n, _ in manifest_commands()])
def test_every_tuner_command_parses_against_the_real_cli(name: str, command: list[str]) -> None:
    text = help_text(command[0])
    if text is None:
        pytest.skip(f"`tuner {command[0]}` does not exist yet (issue 30); "
                    "checked against the issue's planned options only")
    if "--pool" in command and not re.search(r"--pool\b", text):
        pytest.skip("`tuner worker` has no --pool yet (issue 30); "
                    "checked against the issue's planned options only")
    for option in options(command):
        assert re.search(rf"(?<![\w-]){re.escape(option)}\b", text), (
            f"{name}: `tuner {command[0]}` has no option {option}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def real_serve(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The real `tuner serve`, started with the manifest's arguments but on 127.0.0.1 and a free
    port (this is a test machine, not a pod): its base URL and token."""
    if help_text("serve") is None:
        pytest.skip("`tuner serve` does not exist yet (issue 30)")
    args = list(container("tuner-serve")["args"])
    port = free_port()
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    token = "test-token-0123456789abcdef"
    env = {**os.environ, "TUNER_API_TOKEN": token,
           "TUNER_STORAGE": f"sqlite:///{tmp_path / 'serve.db'}"}
    proc = subprocess.Popen([TUNER, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"tuner serve exited: {proc.stdout.read()}"
            try:
                get(base + "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "tuner serve did not answer in 90 s"
                time.sleep(0.2)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_the_probes_and_the_compose_healthcheck_pass_on_the_real_server_without_a_token(
    real_serve: tuple[str, str],
) -> None:
    base, token = real_serve
    c = container("tuner-serve")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        status, body = get(base + c[probe]["httpGet"]["path"])  # kubelet sends no token
        assert status == 200, (probe, body)
    assert get(base + "/api/v1/studies")[0] == 401  # while the API itself is closed
    assert get(base + "/api/v1/studies", {"Authorization": f"Bearer {token}"})[0] == 200
    compose = yaml.safe_load(COMPOSE.read_text())
    code = compose["services"]["serve"]["healthcheck"]["test"][3]
    port = base.rsplit(":", 1)[1]
    done = subprocess.run([sys.executable, "-c", code.replace(":8080/", f":{port}/")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_compose_and_kubernetes_start_serve_the_same_way() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["serve"]["command"] == container("tuner-serve")["args"]
    assert services["pool"]["command"][:2] == container("tuner-pool")["args"][:2]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tuner-pool", "tuner-pool-gpu"])
def test_the_pool_commands_run_on_the_real_cli(name: str, tmp_path: Path) -> None:
    """The manifest's arguments plus --until-empty, on an empty queue: it starts and stops."""
    if not re.search(r"--pool\b", help_text("worker") or ""):
        pytest.skip("`tuner worker` has no --pool yet (issue 30)")
    args = container(name)["args"]
    env = {**os.environ, "TUNER_STORAGE": f"sqlite:///{tmp_path / 'queue.db'}"}
    done = subprocess.run([TUNER, *args, "--until-empty"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 2 and "no CUDA GPU" in done.stderr:  # parsed; no GPU on this machine
        assert "--devices" in args
        return
    assert done.returncode == 0, done.stderr
    assert "stopped: empty" in done.stderr
