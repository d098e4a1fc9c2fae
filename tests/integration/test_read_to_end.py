"""The one rule for reading partitions "to the end" (stream_app.kafka_io.read_to_end), on a real
broker: every record there when the read began, past the latest offset the embedded broker
undercounts, empty partitions done, explicit ends honoured, and a read that cannot reach its
end stops with ReadStalled."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.kafka_io import ReadStalled, ensure_topics, partition_end, read_to_end
from stream_app.kafka_security import aiokafka_options
from tests.integration.kafka_clients import produce

pytestmark = pytest.mark.integration

TOPIC = "read-to-end"


async def _read(bootstrap: str, start: dict[TopicPartition, int | None], **kwargs: object) -> list[tuple[int, int]]:
    consumer = AIOKafkaConsumer(**aiokafka_options(bootstrap), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return [(r.partition, r.offset) async for records in read_to_end(consumer, start, **kwargs) for r in records]
    finally:
        await consumer.stop()


async def _end(bootstrap: str, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(**aiokafka_options(bootstrap), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        return await partition_end(consumer, tp, 10.0)
    finally:
        await consumer.stop()


def test_reads_what_each_partition_held_when_the_read_began(broker) -> None:
    asyncio.run(ensure_topics(broker.bootstrap, [TOPIC], 3))
    # Partition 0 gets multi-record batches (the embedded broker then undercounts its latest
    # offset), partition 1 one record, partition 2 nothing.
    produce(broker.bootstrap, TOPIC, ((b"a", f"{i}".encode()) for i in range(500)))
    keys = {tp: None for tp in (TopicPartition(TOPIC, p) for p in range(3))}
    read = asyncio.run(_read(broker.bootstrap, keys, stall_s=20.0))
    by_partition = {p: [o for q, o in read if q == p] for p in range(3)}
    held = {p: n for p, n in by_partition.items() if n}
    assert len(held) == 1, held  # one key: one partition
    (p, offsets), = held.items()
    assert offsets == list(range(500))
    tp = TopicPartition(TOPIC, p)
    assert asyncio.run(_end(broker.bootstrap, tp)) == 500

    # Explicit ends: what is below them, from where it starts
    assert [o for _, o in asyncio.run(_read(broker.bootstrap, {tp: 100}, stall_s=20.0, until={tp: 250}))] \
        == list(range(100, 250))


def test_a_read_that_cannot_reach_its_end_stalls(broker) -> None:
    asyncio.run(ensure_topics(broker.bootstrap, [TOPIC], 1))
    produce(broker.bootstrap, TOPIC, ((None, b"x") for _ in range(10)))
    tp = TopicPartition(TOPIC, 0)
    started = time.monotonic()
    with pytest.raises(ReadStalled) as stalled:
        asyncio.run(_read(broker.bootstrap, {tp: 0}, stall_s=2.0, until={tp: 20}))
    assert stalled.value.short == {tp: (10, 20)}
    assert time.monotonic() - started < 30
