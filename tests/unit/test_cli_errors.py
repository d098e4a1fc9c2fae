"""Errors a person can act on: one or two lines naming the cause and the fix, a non-zero exit and
no traceback (`--debug` shows it); the version and the top-level help."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

import pytest

from stream_app import cli
from stream_app.broker import BrokerError
from stream_app.errors import SETUP, NoBroker, Problem, explain, report
from stream_app.settings import Settings, get_settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 30.0, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "STREAM_APP_", "MODEL_DIR"))}
    return subprocess.run([sys.executable, "-m", "stream_app", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**clean, **env})


def _one_or_two_lines(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, stderr
    assert "Traceback" not in stderr
    return lines


@pytest.fixture
def settings_from_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """main() in this process, reading the environment the test sets."""
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "STREAM_APP_")) or name == "MODEL_DIR":
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_no_broker_at_the_address_is_one_line_naming_it_quickly() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = _run("tail", "alerts", KAFKA_BOOTSTRAP_SERVERS=address)
    assert time.monotonic() - started < 20
    assert done.returncode != 0 and not done.stdout
    first, fix = _one_or_two_lines(done.stderr)
    assert first == f"stream-app: no Kafka broker answers at {address} (connection refused)"
    assert f"KAFKA_BOOTSTRAP_SERVERS={address}" in fix

    debug = _run("--debug", "tail", "alerts", KAFKA_BOOTSTRAP_SERVERS=address)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "NoBroker" in debug.stderr


def test_no_embedded_broker_says_how_to_start_one() -> None:
    lines = explain(NoBroker("127.0.0.1:9092", embedded=True)).lines()
    assert lines[0] == "stream-app: no Kafka broker answers at 127.0.0.1:9092"
    assert "stream-app broker" in lines[1] and "KAFKA_BOOTSTRAP_SERVERS" in lines[1]


def test_a_broker_port_that_does_not_speak_tls_is_named_as_such() -> None:
    """A listener answering a TLS handshake with plain bytes (a PLAINTEXT port)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    done = _run("tail", "alerts", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", KAFKA_SECURITY_PROTOCOL="SSL")
    assert done.returncode != 0
    line = _one_or_two_lines(done.stderr)[0]
    assert f"TLS handshake with 127.0.0.1:{port} failed" in line and "KAFKA_SECURITY_PROTOCOL" in line


@pytest.mark.integration
def test_a_refused_login_and_an_unknown_topic_are_named(broker, settings_from_env: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    settings_from_env.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    assert cli.main(["tail", "alertz", "--idle", "1"]) == 1
    first, fix = _one_or_two_lines(capsys.readouterr().err)
    assert first == f"stream-app: topic 'alertz' does not exist at {broker.bootstrap}" and "topics there" in fix

    for name, value in (("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"), ("KAFKA_SASL_USERNAME", "someone"),
                        ("KAFKA_SASL_PASSWORD", "wrong")):
        settings_from_env.setenv(name, value)
    get_settings.cache_clear()
    assert cli.main(["tail", "alerts", "--idle", "1"]) == SETUP
    line = _one_or_two_lines(capsys.readouterr().err)[0]
    assert "refused the login of 'someone'" in line and "KAFKA_SASL_PASSWORD" in line


def test_training_on_a_missing_file_is_one_line_and_a_fix(settings_from_env: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    settings_from_env.setenv("MODEL_DIR", str(tmp_path / "models"))
    missing = tmp_path / "missing.jsonl"
    assert cli.main(["train", "maintenance", "--data", str(missing)]) == 1
    first, fix = _one_or_two_lines(capsys.readouterr().err)
    assert str(missing) in first and "no such file" in first
    assert "stream-app simulate --stream maintenance --history" in fix


def test_a_worker_that_requires_models_refuses_an_empty_model_store(settings_from_env: pytest.MonkeyPatch,
                                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings_from_env.setenv("MODEL_DIR", str(tmp_path))
    settings_from_env.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")  # never reached
    assert cli.main(["worker", "--require-models"]) == 1
    first, fix = _one_or_two_lines(capsys.readouterr().err)
    assert first == f"stream-app: no trained model for maintenance, supply-chain, demand in {tmp_path}"
    assert "stream-app train all" in fix and "MODEL_DIR" in fix

    cli._check_models(Settings(model_dir=tmp_path), required=False)  # without the flag: said, not refused
    notices = capsys.readouterr().err.splitlines()
    assert len(notices) == 3 and all("its rules decide until one is trained" in n for n in notices)


def test_explain_names_the_cause_of_what_it_knows_and_the_type_of_what_it_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

    settings = Settings(kafka_bootstrap_servers="kafka1:9093")
    wrapped = KafkaConnectionError("Unable to bootstrap from [('kafka1', 9093, <AddressFamily.AF_UNSPEC: 0>)]")
    assert explain(wrapped, settings).message == "no Kafka broker answers at kafka1:9093"
    waited = BrokerError("broker at kafka2:9092 did not answer within 30s: None")
    assert explain(waited, settings).message == "no Kafka broker answers at kafka2:9092"
    tls = KafkaConnectionError("Unable to bootstrap")
    tls.__cause__ = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert explain(tls, settings).message.startswith("TLS handshake with kafka1:9093 failed")
    assert explain(SaslAuthenticationFailed("bad password"), settings).status == SETUP
    unreadable = explain(PermissionError(13, "Permission denied", "/data/readings.jsonl"))
    assert unreadable.message == "cannot open /data/readings.jsonl: Permission denied"
    odd = explain(ValueError("something deep\nwith a second line"))
    assert odd.message == "unexpected ValueError: something deep" and "--debug" in odd.fix
    assert explain(Problem("it broke", "do this")).lines() == ["stream-app: it broke", "  do this"]
    assert report(KeyboardInterrupt()) == 130 and not capsys.readouterr().err


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"stream-app {version('stream-app')}"


def test_top_level_help_says_what_each_command_is_for_and_where_to_start() -> None:
    text = cli.build_parser().format_help()
    for command in ("broker", "worker", "train", "retrain", "simulate", "demo", "tail", "models"):
        assert f"\n    {command} " in text, command
    start = text.split("start here:", 1)[1]
    assert "stream-app demo" in start and "stream-app worker" in start
    assert "the one console script" not in text  # speaks to users, not to the code's readers
