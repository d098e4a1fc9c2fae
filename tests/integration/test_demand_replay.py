"""A demand partition's state rebuild reads every retained sale below the first live offset,
even when the broker is slow to answer a fetch (loaded, or just back from a pause): an empty
fetch is not the end of the partition."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

import stream_app.kafka_io as kafka_io
from agents.demand import DemandHandle
from stream_app.kafka_io import ensure_topics
from stream_app.registry import ModelRegistry
from stream_app.settings import DemandSettings, Settings
from tests.unit.demand_fixtures import sale

pytestmark = pytest.mark.integration
SALES = 300


class _SlowFirstFetches:
    """A side consumer whose first fetches come back empty, as from a broker slow to answer."""

    def __init__(self, consumer: Any, empty: int) -> None:
        self._consumer, self._empty = consumer, empty

    async def getmany(self, *args: Any, **kwargs: Any) -> dict[Any, list[Any]]:
        if self._empty > 0:
            self._empty -= 1
            await asyncio.sleep(0.05)
            return {}
        return await self._consumer.getmany(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


async def _produce(bootstrap: str) -> int:
    await ensure_topics(bootstrap, ["sales-events"], 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(SALES):
            event = sale(f"s-{i}", i // 10, hour=(i % 10) + 1.0)
            await producer.send_and_wait("sales-events", json.dumps(event.model_dump(mode="json")).encode(),
                                         key=b"bk-1/DE", partition=0)
    finally:
        await producer.stop()
    return SALES  # the first live offset: every sale above is retained history


@pytest.mark.parametrize("empty_fetches", [0, 2])
def test_a_slow_first_fetch_does_not_end_the_rebuild(broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     empty_fetches: int) -> None:
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap, demand=DemandSettings(markets=["DE"]))
    end = asyncio.run(_produce(broker.bootstrap))
    real = kafka_io.side_consumer
    monkeypatch.setattr(kafka_io, "side_consumer", lambda s, *a, **k: _SlowFirstFetches(real(s, *a, **k), empty_fetches))
    handle = DemandHandle(ModelRegistry(tmp_path), settings)
    try:
        counted = asyncio.run(handle._replay("sales-events", 0, end))
    finally:
        handle.executor.shutdown()
    assert counted == SALES
