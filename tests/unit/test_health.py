from __future__ import annotations

import urllib.error
import urllib.request

from stream_app.health import Health, serve
from tests.conftest import free_port


def test_readiness_follows_the_worker_life() -> None:
    h = Health(stall_s=30, heartbeat_timeout_s=10)
    t0 = h.started
    assert h.not_alive(t0 + 100) is None, "starting (no beat yet) is alive"
    assert h.not_ready(t0 + 1) == "starting"
    h.beat(assigned=False, rebalancing=True, lag=0)
    assert h.not_ready() == "rebalancing or recovering"
    h.beat(assigned=True, rebalancing=False, lag=0)
    assert h.not_ready() is None
    beat = h.last_beat
    # Input waiting and nothing processed for longer than stall_s: stuck.
    h.beat(assigned=True, rebalancing=False, lag=500)
    h.last_progress = beat - 31
    assert "stuck: 500 messages waiting" in h.not_ready(beat)
    h.progressed()
    assert h.not_ready() is None
    # The loop stopped beating: neither alive nor ready.
    assert "has not answered" in h.not_alive(h.last_beat + 11)
    assert "has not answered" in h.not_ready(h.last_beat + 11)


def test_http_endpoints() -> None:
    port = free_port()
    health = Health()
    server = serve(port, health)
    try:
        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as err:
                return err.code, err.read().decode()

        assert get("/healthz") == (200, "ok\n")
        assert get("/readyz") == (503, "starting\n")
        health.beat(assigned=True, rebalancing=False, lag=0)
        assert get("/readyz") == (200, "ok\n")
        status, body = get("/metrics")
        assert status == 200 and "process_resident_memory_bytes" in body
        assert get("/nope")[0] == 404
    finally:
        server.shutdown()
    assert serve(0, health) is None
