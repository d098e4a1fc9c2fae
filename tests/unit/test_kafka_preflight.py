"""Which connection failures stop a worker (the broker refused it) and which it waits out (the
broker is down). The integration tests see each refusal from a real TLS terminator and broker."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from aiokafka import errors as kafka_errors

from stream_app.kafka_preflight import KafkaAccessError, access_error, probe
from stream_app.kafka_security import KafkaClientConfig
from tests.conftest import free_port

TLS = KafkaClientConfig("kafka:9093", security_protocol="SSL")
SASL = KafkaClientConfig("kafka:9093", security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                         sasl_username="app", sasl_password="x")


def tls_failure(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] ({reason.lower()})")
    error.reason = reason
    return error


def wrapped(cause: BaseException) -> kafka_errors.KafkaConnectionError:
    """As aiokafka reports a refusal that arrives with the first answer."""
    try:
        raise kafka_errors.KafkaConnectionError("Connection at kafka:9093 closed") from cause
    except kafka_errors.KafkaConnectionError as exc:
        return exc


def test_refusals_are_final_and_name_what_to_check() -> None:
    required = access_error(wrapped(tls_failure("TLSV13_ALERT_CERTIFICATE_REQUIRED")), TLS, "kafka:9093")
    assert required is not None and "KAFKA_SSL_CERTFILE" in str(required)
    assert "does not trust the client certificate" in str(access_error(tls_failure("TLSV1_ALERT_UNKNOWN_CA"), TLS, "k"))
    refused = access_error(kafka_errors.SaslAuthenticationFailed("bad password"), SASL, "kafka:9093")
    assert refused is not None and "'app'" in str(refused) and "SCRAM-SHA-256" in str(refused)


def test_a_broker_that_is_down_is_not_a_refusal() -> None:
    for down in (ConnectionRefusedError(111, "refused"), asyncio.TimeoutError(), wrapped(ConnectionResetError(104, "reset"))):
        assert access_error(down, TLS, "kafka:9093") is None


def test_probe_of_a_closed_port_raises_the_network_error() -> None:
    config = KafkaClientConfig(f"127.0.0.1:{free_port()}")
    with pytest.raises(OSError):
        asyncio.run(probe(config, timeout=2))
    assert not issubclass(KafkaAccessError, OSError)


def test_only_a_scram_answer_without_an_error_code_counts_as_a_refused_login() -> None:
    from aiokafka.conn import ScramAuthenticator

    scram = ScramAuthenticator.__new__(ScramAuthenticator)
    scram._server_signature = b"expected"
    try:  # an error answer: no server signature "v" in it
        scram.process_server_final_message("e=invalid-proof")
    except KeyError as exc:
        from_scram: BaseException = exc
    assert access_error(wrapped(from_scram), SASL, "kafka:9093") is not None
    try:  # the same error type from anywhere else is a fault, not a refusal
        {}["v"]
    except KeyError as exc:
        elsewhere: BaseException = exc
    assert access_error(elsewhere, SASL, "kafka:9093") is None
