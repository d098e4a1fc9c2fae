"""Can this process reach the cluster and log in? One connection to a bootstrap server, with the
product's TLS and SASL settings, and one metadata request.

aiokafka's clients retry a refused handshake or login like a broker that is down, and report
"Unable to bootstrap" without the cause. Here the cause decides: a certificate or password the
broker refuses (`KafkaAccessError`) will be refused again, so a worker stops at once with one line
naming it; a broker that is down, starting or unreachable is waited for.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, Optional

from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn

from stream_app.kafka_security import KafkaClientConfig
from stream_app.setup_error import SetupError

log = logging.getLogger(__name__)

# OpenSSL's reason for a failed handshake -> what to check.
TLS_HINTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the broker requires a client certificate: set KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the broker requires a client certificate it accepts (KAFKA_SSL_CERTFILE), or no cipher is shared",
    "TLSV1_ALERT_UNKNOWN_CA": "the broker does not trust the client certificate's CA (KAFKA_SSL_CERTFILE)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the broker rejected the client certificate (KAFKA_SSL_CERTFILE)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the client certificate has expired (KAFKA_SSL_CERTFILE)",
    "WRONG_VERSION_NUMBER": "the port does not speak TLS: is KAFKA_SECURITY_PROTOCOL right for this listener?",
}
SASL_REFUSALS = (kafka_errors.SaslAuthenticationFailed, kafka_errors.UnsupportedSaslMechanismError,
                 kafka_errors.IllegalSaslStateError)


class KafkaAccessError(SetupError):
    """The broker answered and refused this client (TLS or SASL): retrying cannot help."""


async def probe(config: KafkaClientConfig, timeout: float = 5.0) -> None:
    """Return once a bootstrap server answered a metadata request. Raise KafkaAccessError when
    one refused the client, else the last server's error (the cluster is down or unreachable)."""
    last: Optional[BaseException] = None
    for host, port in config.hosts():
        try:
            await _ask(config, host, port, timeout)
            return
        except Exception as exc:  # classified below; only a refusal is final
            refused = access_error(exc, config, f"{host}:{port}")
            if refused is not None:
                raise refused from None
            last = exc
    assert last is not None
    raise last


async def _ask(config: KafkaClientConfig, host: str, port: int, timeout: float) -> None:
    conn = await asyncio.wait_for(
        create_conn(host, port, request_timeout_ms=int(timeout * 1000), **config.connection()), timeout
    )
    try:
        # A TLS 1.3 server checks the client certificate after the handshake: its refusal
        # arrives with the first answer.
        await asyncio.wait_for(conn.send(_metadata_request()), timeout)
    finally:
        conn.close()


def _metadata_request() -> Any:
    from aiokafka.protocol.metadata import MetadataRequest

    if isinstance(MetadataRequest, type):  # aiokafka >= 0.13 picks the version itself
        return MetadataRequest([])
    return MetadataRequest[0]([])  # older: a list of versions


_SCRAM_STEPS = frozenset({"process_server_first_message", "process_server_final_message"})


def _scram_refusal(exc: BaseException) -> bool:
    """aiokafka's SCRAM client raises KeyError or ValueError reading an error answer that a
    broker sends without Kafka's error code (the embedded broker does): a refused login. The
    same types raised anywhere else are not one."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (KeyError, ValueError)):
            tb = current.__traceback__
            while tb is not None:
                if tb.tb_frame.f_code.co_name in _SCRAM_STEPS:
                    return True
                tb = tb.tb_next
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def access_error(exc: BaseException, config: KafkaClientConfig, where: str) -> Optional[KafkaAccessError]:
    """The refusal `exc` stands for, or None when it is a broker being down or unreachable."""
    tls = tls_error(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        trusted = f"KAFKA_SSL_CAFILE={config.cafile}" if config.cafile else "the system's CAs (KAFKA_SSL_CAFILE unset)"
        hint = "; or set KAFKA_SSL_CHECK_HOSTNAME=false" if "hostname" in str(tls.verify_message).lower() else ""
        return KafkaAccessError(f"TLS: the certificate of {where} is not trusted by {trusted}: "
                                f"{tls.verify_message}{hint}")
    if tls is not None:
        reason = getattr(tls, "reason", None) or str(tls)
        hint = TLS_HINTS.get(str(reason), "")
        return KafkaAccessError(f"TLS handshake with {where} failed ({reason}){': ' + hint if hint else ''}")
    if isinstance(exc, SASL_REFUSALS) or (config.uses_sasl and _scram_refusal(exc)):
        return KafkaAccessError(f"SASL: {where} refused the login of {config.sasl_username!r} with "
                                f"{config.sasl_mechanism}: check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD(_FILE) "
                                "and KAFKA_SASL_MECHANISM")
    return None


def tls_error(exc: BaseException) -> Optional[ssl.SSLError]:
    """The SSL error behind `exc`: aiokafka wraps the one read after the handshake."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe(exc: BaseException, config: KafkaClientConfig) -> str:
    """A cluster's unavailability in a few words, for the log while waiting."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, (ConnectionResetError, kafka_errors.KafkaConnectionError)) and not config.uses_tls:
        text += " (a TLS listener drops clients that speak PLAINTEXT: check KAFKA_SECURITY_PROTOCOL)"
    elif isinstance(exc, asyncio.TimeoutError) and config.uses_tls:
        text = "no answer (a PLAINTEXT listener never answers a TLS handshake: check KAFKA_SECURITY_PROTOCOL)"
    return text


def wait_for_cluster(config: KafkaClientConfig, timeout: Optional[float] = None, interval: float = 1.0) -> None:
    """Block until the cluster answers (forever when `timeout` is None), logging while it is
    down; raise KafkaAccessError at the first refusal."""
    started = time.monotonic()
    last_logged = -1e9
    while True:
        try:
            asyncio.run(probe(config))
            return
        except KafkaAccessError:
            raise
        except Exception as exc:  # down, starting or unreachable: wait
            now = time.monotonic()
            if timeout is not None and now - started > timeout:
                raise
            if now - last_logged >= 30.0:
                log.warning("Kafka at %s is not reachable yet (%s); retrying", config.bootstrap_servers,
                            describe(exc, config))
                last_logged = now
            time.sleep(interval)
