"""METRICS_BIND_ADDRESS: the worker's /metrics, /healthz and /readyz listen on that address only."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from stream_app.health import Health, serve
from stream_app.setup_error import SetupError
from tests.conftest import free_port


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_the_endpoints_listen_on_the_bind_address_only() -> None:
    port = free_port()
    # All of 127.0.0.0/8 is loopback on Linux: a second address to be absent from.
    server = serve(port, Health(), "127.0.0.2")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        assert not answers("127.0.0.1", port)
    finally:
        server.shutdown()
        server.server_close()


def test_an_address_that_cannot_be_bound_is_one_line() -> None:
    with pytest.raises(SetupError) as caught:
        serve(free_port(), Health(), "192.0.2.1")  # TEST-NET-1: on no interface here
    assert "METRICS_BIND_ADDRESS" in str(caught.value) and "\n" not in str(caught.value)
