"""An agent's outputs in bulk (agents/publish.py `Outbox.send_many`) against the real broker:
each keyed message on the partition a single send puts it on, in order, and a message too
large for the producer refused as a single send refuses it."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from agents.publish import Outbox
from schemas import DriftEvent

BULK, SINGLE = "outbox-bulk", "outbox-single"


class FaustProducer:
    """Faust's producer surface over aiokafka: `send` with Faust's argument order and the
    accessor for the aiokafka producer under it."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    def _ensure_producer(self) -> AIOKafkaProducer:
        return self.producer

    async def send(self, topic: str, key: Optional[bytes], value: bytes, partition: Optional[int], _ts: Any,
                   headers: Any) -> Any:
        return await self.producer.send(topic, value, key=key, partition=partition, headers=headers)


def message(i: int, note: str = "") -> DriftEvent:
    return DriftEvent(drift_id=f"d{i}", stream="maintenance", partition=0, feature=f"f{i}{note}", detector="adwin",
                      detected_at="2026-12-07T00:00:00Z", event_ts=None, values_seen=i, mean_before=0.0,
                      mean_after=1.0, reference_mean=0.0, reference_std=1.0, effect=1.0, sensitivity={})


async def read_all(bootstrap: str, topic: str, n: int) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        while len(records) < n:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                break
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


@pytest.mark.integration
def test_bulk_sends_land_where_single_sends_do_in_order(broker) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(t, 4, 1) for t in (BULK, SINGLE)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", max_request_size=100_000)
        await producer.start()
        try:
            outbox = Outbox(FaustProducer(producer))
            keys = [f"machine-{i % 23}" for i in range(600)]
            await outbox.send_many([(BULK, key, message(i)) for i, key in enumerate(keys)])
            for i, key in enumerate(keys):
                await outbox.send(SINGLE, key, message(i))
            assert await outbox.flush() < 600 + 600, "the bulk half waits on batches, not on each message"
            with pytest.raises(MessageSizeTooLargeError):
                await outbox.send_many([(BULK, "k", message(0, note="x" * 200_000))])
        finally:
            await producer.stop()
        bulk, single = await read_all(broker.bootstrap, BULK, 600), await read_all(broker.bootstrap, SINGLE, 600)
        assert len(bulk) == len(single) == 600
        where = {r.value: r.partition for r in single}
        assert {r.value: r.partition for r in bulk} == where
        for p in range(4):
            order = [r.value for r in sorted(single, key=lambda r: r.offset) if r.partition == p]
            assert [r.value for r in sorted(bulk, key=lambda r: r.offset) if r.partition == p] == order

    asyncio.run(run())
