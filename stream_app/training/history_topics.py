"""A stream's training history read back from its Kafka topics: every retained message of the
input topic and of its ground-truth (or calendar) topic, from the beginning up to their end as
of now, decoded by the same code the agents use.

The end of each partition is the one it had when the read began, by the rule every read "to
the end" in the product keeps (stream_app.kafka_io.read_to_end: the broker's latest offset
raised to the high watermark of the partition's first fetch). A topic that does not exist is
empty; a read that gets no record for STALL_S short of the end stops training with one line,
rather than training on part of the history. Messages produced while reading may or may not
be included; nothing older is missed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Generic, Sequence, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stream_app import progress
from stream_app.intake import RawMessage, decode_batch
from stream_app.errors import Problem
from stream_app.kafka_io import ReadStalled, read_to_end
from stream_app.kafka_security import aiokafka_options
from schemas.common import InputEvent
from stream_app.decoding import Limits

E = TypeVar("E", bound=InputEvent)

STALL_S = 60.0
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
        start = {TopicPartition(t, p): None for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())}
        out: dict[str, list[RawMessage]] = {t: [] for t in topics}
        with progress.bar(f"reading {', '.join(sorted(topics))}", unit="msg") as shown:
            try:
                async for records in read_to_end(consumer, start, STALL_S, max_records=MAX_RECORDS):
                    out[records[0].topic].extend(map(_raw, records))
                    shown.update(len(records))
            except ReadStalled as exc:
                raise Problem(f"reading the training history stalled ({exc})",
                              "check the broker and run the command again") from None
        return out
    finally:
        await consumer.stop()


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
