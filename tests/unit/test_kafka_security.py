"""The KAFKA_* security settings -> client options, for aiokafka and for Faust: what a valid
configuration builds, and the one line each mistake stops on (certificates made by a private CA
in the test)."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream_app.kafka_security import KafkaSettingsError, client_config
from stream_app.settings import Settings
from tests.tls_ca import CertificateAuthority, Issued

BOOTSTRAP = "kafka-1:9093,kafka-2:9093"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"), "unit")


@pytest.fixture(scope="module")
def client(ca: CertificateAuthority) -> Issued:
    return ca.issue("client", server=False)


def settings(**values: Any) -> Settings:
    return Settings(kafka_bootstrap_servers=BOOTSTRAP, **values)


def accepted_by_aiokafka(options: dict[str, Any]) -> None:
    async def build() -> None:
        AIOKafkaProducer(**options)  # raises on an option it does not know or a bad combination

    asyncio.run(build())


def refusal(**values: Any) -> str:
    with pytest.raises(KafkaSettingsError) as caught:
        client_config(settings(**values))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_plaintext_is_the_default_and_gives_faust_no_credentials() -> None:
    config = client_config(settings())
    assert config.aiokafka() == {"bootstrap_servers": BOOTSTRAP, "security_protocol": "PLAINTEXT"}
    assert config.faust_credentials() is None
    assert config.hosts() == [("kafka-1", 9093), ("kafka-2", 9093)]


def test_mutual_tls_builds_one_context_for_aiokafka_and_faust(ca: CertificateAuthority, client: Issued) -> None:
    config = client_config(settings(kafka_security_protocol="ssl", kafka_ssl_cafile=ca.cert,
                                    kafka_ssl_certfile=client.cert, kafka_ssl_keyfile=client.key))
    options = config.aiokafka()
    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL"
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # The CA file is what the context trusts, not the system's store.
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "unit test CA"),),)]
    # Faust's transport turns its credentials into the same client options.
    faust_options = credentials_to_aiokafka_auth(config.faust_credentials())
    assert faust_options == {"security_protocol": "SSL", "ssl_context": context}
    accepted_by_aiokafka(options)


def test_hostname_check_can_be_switched_off(ca: CertificateAuthority) -> None:
    config = client_config(settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca.cert,
                                    kafka_ssl_check_hostname=False))
    assert config.ssl_context is not None and not config.ssl_context.check_hostname


def test_sasl_ssl_with_a_password_file(tmp_path: Path, ca: CertificateAuthority) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret pass\n")  # a mounted secret's trailing newline is not part of it
    config = client_config(settings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=ca.cert,
                                    kafka_sasl_mechanism="scram-sha-512", kafka_sasl_username="stream-app",
                                    kafka_sasl_password_file=secret))
    options = config.aiokafka()
    assert (options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "stream-app", "s3cret pass")
    assert "s3cret" not in repr(config)
    faust_options = credentials_to_aiokafka_auth(config.faust_credentials())
    assert faust_options == {key: options[key] for key in faust_options}
    assert faust_options["ssl_context"] is options["ssl_context"]
    accepted_by_aiokafka(options)


def test_sasl_plaintext_password_from_the_environment_value() -> None:
    config = client_config(settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                                    kafka_sasl_password="p"))
    assert config.ssl_context is None
    assert config.aiokafka()["sasl_plain_password"] == "p"
    assert credentials_to_aiokafka_auth(config.faust_credentials())["security_protocol"] == "SASL_PLAINTEXT"


def test_each_mistake_names_its_setting(tmp_path: Path, ca: CertificateAuthority, client: Issued) -> None:
    missing = tmp_path / "nowhere.pem"
    assert "KAFKA_SECURITY_PROTOCOL='TLS'" in refusal(kafka_security_protocol="TLS")
    assert f"KAFKA_SSL_CAFILE={missing}: no such file" in refusal(kafka_security_protocol="SSL", kafka_ssl_cafile=missing)
    assert f"KAFKA_SSL_CERTFILE={missing}: no such file" in refusal(
        kafka_security_protocol="SSL", kafka_ssl_cafile=ca.cert, kafka_ssl_certfile=missing, kafka_ssl_keyfile=client.key)
    assert "KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE" in refusal(
        kafka_security_protocol="SSL", kafka_ssl_keyfile=client.key)
    other = ca.issue("other-client", server=False)
    assert "KAFKA_SSL_KEYFILE does not match KAFKA_SSL_CERTFILE" in refusal(
        kafka_security_protocol="SSL", kafka_ssl_certfile=client.cert, kafka_ssl_keyfile=other.key)
    assert "not a PEM CA certificate" in refusal(kafka_security_protocol="SSL", kafka_ssl_cafile=client.key)
    # A CA set while the protocol stays PLAINTEXT would have the client talk in clear.
    assert "KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in refusal(kafka_ssl_cafile=ca.cert)
    assert "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL=SSL" in refusal(
        kafka_security_protocol="SSL", kafka_ssl_cafile=ca.cert, kafka_sasl_username="u")


def test_each_sasl_mistake_names_its_setting(tmp_path: Path) -> None:
    sasl = {"kafka_security_protocol": "SASL_PLAINTEXT"}
    assert "needs KAFKA_SASL_USERNAME" in refusal(**sasl, kafka_sasl_password="p")
    assert "needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE" in refusal(**sasl, kafka_sasl_username="u")
    secret = tmp_path / "password"
    secret.write_text("p")
    assert "both KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE" in refusal(
        **sasl, kafka_sasl_username="u", kafka_sasl_password="p", kafka_sasl_password_file=secret)
    assert "KAFKA_SASL_PASSWORD_FILE=" in refusal(**sasl, kafka_sasl_username="u", kafka_sasl_password_file=tmp_path)
    (tmp_path / "empty").write_text("\n")
    assert "is empty" in refusal(**sasl, kafka_sasl_username="u", kafka_sasl_password_file=tmp_path / "empty")
    assert "KAFKA_SASL_MECHANISM='GSSAPI'" in refusal(**sasl, kafka_sasl_mechanism="GSSAPI",
                                                       kafka_sasl_username="u", kafka_sasl_password="p")


def test_the_embedded_broker_speaks_plaintext_only() -> None:
    with pytest.raises(KafkaSettingsError, match="needs KAFKA_BOOTSTRAP_SERVERS"):
        client_config(Settings(kafka_bootstrap_servers="", kafka_security_protocol="SSL"))


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC"))}
    return subprocess.run([sys.executable, "-m", "stream_app", *args], capture_output=True, text=True, timeout=60,
                          env={**clean, "STREAM_APP_SETTINGS_FILE": "", **env})


def test_a_command_stops_on_a_misconfiguration_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    result = run_cli("topics", "check", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9", KAFKA_SECURITY_PROTOCOL="SSL",
                     KAFKA_SSL_CAFILE=str(missing))
    assert result.returncode == 2
    assert result.stderr == f"stream-app: KAFKA_SSL_CAFILE={missing}: no such file\n"

    result = run_cli("topics", "check", KAFKA_SSL_CHECK_HOSTNAME="perhaps")
    assert result.returncode == 2
    assert result.stderr.startswith("stream-app: setting KAFKA_SSL_CHECK_HOSTNAME: ") and result.stderr.count("\n") == 1
