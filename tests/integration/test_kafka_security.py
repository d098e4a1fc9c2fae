"""Secured Kafka for real: a worker answers readings over mutual TLS, and a misconfigured one
stops within a minute with one line naming the cause.

TLS: the embedded broker listens on a plain loopback port and advertises the port of Debian's
stunnel, which terminates TLS with a certificate of a private CA made in the test and requires a
client certificate of that CA (the broker's own TLS did not serve a client). SASL: the embedded
broker with --authentication offers SCRAM, but no user can be created on it in memory (creating
one needs a login), so against it only a refused login is shown; the client side of a SASL
login is tested in tests/unit/test_kafka_security.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.broker import EmbeddedBroker, is_listening, wait_until_ready
from stream_app.kafka_security import client_config
from stream_app.settings import Settings
from tests.conftest import WorkerProcess, free_port, wait_for
from tests.tls_ca import CertificateAuthority, Issued

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
PARTITIONS = 4


class Processes:
    """Processes a test starts, stopped (in reverse) when it ends."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], env: Optional[dict[str, str]] = None) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"), "kafka")


@pytest.fixture(scope="module")
def certificates(ca: CertificateAuthority) -> dict[str, Issued]:
    return {"broker": ca.issue("broker", server=True), "worker": ca.issue("worker", server=False)}


def start_broker(processes: Processes, port: int, advertised: int, *extra: str) -> None:
    processes.start(f"tansu-{port}", [
        EmbeddedBroker.binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url", f"tcp://127.0.0.1:{advertised}", "--storage-engine", "memory://tansu/", *extra,
    ], env={**os.environ, "RUST_LOG": "warn"})


def start_tls_front(processes: Processes, folder: Path, ca: CertificateAuthority, server: Issued, port: int,
                    upstream: int) -> None:
    """stunnel: TLS on `port` for the broker's plain `upstream`, client certificates of `ca` required."""
    if STUNNEL is None:
        if os.environ.get("CI"):
            pytest.fail("stunnel is not installed (.ci/run installs Debian's stunnel4)")
        pytest.skip("stunnel is not installed (apt-get install stunnel4)")
    conf = folder / "stunnel.conf"
    conf.write_text(
        "foreground = yes\npid =\n[kafka]\n"
        f"accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{upstream}\n"
        f"cert = {server.cert}\nkey = {server.key}\nCAfile = {ca.cert}\nverifyChain = yes\nrequireCert = yes\n"
    )
    processes.start("stunnel", [STUNNEL, str(conf)])
    assert wait_for(lambda: is_listening(f"127.0.0.1:{port}"), 15), (folder / "stunnel.log").read_text()


def start_worker(processes: Processes, folder: Path, name: str, **env: str) -> WorkerProcess:
    """A worker process with only these Kafka settings, no model (the rules decide)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC"))}
    log_path = folder / f"{name}.log"
    proc = processes.start(name, [sys.executable, "-m", "stream_app", "worker"], env={
        **clean, "STREAM_APP_SETTINGS_FILE": "", "MODEL_DIR": str(folder / "no-models"),
        "DATA_DIR": str(folder / f"data-{name}"), "METRICS_PORT": "0", "PYTHONUNBUFFERED": "1", **env,
    })
    return WorkerProcess(proc, log_path)


def tls_env(bootstrap: str, ca: Path, client: Optional[Issued]) -> dict[str, str]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(ca)}
    if client is not None:
        env.update(KAFKA_SSL_CERTFILE=str(client.cert), KAFKA_SSL_KEYFILE=str(client.key))
    return env


async def send_and_read(options: dict[str, Any], readings: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """Produce the readings and read maintenance-predictions until one per reading came back."""
    producer = AIOKafkaProducer(**options, acks="all")
    await producer.start()
    try:
        for reading in readings:
            await producer.send_and_wait("sensor-readings", json.dumps(reading).encode(), key=reading["machine_id"].encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    predictions: dict[str, Any] = {}
    try:
        consumer.assign([TopicPartition("maintenance-predictions", p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout
        while len(predictions) < len(readings) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    prediction = json.loads(record.value)
                    predictions[prediction["event_id"]] = prediction
    finally:
        await consumer.stop()
    return predictions


def test_worker_waits_for_the_cluster_then_answers_readings_over_mutual_tls(
    tmp_path: Path, processes: Processes, ca: CertificateAuthority, certificates: dict[str, Issued]
) -> None:
    plain, tls = free_port(), free_port()
    bootstrap = f"127.0.0.1:{tls}"
    env = tls_env(bootstrap, ca.cert, certificates["worker"])
    worker = start_worker(processes, tmp_path, "worker", **env)
    # Nothing listens yet: the worker waits, saying why, rather than stopping.
    assert wait_for(lambda: "is not reachable yet" in worker.log() or not worker.alive(), 90), worker.log()
    assert worker.alive(), worker.log()

    start_broker(processes, plain, advertised=tls)
    wait_until_ready(f"127.0.0.1:{plain}")
    start_tls_front(processes, tmp_path, ca, certificates["broker"], tls, plain)

    readings = [{"event_id": f"r-{i}", "machine_id": f"m-{i}", "ts": "2026-03-01T00:00:00Z",
                 "sensors": {"vibration_rms": 2.0, "bearing_temp": 60.0}} for i in range(8)]
    # The test's clients use the worker's settings, through the same configuration builder.
    options = client_config(Settings(
        kafka_bootstrap_servers=bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=ca.cert,
        kafka_ssl_certfile=certificates["worker"].cert, kafka_ssl_keyfile=certificates["worker"].key,
    )).aiokafka()
    predictions = asyncio.run(send_and_read(options, readings, timeout=120))
    assert set(predictions) == {r["event_id"] for r in readings}, f"worker log:\n{worker.log()[-3000:]}"
    assert all(p["decision_source"] == "rule" for p in predictions.values())  # no model: the rules decide
    assert worker.alive()


def stops_with(worker: WorkerProcess, within: float) -> str:
    """The one line a worker stopped on (it must stop within `within` seconds, no traceback)."""
    try:
        worker.proc.wait(within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {within:.0f}s:\n{worker.log()[-2000:]}")
    log = worker.log()
    assert worker.proc.returncode == 2, log[-2000:]
    assert "Traceback" not in log, log[-3000:]
    return log.strip().splitlines()[-1]


def test_a_misconfigured_worker_stops_within_a_minute_with_one_line(
    tmp_path: Path, processes: Processes, ca: CertificateAuthority, certificates: dict[str, Issued]
) -> None:
    plain, tls, sasl = free_port(), free_port(), free_port()
    start_broker(processes, plain, advertised=tls)
    wait_until_ready(f"127.0.0.1:{plain}")
    start_tls_front(processes, tmp_path, ca, certificates["broker"], tls, plain)
    start_broker(processes, sasl, sasl, "--authentication")
    assert wait_for(lambda: is_listening(f"127.0.0.1:{sasl}"), 15)

    bootstrap = f"127.0.0.1:{tls}"
    other_ca = CertificateAuthority(tmp_path / "other", "other")
    missing_key = Issued(certificates["worker"].cert, tmp_path / "worker-missing.key")
    cases = {
        "wrong CA": (tls_env(bootstrap, other_ca.cert, certificates["worker"]),
                     f"TLS: the certificate of {bootstrap} is not trusted by KAFKA_SSL_CAFILE={other_ca.cert}"),
        "no client certificate": (tls_env(bootstrap, ca.cert, None),
                                  "the broker requires a client certificate: set KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"),
        "missing key file": (tls_env(bootstrap, ca.cert, missing_key),
                             f"KAFKA_SSL_KEYFILE={missing_key.key}: no such file"),
        "refused password": ({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{sasl}", "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                              "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "stream-app",
                              "KAFKA_SASL_PASSWORD": "wrong"},
                             f"SASL: 127.0.0.1:{sasl} refused the login of 'stream-app' with SCRAM-SHA-256"),
    }
    # Started together: each stops on its own cause, well within a minute of starting.
    workers = {name: start_worker(processes, tmp_path, f"worker-{i}", **env) for i, (name, (env, _)) in enumerate(cases.items())}
    for name, (_, expected) in cases.items():
        line = stops_with(workers[name], within=60)
        assert line.startswith("stream-app: ") and expected in line, f"{name}: {line}"
