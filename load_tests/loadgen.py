"""Simulated input for the load harness: a stream's events as Kafka messages (single events or
gateway arrays), produced as a backlog or at a paced rate. Every message remembers when it was
sent and where it landed, so outputs can be matched back to the events they answer."""

from __future__ import annotations

import asyncio
import itertools
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from aiokafka.partitioner import DefaultPartitioner

from stream_app.kafka_io import encode_json, json_producer
from stream_app.settings import Settings, Topics
from stream_app.simulation.producer import is_paced
from stream_app.simulation.streams import STREAMS

# Gateways per fleet: each gateway always carries the same machines, so a machine's readings
# stay on one partition and in order, as they would behind a real gateway.
GATEWAYS = 32


@dataclass(frozen=True)
class StreamSpec:
    """What the harness needs to know about one stream's topics and outputs."""

    name: str
    input_field: str  # Topics field of the scored input
    output_field: str  # Topics field of the output the harness matches back to inputs
    # Outputs name the event they answer (event_id); otherwise (demand) a day's forecasts are
    # matched to the event that closed the day.
    per_event_output: bool
    default_events: int


STREAM_SPECS: dict[str, StreamSpec] = {
    "maintenance": StreamSpec("maintenance", "sensor_readings", "maintenance_predictions", True, 30_000),
    "supply-chain": StreamSpec("supply-chain", "supply_chain_transactions", "supply_chain_scores", True, 10_000),
    "demand": StreamSpec("demand", "sales_events", "demand_forecasts", False, 20_000),
}

_FIELD_OF_TOPIC = {name: f for f, name in Topics().model_dump().items()}
SimulatedEvent = tuple[str, dict[str, Any], str]  # (Topics field, event, Kafka key)


@dataclass(frozen=True)
class Message:
    topic_field: str  # the Topics field it goes to
    key: bytes
    value: bytes
    event_ids: tuple[str, ...]
    event_ts: tuple[str, ...]
    scored: bool  # carries events of the scored input (not ground truth or calendar)


@dataclass(slots=True)
class Sent:
    """One produced message; partition and offset are filled in when the broker acknowledges."""

    message: Message
    send_time: float
    partition: int = -1
    offset: int = -1
    warm_up: bool = False


def simulate(stream: str, events: int, size: Optional[int], seed: int = 1) -> list[SimulatedEvent]:
    """(Topics field, event, key) in stream order: `events` scored events plus the ground truth or
    calendar entries the simulator interleaves with them."""
    out: list[SimulatedEvent] = []
    scored = 0
    for topic, event in STREAMS[stream].live(Settings(), seed, size):
        if scored >= events:
            break
        out.append((_FIELD_OF_TOPIC[topic], event.value, event.key))
        scored += is_paced(event)
    return out


def gateway_keys(partitions: int, gateways: int = GATEWAYS) -> list[bytes]:
    """Gateway ids that Kafka's default partitioner spreads evenly over the partitions: a few
    gateways hashed at random would leave some partitions with twice the readings of others."""
    partitioner = DefaultPartitioner()
    everything = list(range(partitions))
    per_partition: dict[int, list[bytes]] = {p: [] for p in everything}
    for i in itertools.count():
        key = f"gw-{i:04d}".encode()
        chosen = per_partition[partitioner(key, everything, everything)]
        if len(chosen) < -(-gateways // partitions):
            chosen.append(key)
        if sum(map(len, per_partition.values())) >= gateways:
            break
    return sorted(k for keys in per_partition.values() for k in keys)


def to_messages(spec: StreamSpec, events: Sequence[SimulatedEvent], gateway_batch: int = 1) -> list[Message]:
    """One message per event, or scored events grouped into gateway arrays of `gateway_batch`."""
    messages: list[Message] = []
    keys = gateway_keys(Settings().topic_partitions) if gateway_batch > 1 else []
    gateways: dict[int, list[tuple[dict[str, Any], str]]] = {}
    for field_name, value, key in events:
        scored = field_name == spec.input_field
        if not scored or gateway_batch <= 1:
            messages.append(Message(field_name, key.encode(), encode_json(value), (value["event_id"],), (value["ts"],), scored))
            continue
        gateway = zlib.crc32(key.encode()) % len(keys)
        pending = gateways.setdefault(gateway, [])
        pending.append((value, key))
        if len(pending) == gateway_batch:
            messages.append(_gateway_message(spec, keys[gateway], pending))
            gateways[gateway] = []
    messages.extend(_gateway_message(spec, keys[g], pending) for g, pending in sorted(gateways.items()) if pending)
    return messages


def _gateway_message(spec: StreamSpec, key: bytes, items: list[tuple[dict[str, Any], str]]) -> Message:
    values = [v for v, _ in items]
    return Message(spec.input_field, key, encode_json(values),
                   tuple(v["event_id"] for v in values), tuple(v["ts"] for v in values), True)


@dataclass
class Feed:
    """One case's input topics and the messages produced into them."""

    spec: StreamSpec
    topics: dict[str, str]  # Topics field -> topic name, for the fields this feed writes
    sent: list[Sent] = field(default_factory=list)

    @property
    def input_topic(self) -> str:
        return self.topics[self.spec.input_field]

    def scored(self, include_warm_up: bool = True) -> list[Sent]:
        return [s for s in self.sent if s.message.scored and (include_warm_up or not s.warm_up)]

    def events(self, include_warm_up: bool = True) -> int:
        return sum(len(s.message.event_ids) for s in self.scored(include_warm_up))

    def scored_messages(self) -> int:
        return len(self.scored())


def feed_topics(name: str, fields: Sequence[str]) -> dict[str, str]:
    defaults = Topics().model_dump()
    return {f: f"{name}.{defaults[f]}" for f in fields}


class Producer:
    """Sends messages of a feed, recording each one's send time and, once acknowledged, its
    partition and offset."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = json_producer(bootstrap, max_request_size=8_000_000)
        self._acks: list[asyncio.Future[Any]] = []

    async def __aenter__(self) -> "Producer":
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.flush()
        await self._producer.stop()

    async def send(self, feed: Feed, message: Message, warm_up: bool = False) -> Sent:
        sent = Sent(message, time.time(), warm_up=warm_up)
        fut = await self._producer.send(feed.topics[message.topic_field], message.value, key=message.key)
        fut.add_done_callback(lambda f, s=sent: _record(s, f))
        self._acks.append(fut)
        feed.sent.append(sent)
        return sent

    async def flush(self) -> None:
        acks, self._acks = self._acks, []
        if acks:
            await asyncio.gather(*acks)


def _record(sent: Sent, fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        metadata = fut.result()
        sent.partition, sent.offset = metadata.partition, metadata.offset


async def produce_backlog(producer: Producer, feed: Feed, messages: Sequence[Message], warm_up: bool = False) -> float:
    """As fast as the producer goes; returns the seconds it took until every ack arrived."""
    started = time.perf_counter()
    for message in messages:
        await producer.send(feed, message, warm_up)
    await producer.flush()
    return time.perf_counter() - started


async def produce_paced(producer: Producer, feed: Feed, messages: Sequence[Message], rate: float) -> float:
    """Scored events at `rate` per second (a gateway message counts its events); ground truth and
    calendar entries ride along unpaced, as in `stream-app simulate`. Returns seconds taken."""
    started = time.monotonic()
    events = 0
    for message in messages:
        # Pace against the schedule, not per message: sleeps of 1 ms and more only.
        ahead = events / rate - (time.monotonic() - started)
        if ahead > 0.001:
            await asyncio.sleep(ahead)
        await producer.send(feed, message)
        if message.scored:
            events += len(message.event_ids)
    await producer.flush()
    return time.monotonic() - started


def split_events(
    spec: StreamSpec, events: Sequence[SimulatedEvent], scored: int
) -> tuple[list[SimulatedEvent], list[SimulatedEvent]]:
    """The events up to and including the `scored`-th scored one, and the rest."""
    counts = itertools.accumulate(field_name == spec.input_field for field_name, _, _ in events)
    cut = next((i + 1 for i, n in enumerate(counts) if n >= scored), len(events))
    return list(events[:cut]), list(events[cut:])
