"""Reading the alert chains' topics: a chain's last link (a worker taking a partition over), and
whole topics (the verifier)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from stream_app.intake import RawMessage
from stream_app.kafka_io import side_consumer
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
        hi = await _end(consumer, tp, begin)
        window = TAIL_WINDOW
        while hi > begin:
            lo = max(begin, hi - window)
            last = None
            for r in await _read(consumer, tp, lo, hi):
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
    topic does not exist)."""
    consumer = side_consumer(settings)
    await consumer.start()
    try:
        out: list[RawMessage] = []
        for p in sorted(await _partitions(consumer, topic)):
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            out += await _read(consumer, tp, begin, await _end(consumer, tp, begin))
        return out
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    if topic not in await consumer.topics():
        return set()
    return set(consumer.partitions_for_topic(topic) or ())


async def _end(consumer: Any, tp: TopicPartition, begin: int) -> int:
    """The partition's end: what the broker reports, then read on until a fetch comes back
    empty (the embedded broker reports the end of a multi-record batch as its first offset + 1,
    DESIGN.md section 4; on Apache Kafka the first fetch is already empty)."""
    reported = (await consumer.end_offsets([tp]))[tp]
    consumer.seek(tp, max(begin, reported - 1))
    while (await consumer.getmany(tp, timeout_ms=300, max_records=10_000)).get(tp):
        pass
    return max(reported, await consumer.position(tp))


async def _read(consumer: Any, tp: TopicPartition, start: int, end: int) -> list[RawMessage]:
    """Records [start, end) of one assigned partition."""
    out: list[RawMessage] = []
    if start >= end:
        return out
    consumer.seek(tp, start)
    last_progress = time.monotonic()
    while True:
        batch = (await consumer.getmany(tp, timeout_ms=1000, max_records=1000)).get(tp, [])
        for r in batch:
            if r.offset < end:
                out.append(RawMessage(tp.topic, tp.partition, r.offset, r.key, r.value))
        if batch:
            last_progress = time.monotonic()
        if await consumer.position(tp) >= end:
            return out
        if time.monotonic() - last_progress > STALL_S:
            log.error("reading %s[%d] stalled at %d of %d; going on with what was read", tp.topic, tp.partition,
                      await consumer.position(tp), end)
            return out
