"""Liveness and readiness of a worker, served with the Prometheus metrics from one HTTP thread:

    GET /metrics   Prometheus exposition
    GET /healthz   200 while the event loop is turning (a blocked loop cannot answer its own
                   heartbeat timer, and this server runs in its own thread, so it can tell)
    GET /readyz    200 once partitions are assigned and the worker is not rebalancing, and not
                   stuck (input waiting but nothing processed for `stall_s`); 503 with the
                   reason otherwise

The event loop reports through `Health` (a timer beats, agents mark progress); the HTTP thread
only reads it.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from stream_app.setup_error import SetupError


@dataclass
class Health:
    stall_s: float = 60.0
    heartbeat_timeout_s: float = 15.0
    started: float = field(default_factory=time.monotonic)
    last_beat: Optional[float] = None
    last_progress: float = field(default_factory=time.monotonic)
    assigned: bool = False
    rebalancing: bool = True
    lag: int = 0

    def beat(self, *, assigned: bool, rebalancing: bool, lag: int) -> None:
        self.last_beat = time.monotonic()
        self.assigned, self.rebalancing, self.lag = assigned, rebalancing, lag

    def progressed(self) -> None:
        self.last_progress = time.monotonic()

    def not_alive(self, now: Optional[float] = None) -> Optional[str]:
        now = now if now is not None else time.monotonic()
        reference = self.last_beat if self.last_beat is not None else self.started
        age = now - reference
        # Before the first beat the worker is starting (model loading, group join): alive.
        if self.last_beat is not None and age > self.heartbeat_timeout_s:
            return f"event loop has not answered for {age:.0f}s"
        return None

    def not_ready(self, now: Optional[float] = None) -> Optional[str]:
        now = now if now is not None else time.monotonic()
        if (dead := self.not_alive(now)) is not None:
            return dead
        if self.last_beat is None:
            return "starting"
        if self.rebalancing:
            return "rebalancing or recovering"
        if not self.assigned:
            return "no partitions assigned"
        idle = now - self.last_progress
        if self.lag > 0 and idle > self.stall_s:
            return f"stuck: {self.lag} messages waiting, nothing processed for {idle:.0f}s"
        return None


def serve(port: int, health: Health, host: str = "0.0.0.0") -> Optional[ThreadingHTTPServer]:
    """Serve /metrics, /healthz and /readyz on `host`:`port` (METRICS_BIND_ADDRESS, METRICS_PORT)
    in a daemon thread (port 0: not at all)."""
    if not port:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.startswith("/metrics"):
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                self._status(health.not_alive())
            elif self.path.startswith("/readyz"):
                self._status(health.not_ready())
            else:
                self._send(404, b"not found\n", "text/plain")

        def _status(self, problem: Optional[str]) -> None:
            self._send(200 if problem is None else 503, f"{problem or 'ok'}\n".encode(), "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # scrapes every few seconds: not news
            pass

    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
    try:
        server = server_class((host, port), Handler)
    except OSError as exc:  # a wrong address or a taken port: one line, not a traceback
        raise SetupError(f"cannot serve metrics on {host}:{port} (METRICS_BIND_ADDRESS, METRICS_PORT): "
                         f"{exc.strerror or exc}") from None
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
