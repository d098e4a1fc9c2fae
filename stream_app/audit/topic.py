"""Reading the alert chains' topics: a chain's last link (a worker taking a partition over), and
whole topics (the verifier)."""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from stream_app.intake import RawMessage
from stream_app.kafka_io import ReadStalled, partition_end, read_to_end, side_consumer
from stream_app.settings import Settings

log = logging.getLogger(__name__)

TAIL_WINDOW = 2000  # records read at a time, backwards from the end, looking for a chain's last link
STALL_S = 30.0


async def read_tail(settings: Settings, chain: str) -> Optional[tuple[int, str]]:
    """The last link (seq, hash) of `chain` on the audit topic, None when it has none. Its links
    are all on the partition the producer's partitioner gives its key; that partition is read
    backwards, a window at a time, until one of them turns up."""
    topic, key = settings.topics.alert_audit, chain.encode()
    consumer = side_consumer(settings)
    await consumer.start()
    try:
        every = sorted(await _partitions(consumer, topic))
        if not every:
            return None
        tp = TopicPartition(topic, DefaultPartitioner()(key, every, every))
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        hi = await partition_end(consumer, tp, STALL_S)
        window = TAIL_WINDOW
        while hi > begin:
            lo = max(begin, hi - window)
            last = None
            async for records in read_to_end(consumer, {tp: lo}, STALL_S, until={tp: hi}):
                for r in records:
                    if r.key == key and r.value is not None:
                        last = r
            if last is not None:
                link = json.loads(last.value)
                return int(link["seq"]), str(link["hash"])
            hi, window = lo, window * 2
        return None
    finally:
        await consumer.stop()


async def read_topic(settings: Settings, topic: str) -> list[RawMessage]:
    """Every retained record of a topic, partition by partition in offset order (empty when the
    topic does not exist). A read that stalls returns what it read, which the verifier then
    reports as a chain cut short."""
    consumer = side_consumer(settings)
    await consumer.start()
    try:
        out: list[RawMessage] = []
        start: dict[TopicPartition, Optional[int]] = {TopicPartition(topic, p): None
                                                      for p in sorted(await _partitions(consumer, topic))}
        try:
            async for records in read_to_end(consumer, start, STALL_S):
                out += [RawMessage(r.topic, r.partition, r.offset, r.key, r.value) for r in records]
        except ReadStalled as exc:
            log.error("reading %s stalled; going on with what was read (%s)", topic, exc)
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    if topic not in await consumer.topics():
        return set()
    return set(consumer.partitions_for_topic(topic) or ())
