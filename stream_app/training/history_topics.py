"""A stream's training history read back from its Kafka topics: every retained message of the
input topic and of its ground-truth (or calendar) topic, from the beginning up to their end as
of now, decoded by the same code the agents use.

The end of each partition is the high watermark reported by the first fetch response for it
(not a ListOffsets answer: the embedded broker gets those wrong after multi-record batches).
A poll that brings nothing also ends the read once every partition has answered a fetch (what
is left is not retained), or after a few such polls if one stays silent, so an idle or missing
topic does not block. Messages produced while reading may or may not be included; nothing
older is missed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Generic, Sequence, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stream_app import progress
from stream_app.intake import RawMessage, decode_batch
from stream_app.kafka_security import aiokafka_options
from schemas.common import InputEvent
from stream_app.decoding import Limits

E = TypeVar("E", bound=InputEvent)

POLL_MS = 2000
MAX_IDLE_POLLS = 5  # empty polls in a row that end the read while a partition never answered
MAX_RECORDS = 5000


@dataclass
class TopicEvents(Generic[E]):
    topic: str
    events: list[E] = field(default_factory=list)
    messages: int = 0
    # What the decoder refused, by error code (dead letters when the agents saw them).
    undecodable: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0  # repeated event_ids (at-least-once producers), kept once

    def summary(self) -> str:
        text = f"topic {self.topic}: {self.messages} messages, {len(self.events)} events"
        if self.undecodable:
            codes = ", ".join(f"{code} {n}" for code, n in self.undecodable.most_common())
            text += f", {sum(self.undecodable.values())} undecodable skipped ({codes})"
        if self.duplicates:
            text += f", {self.duplicates} duplicate event_ids dropped"
        return text


async def read_topics(bootstrap: str, topics: Sequence[str]) -> dict[str, list[RawMessage]]:
    """Every message of `topics` (all partitions) from the beginning to the end as of now,
    with a consumer outside any group (no offsets committed, no rebalance)."""
    consumer = AIOKafkaConsumer(
        **aiokafka_options(bootstrap), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        await consumer.start()
        await consumer.topics()  # metadata for partitions_for_topic
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        out: dict[str, list[RawMessage]] = {t: [] for t in topics}
        if partitions:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            await _read_to_end(consumer, partitions, out)
        return out
    finally:
        await consumer.stop()


async def _read_to_end(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], out: dict[str, list[RawMessage]]
) -> None:
    ends: dict[TopicPartition, int] = {}
    idle = 0
    with progress.bar(f"reading {', '.join(sorted({tp.topic for tp in partitions}))}", unit="msg") as shown:
        while True:
            batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
            for tp, records in batches.items():
                kept = [_raw(r) for r in records if tp not in ends or r.offset < ends[tp]]
                out[tp.topic].extend(kept)
                shown.update(len(kept))
            for tp in partitions:
                high = consumer.highwater(tp)
                if tp not in ends and high is not None:
                    ends[tp] = high  # the end as of the first fetch: later messages are not waited for
            if len(ends) == len(partitions) and shown.total is None:
                shown.total = sum(ends.values())  # offsets from 0: an upper bound where retention dropped some
            if await _all_at_end(consumer, partitions, ends):
                return
            idle = 0 if batches else idle + 1
            if idle and (len(ends) == len(partitions) or idle >= MAX_IDLE_POLLS):
                return


async def _all_at_end(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], ends: dict[TopicPartition, int]) -> bool:
    for tp in partitions:
        if tp not in ends or await consumer.position(tp) < ends[tp]:
            return False
    return True


def _raw(record: ConsumerRecord) -> RawMessage:
    return RawMessage(record.topic, record.partition, record.offset, record.key, record.value)


def decode_topic(topic: str, messages: Sequence[RawMessage], model: type[E], limits: Limits) -> TopicEvents[E]:
    """Decode as the agents do (arrays from gateways included); the first of repeated event_ids
    is kept."""
    intake = decode_batch(messages, model, limits)
    result: TopicEvents[E] = TopicEvents(topic, messages=len(messages), undecodable=Counter(d.error_code for d in intake.dead_letters))
    seen: set[str] = set()
    for event in intake.events:
        if event.event_id in seen:
            result.duplicates += 1
            continue
        seen.add(event.event_id)
        result.events.append(event)
    return result


def read_history(
    bootstrap: str, topics: tuple[str, str], models: tuple[type[InputEvent], type[InputEvent]], limits: Limits
) -> tuple[TopicEvents[InputEvent], TopicEvents[InputEvent]]:
    """The two inputs of a stream's training, read from their topics and decoded."""
    raw = asyncio.run(read_topics(bootstrap, topics))
    first, second = (decode_topic(t, raw[t], m, limits) for t, m in zip(topics, models))
    return first, second
