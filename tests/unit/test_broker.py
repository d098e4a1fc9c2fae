from __future__ import annotations

import asyncio

import pytest

from stream_app.broker import BrokerError, EmbeddedBroker, ensure_broker, is_listening
from stream_app.kafka_io import ensure_topics
from tests.conftest import free_port


def test_start_answer_and_stop() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    with EmbeddedBroker(bootstrap) as broker:
        assert is_listening(bootstrap)
        assert asyncio.run(ensure_topics(bootstrap, ["a", "b"], 2)) == ["a", "b"]
        assert asyncio.run(ensure_topics(bootstrap, ["a", "c"], 2)) == ["c"]
        with pytest.raises(BrokerError, match="already listens"):
            EmbeddedBroker(bootstrap).start()
        assert ensure_broker(bootstrap, embedded=True) is None, "a running broker is reused"
    assert not is_listening(bootstrap)


def test_ensure_broker_starts_one_when_none_runs() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    broker = ensure_broker(bootstrap, embedded=True)
    try:
        assert broker is not None and is_listening(bootstrap)
    finally:
        broker.stop()
    assert not is_listening(bootstrap)
