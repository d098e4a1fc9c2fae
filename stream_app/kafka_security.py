"""How every Kafka client of the product connects: the KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_* and
KAFKA_SASL_* settings turned, in this one place, into the options of an aiokafka client and the
Faust app's broker credentials. The settings are checked here, when a client is first built, so a
mistake stops the command with one line naming the setting (stream_app/setup_error.py) rather
than a traceback from deep inside a client.

Security is a property of the process: every client of it talks to the one configured cluster
with the same protocol, certificates and credentials.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from stream_app.setup_error import SetupError
from stream_app.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# GSSAPI needs Kerberos libraries the product does not ship. OAUTHBEARER needs a token provider
# per identity provider; it is left out until one can be tested against a real broker.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSettingsError(SetupError):
    """The KAFKA_* security settings are inconsistent, or a file they name is unusable."""


@dataclass(frozen=True)
class KafkaClientConfig:
    """Where and how to connect. `aiokafka()` gives a client's keyword arguments,
    `faust_credentials()` the Faust app's `broker_credentials`."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    ssl_context: Optional[ssl.SSLContext] = None
    cafile: Optional[Path] = None
    certfile: Optional[Path] = None
    check_hostname: bool = True
    sasl_mechanism: Optional[str] = None
    sasl_username: Optional[str] = None
    sasl_password: Optional[str] = field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def hosts(self) -> list[tuple[str, int]]:
        out = []
        for server in self.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            out.append((host.strip("[]") or "127.0.0.1", int(port)))
        return out

    def connection(self) -> dict[str, Any]:
        """The security part of an aiokafka client's (or connection's) keyword arguments."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        return options

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaConsumer, AIOKafkaProducer and AIOKafkaAdminClient."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.connection()}

    def faust_credentials(self) -> Any:
        """faust-streaming's `broker_credentials` (None for PLAINTEXT): its aiokafka transport
        turns them into the same client options for the agents' consumer and producer."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                         mechanism=self.sasl_mechanism, ssl_context=self.ssl_context)
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context)
        return None


def client_config(settings: Settings, bootstrap: Optional[str] = None) -> KafkaClientConfig:
    """The checked client configuration for `bootstrap` (default: the configured cluster)."""
    protocol = settings.kafka_security_protocol.strip().upper()
    if protocol not in PROTOCOLS:
        raise KafkaSettingsError(f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol!r} is not one of "
                                 f"{', '.join(PROTOCOLS)}")
    if protocol != "PLAINTEXT" and settings.uses_embedded_broker:
        raise KafkaSettingsError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_BOOTSTRAP_SERVERS: "
                                 "the embedded development broker speaks PLAINTEXT only")
    tls = protocol in ("SSL", "SASL_SSL")
    sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    _refuse_unused(settings, protocol, tls, sasl)
    context = None
    if tls:
        context = _ssl_context(settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile,
                               settings.kafka_ssl_check_hostname)
    mechanism = username = password = None
    if sasl:
        mechanism, username, password = _sasl(settings)
    return KafkaClientConfig(
        bootstrap_servers=bootstrap or settings.bootstrap_servers, security_protocol=protocol, ssl_context=context,
        cafile=settings.kafka_ssl_cafile, certfile=settings.kafka_ssl_certfile,
        check_hostname=settings.kafka_ssl_check_hostname, sasl_mechanism=mechanism, sasl_username=username,
        sasl_password=password,
    )


def process_config(bootstrap: str) -> KafkaClientConfig:
    """`bootstrap` under this process's security settings: for the helpers that are handed an
    address rather than the settings."""
    from stream_app.settings import get_settings

    return client_config(get_settings(), bootstrap)


def aiokafka_options(bootstrap: str) -> dict[str, Any]:
    """Client keyword arguments for `bootstrap` under this process's security settings."""
    return process_config(bootstrap).aiokafka()


def _refuse_unused(settings: Settings, protocol: str, tls: bool, sasl: bool) -> None:
    """A setting the protocol would ignore is a mistake: a CA file set with PLAINTEXT usually
    means the protocol was forgotten, and the client would talk in clear."""
    if not tls:
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            if getattr(settings, name) is not None:
                raise KafkaSettingsError(f"{name.upper()} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                                         "TLS (SSL or SASL_SSL does)")
    if not sasl:
        given = [n for n in ("kafka_sasl_username", "kafka_sasl_password", "kafka_sasl_password_file")
                 if _is_set(getattr(settings, n))]
        if given:
            raise KafkaSettingsError(f"{given[0].upper()} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                                     "SASL (SASL_PLAINTEXT or SASL_SSL does)")


def _is_set(value: Any) -> bool:
    if value is None:
        return False
    if hasattr(value, "get_secret_value"):
        return bool(value.get_secret_value())
    return bool(str(value))


@lru_cache(maxsize=8)
def _ssl_context(cafile: Optional[Path], certfile: Optional[Path], keyfile: Optional[Path],
                 check_hostname: bool) -> ssl.SSLContext:
    """One context per combination of files: built (and the files read) once per process."""
    for name, path in (("KAFKA_SSL_CAFILE", cafile), ("KAFKA_SSL_CERTFILE", certfile), ("KAFKA_SSL_KEYFILE", keyfile)):
        if path is not None and not path.is_file():
            raise KafkaSettingsError(f"{name}={path}: no such file")
    if keyfile is not None and certfile is None:
        raise KafkaSettingsError("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE (the client certificate)")
    try:
        # Without a CA file the system's trusted CAs verify the broker (a publicly signed cluster).
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except ssl.SSLError as exc:
        raise KafkaSettingsError(f"KAFKA_SSL_CAFILE={cafile}: not a PEM CA certificate ({exc.reason or exc})") from None
    context.check_hostname = check_hostname
    if certfile is not None:
        try:
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
        except ssl.SSLError as exc:
            what = ("KAFKA_SSL_KEYFILE does not match KAFKA_SSL_CERTFILE" if exc.reason == "KEY_VALUES_MISMATCH"
                    else f"KAFKA_SSL_CERTFILE={certfile} / KAFKA_SSL_KEYFILE={keyfile}: not a PEM certificate and "
                         f"unencrypted key ({exc.reason or exc})")
            raise KafkaSettingsError(what) from None
    return context


def _sasl(settings: Settings) -> tuple[str, str, str]:
    mechanism = settings.kafka_sasl_mechanism.strip().upper()
    if mechanism not in SASL_MECHANISMS:
        raise KafkaSettingsError(f"KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r} is not one of "
                                 f"{', '.join(SASL_MECHANISMS)}")
    if not settings.kafka_sasl_username:
        raise KafkaSettingsError(f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol.upper()} needs "
                                 "KAFKA_SASL_USERNAME")
    inline = settings.kafka_sasl_password.get_secret_value()
    path = settings.kafka_sasl_password_file
    if inline and path is not None:
        raise KafkaSettingsError("both KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are set; set one")
    if path is not None:
        try:
            # A secret mounted from a file usually ends with a newline that is not part of it.
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise KafkaSettingsError(f"KAFKA_SASL_PASSWORD_FILE={path}: cannot be read "
                                     f"({getattr(exc, 'strerror', None) or exc})") from None
        if not password:
            raise KafkaSettingsError(f"KAFKA_SASL_PASSWORD_FILE={path} is empty")
        return mechanism, settings.kafka_sasl_username, password
    if not inline:
        raise KafkaSettingsError(f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol.upper()} needs "
                                 "KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE")
    return mechanism, settings.kafka_sasl_username, inline
