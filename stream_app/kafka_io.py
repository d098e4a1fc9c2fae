"""Small aiokafka helpers shared by the CLI, simulator, demo, tests and the agents' own side
reads: readiness probe, topic creation, JSON producing and consuming, reading a compacted
partition. Agents' input and output go through Faust's clients, not these."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, AsyncIterator, Iterable, Mapping, Optional

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from stream_app import progress
from stream_app.kafka_security import aiokafka_options, client_config, process_config
from stream_app.settings import Settings


log = logging.getLogger(__name__)


def side_consumer(settings: Settings, *topics: str, **kwargs: Any) -> AIOKafkaConsumer:
    """A group-less consumer for an agent's side reads (the graph, the calendar, replays, state
    records), with the product's fetch wait: the embedded broker holds every fetch for the full
    wait, and aiokafka's default (500 ms) made each empty poll of the supply-chain graph
    follower, which every scoring batch waits for, cost half a second."""
    return AIOKafkaConsumer(*topics, **client_config(settings).aiokafka(), group_id=None,
                            enable_auto_commit=False, fetch_max_wait_ms=settings.broker_fetch_max_wait_ms, **kwargs)


async def read_range(settings: Settings, topic: str, partition: int, start: Optional[int], end: int, stream: str,
                     stall_s: float = 60.0, batch: int = 1000) -> AsyncIterator[list[Any]]:
    """The records of one partition from `start` (None: the oldest retained) up to `end`, a
    fetch at a time, for a hand-over replay. An empty fetch is not the end: a loaded broker,
    one just back from a pause, or a fresh consumer can take seconds to answer, and stopping
    there would leave the partition's state behind. Only retention having dropped the start
    (what is left is read) or a stall longer than `stall_s` (counted in
    state_replay_incomplete_total) ends it short."""
    from stream_app import metrics

    tp = TopicPartition(topic, partition)
    consumer = side_consumer(settings)
    await consumer.start()
    shown = progress.bar(f"{stream}: replaying {topic}[{partition}]", unit="msg", leave=False)
    try:
        consumer.assign([tp])
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        shown.total = max(0, end - await consumer.position(tp))
        last_progress = time.monotonic()
        while (position := await consumer.position(tp)) < end:
            records = (await consumer.getmany(tp, timeout_ms=1000, max_records=batch)).get(tp, [])
            if not records:
                first = (await consumer.beginning_offsets([tp]))[tp]
                if position < first:
                    log.warning("%s: %s partition %d records %d..%d are no longer retained", stream, topic, partition,
                                position, first)
                    consumer.seek(tp, first)
                elif time.monotonic() - last_progress > stall_s:
                    metrics.STATE_REPLAY_INCOMPLETE.labels(stream).inc()
                    log.error("%s: replay of %s partition %d stalled at %d of %d; its state misses the rest", stream,
                              topic, partition, position, end)
                    return
                continue
            last_progress = time.monotonic()
            shown.update(len(records))
            yield [r for r in records if r.offset < end]
    finally:
        shown.close()
        await consumer.stop()


class ReadStalled(Exception):
    """A read to the end of partitions got no record for its stall time, short of the end."""

    def __init__(self, short: Mapping[TopicPartition, tuple[int, int]], stall_s: float) -> None:
        self.short = dict(short)  # partition -> (position reached, its end)
        where = ", ".join(f"{tp.topic}[{tp.partition}] at {pos} of {end}" for tp, (pos, end) in sorted(self.short.items()))
        super().__init__(f"no record for {stall_s:g} s short of the end: {where}")


async def read_to_end(consumer: AIOKafkaConsumer, start: Mapping[TopicPartition, Optional[int]],
                      stall_s: float = 60.0, until: Optional[Mapping[TopicPartition, int]] = None,
                      max_records: int = 5000) -> AsyncIterator[list[ConsumerRecord]]:
    """Every way the product reads partitions "to the end" (hand-over state, the audit chains,
    dead letters, training history): the records of the partitions in `start` (from that offset;
    None: the oldest retained), a fetch at a time (one partition's records per list, in offset
    order), on a started consumer, which this assigns to them.

    The end is the one each partition had when the read began: the broker's latest offset,
    raised to the high watermark of the partition's first fetch, and a partition is done only
    once a fetch confirmed it. The embedded broker undercounts the latest offset after a
    multi-record batch (DESIGN.md section 4), and an empty fetch before the end is a slow
    broker, not the end. `until`: ends to read to instead (what is below them). No record for
    `stall_s` short of the end raises ReadStalled, after everything read was yielded."""
    tps = list(start)
    if not tps:
        return
    consumer.assign(tps)
    for tp, offset in start.items():
        if offset is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, offset)
    ends = dict(until) if until is not None else await consumer.end_offsets(tps)
    confirmed: set[TopicPartition] = set(tps) if until is not None else set()
    pending, last_progress = set(tps), time.monotonic()
    while pending:
        for tp in list(pending):
            if tp in confirmed and await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        if not pending:
            return
        batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=max_records)
        for tp in pending - confirmed:
            high = consumer.highwater(tp)
            if high is not None:
                ends[tp] = max(ends[tp], high)
                confirmed.add(tp)
        for tp, records in batches.items():
            last_progress = time.monotonic()
            kept = [r for r in records if r.offset < ends[tp]]
            if kept:
                yield kept
        if time.monotonic() - last_progress > stall_s:
            raise ReadStalled({tp: (await consumer.position(tp), ends[tp]) for tp in pending}, stall_s)


async def partition_end(consumer: AIOKafkaConsumer, tp: TopicPartition, stall_s: float = 60.0) -> int:
    """Where an (assigned) partition ends now, by the rule of `read_to_end`, reading at most the
    last reported record."""
    reported = (await consumer.end_offsets([tp]))[tp]
    consumer.seek(tp, max((await consumer.beginning_offsets([tp]))[tp], reported - 1))
    started = time.monotonic()
    while (high := consumer.highwater(tp)) is None:
        await consumer.getmany(tp, timeout_ms=1000, max_records=1)
        if time.monotonic() - started > stall_s:
            raise ReadStalled({tp: (await consumer.position(tp), reported)}, stall_s)
    return max(reported, high)


async def read_partition_latest(settings: Settings, topic: str, partition: int, stall_s: float = 60.0,
                                batch: int = 1000) -> dict[bytes, bytes]:
    """The latest value per key of one partition (a compacted topic's current state), read to
    its end (`read_to_end`). A read that stalls goes on with what it read: every state record
    the product writes is valid on its own (an older one only means a longer replay)."""
    tp = TopicPartition(topic, partition)
    latest: dict[bytes, bytes] = {}
    consumer = side_consumer(settings)
    await consumer.start()
    try:
        async for records in read_to_end(consumer, {tp: None}, stall_s, max_records=batch):
            for r in records:
                if r.key is None:
                    continue
                if r.value is None:  # a tombstone: the key was deleted (compaction drops both later)
                    latest.pop(r.key, None)
                else:
                    latest[r.key] = r.value
    except ReadStalled as exc:
        log.error("reading partition %d of %s stalled (%s); going on with what was read", partition, topic, exc)
    finally:
        await consumer.stop()
    return latest


def probe_metadata(bootstrap: str, timeout: float = 2.0) -> None:
    """Raise unless the broker answers a metadata request within `timeout` seconds, logged in
    with the configured security; a broker that refuses the client raises KafkaAccessError."""
    from stream_app.kafka_preflight import probe

    asyncio.run(probe(process_config(bootstrap), timeout))


async def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int, compacted: Iterable[str] = ()
) -> list[str]:
    """Create the topics that do not exist yet (`compacted` ones with cleanup.policy=compact:
    only the latest record per key matters); return the ones created. The replication factor
    and the product's retention come from the settings (stream_app/topics.py): on a configured
    cluster of several brokers without TOPIC_REPLICATION_FACTOR a missing topic is refused."""
    from stream_app.settings import get_settings
    from stream_app.topics import TopicsError, TopicSpec, create, plan, replication_factor

    settings = get_settings()
    compact = set(compacted)
    admin = AIOKafkaAdminClient(**aiokafka_options(bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n not in existing]
        if wanted:
            brokers = len((await admin.describe_cluster())["brokers"])
            planned = {spec.name: spec for spec in plan(settings, brokers)}
            specs = [TopicSpec(n, partitions,
                               planned[n].replication_factor if n in planned else replication_factor(settings, brokers),
                               compact=n in compact, retention_hours=planned[n].retention_hours if n in planned else None)
                     for n in wanted]
            unset = [spec.name for spec in specs if spec.replication_factor is None]
            if unset:
                raise TopicsError(f"topics missing on {bootstrap}: {', '.join(unset)}; set TOPIC_REPLICATION_FACTOR "
                                  "and run `stream-app topics create` (or create them yourself)")
    finally:
        await admin.close()
    if wanted:
        await create(process_config(bootstrap), specs)
    return wanted


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


class FaustStyleSender:
    """Faust's producer `send(topic, key, value, partition, timestamp, headers)` over a plain
    aiokafka producer: what the state writers (snapshots, the graph) are handed in a worker, for
    tools and tests that run them without Faust."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, topic: str, key: Optional[bytes], value: Optional[bytes], partition: Optional[int],
                   _timestamp: Any = None, _headers: Any = None) -> Any:
        return await self.producer.send(topic, value, key=key, partition=partition)


def json_producer(bootstrap: str, **kwargs: Any) -> AIOKafkaProducer:
    # acks=all: a producer of this product never treats an unacknowledged send as delivered.
    return AIOKafkaProducer(**aiokafka_options(bootstrap), acks="all", linger_ms=5, **kwargs)


async def consume_json(
    bootstrap: str,
    topics: list[str],
    *,
    group_id: Optional[str] = None,
    from_beginning: bool = True,
    idle_timeout: Optional[float] = None,
) -> AsyncIterator[tuple[str, Any]]:
    """Yield (topic, decoded value) until cancelled, or until `idle_timeout` seconds pass with
    no message. Values that are not JSON are yielded as raw bytes."""
    consumer = AIOKafkaConsumer(
        *topics,
        **aiokafka_options(bootstrap),
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group_id is not None,
    )
    try:
        await consumer.start()
    except KafkaConnectionError:
        from stream_app.kafka_preflight import probe

        await probe(process_config(bootstrap))  # a refused certificate or login: one line naming it
        raise
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=int((idle_timeout or 1.0) * 1000), max_records=1000)
            if not batches and idle_timeout is not None:
                return
            for records in batches.values():
                for record in records:
                    try:
                        value: Any = json.loads(record.value)
                    except (ValueError, TypeError):
                        value = record.value
                    yield record.topic, value
    finally:
        await consumer.stop()
