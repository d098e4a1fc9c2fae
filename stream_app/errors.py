"""Errors a person can act on: what went wrong and what to do about it, in one or two lines.

`stream-app` (cli.py) hands whatever a command raised to `report`: it prints the cause and the
fix on stderr, without a traceback (`stream-app --debug ...` shows it), and returns the exit
status. `explain` is the translation table: the product's own problems (`Problem` and its
kinds), a broker that does not answer, TLS and login refusals, settings, files; anything else is
named by its type and message.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

from stream_app.kafka_preflight import tls_error

UNEXPECTED = 1
SETUP = 2  # a misconfiguration (stream_app/setup_error.py)
INTERRUPTED = 130


@dataclass(frozen=True)
class Explained:
    message: str
    fix: str = ""
    status: int = UNEXPECTED

    def lines(self) -> list[str]:
        return [f"stream-app: {self.message}"] + ([f"  {self.fix}"] if self.fix else [])


class Problem(Exception):
    """A problem the product recognised: its message names the cause, `fix` what to do."""

    fix = ""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix or self.fix


class NoBroker(Problem):
    def __init__(self, address: str, embedded: bool, cause: str = "") -> None:
        detail = f" ({cause})" if cause else ""
        super().__init__(f"no Kafka broker answers at {address}{detail}", _broker_fix(address, embedded))
        self.address = address


class UnknownTopic(Problem):
    def __init__(self, topic: str, address: str, known: Sequence[str]) -> None:
        shown = ", ".join(sorted(t for t in known if not t.startswith("_"))[:12]) or "none"
        super().__init__(f"topic {topic!r} does not exist at {address}",
                         f"topics there: {shown}; check the name (the product's topics: stream-app topics plan)")
        self.topic = topic


class NoModel(Problem):
    def __init__(self, streams: Sequence[str], model_dir: Path) -> None:
        names = ", ".join(streams)
        super().__init__(f"no trained model for {names} in {model_dir}",
                         f"train one (stream-app train {streams[0] if len(streams) == 1 else 'all'}), "
                         "or point MODEL_DIR at the model store")


def _broker_fix(address: str, embedded: bool) -> str:
    if embedded:
        return ("start the embedded broker with `stream-app broker` (the demo starts its own), "
                "or set KAFKA_BOOTSTRAP_SERVERS to your cluster")
    return f"check KAFKA_BOOTSTRAP_SERVERS={address} and that the cluster is up and reachable from this machine"


def explain(exc: BaseException, settings: Any = None) -> Explained:
    """The lines and exit status for `exc`; `settings` (optional) tells where Kafka was expected."""
    address = getattr(settings, "bootstrap_servers", None) or "the configured address"
    embedded = bool(getattr(settings, "uses_embedded_broker", False))
    if isinstance(exc, Problem):
        return Explained(str(exc), exc.fix)
    if _is_setup_error(exc):
        return Explained(str(exc), status=SETUP)
    found = _kafka(exc, address, embedded)
    if found is not None:
        return found
    if isinstance(exc, SystemExit) and isinstance(exc.code, str):
        return _exit_message(exc.code)
    if isinstance(exc, OSError) and exc.filename is not None:
        why = exc.strerror or type(exc).__name__
        return Explained(f"cannot open {exc.filename}: {why}", "check the path and its permissions "
                         f"(a relative path starts from {Path.cwd()})")
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        return _settings_error(exc)
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return Explained(f"unexpected {type(exc).__name__}{': ' + text if text else ''}",
                     "run it again with `stream-app --debug ...` to see where")


def _is_setup_error(exc: BaseException) -> bool:
    try:
        from stream_app.setup_error import SetupError
    except ImportError:  # pragma: no cover - older trees
        return False
    return isinstance(exc, SetupError)


_BOOTSTRAP_HOST = re.compile(r"\('([^']+)', (\d+)")


def _kafka(exc: BaseException, address: str, embedded: bool) -> Optional[Explained]:
    """A broker that is down or unreachable, or one that refused this client."""
    name = type(exc).__name__
    text = str(exc)
    tls = tls_error(exc)  # first: a refused handshake also ends in "Unable to bootstrap"
    if tls is not None:
        return Explained(f"TLS handshake with {address} failed: {getattr(tls, 'reason', None) or tls}",
                         "check KAFKA_SECURITY_PROTOCOL and the KAFKA_SSL_* files against the broker's listener", SETUP)
    if name == "BrokerError" and "did not answer" in text:  # stream_app.broker.wait_until_ready
        m = re.search(r"broker at (\S+) did not answer", text)
        where = m[1] if m else address
        return Explained(f"no Kafka broker answers at {where}", _broker_fix(where, embedded))
    if name == "KafkaConnectionError" or isinstance(exc, ConnectionRefusedError):
        m = _BOOTSTRAP_HOST.search(text)
        where = f"{m[1]}:{m[2]}" if m else address
        return Explained(f"no Kafka broker answers at {where}", _broker_fix(where, embedded))
    if name == "KafkaTimeoutError":
        return Explained(f"the Kafka broker at {address} did not answer in time", _broker_fix(address, embedded))
    if "Sasl" in name or name in ("AuthenticationFailedError", "AuthenticationMethodNotSupported"):
        return Explained(f"the broker at {address} refused the login: {text or name}",
                         "check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD(_FILE)", SETUP)
    if name.endswith("AuthorizationFailedError"):
        return Explained(f"the broker at {address} refused an operation: {text or name}",
                         "this client's user lacks the ACLs it needs (topics, consumer group): ask the cluster's operator",
                         SETUP)
    if name == "UnknownTopicOrPartitionError":
        return Explained(f"a topic does not exist at {address}: {text or name}",
                         "check the topic names; `stream-app topics check` compares them with the product's")
    return None


def _exit_message(message: str) -> Explained:
    """A command that stopped itself with a message: kept, with the fix where it is known."""
    text = message.removeprefix("stream-app: ")
    if re.match(r"cannot train \S+ on ", text):
        stream = text.split()[2]
        return Explained(text, "--data takes JSON Lines in the events' layout, CSV or Parquet; --map names your "
                               f"columns (README: Training on your own machines); `stream-app simulate --stream {stream} "
                               "--history DIR` writes an example")
    return Explained(text)


def _settings_error(exc: Any) -> Explained:
    error = exc.errors()[0]
    name = "__".join(str(part) for part in error.get("loc", ())).upper() or "?"
    return Explained(f"setting {name}: {error.get('msg')} (got {error.get('input')!r})",
                     "set it in the environment or in the file STREAM_APP_SETTINGS_FILE names", SETUP)


def report(exc: BaseException, settings: Any = None, stream: Optional[TextIO] = None) -> int:
    """Print `exc` as one or two lines (on stderr by default); return the exit status."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    # Kafka clients left half-started by the failure complain when collected; not news now.
    for name in ("asyncio", "aiokafka", "faust", "mode"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    explained = explain(exc, settings)
    out = stream or sys.stderr
    out.write("\n".join(explained.lines()) + "\n")
    out.flush()
    return explained.status
