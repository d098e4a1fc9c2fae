"""Real Kafka clients for integration tests: confluent-kafka (librdkafka) produces, as a
gateway written against any Kafka would; outputs are read with manual partition assignment
(the embedded broker does not serve librdkafka's consumer-group protocol)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter, defaultdict
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence, Union

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[Optional[bytes], bytes]]) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    sent = 0
    for key, value in messages:
        producer.produce(topic, value=value, key=key)
        producer.poll(0)
        sent += 1
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages not delivered"
    return sent


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The consumer group's committed offset per partition (-1 where none yet)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset if tp.offset >= 0 else -1 for tp in found]
    finally:
        consumer.close()


class OutputReader:
    """Reads topics from the beginning and keeps every decoded message, per topic."""

    def __init__(self, bootstrap: str, topics: list[str], partitions: int) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(partitions)])
        self.messages: dict[str, list[Any]] = defaultdict(list)

    def poll(self, seconds: float = 0.5) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(1000, 0.1):
                if msg.error():
                    continue
                self.messages[msg.topic()].append(json.loads(msg.value()))

    def until(
        self, done: Callable[["OutputReader"], bool], timeout: float, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        """Poll until `done` holds; give up at `timeout`, or as soon as `alive` says the process
        producing the outputs has died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            self.poll(0.5)
            if done(self):
                return True
        return done(self)

    def close(self) -> None:
        self.consumer.close()


class Outgoing(NamedTuple):
    """One message for `SteadyProducer`: where it goes, its key and its (JSON) value."""

    topic: str
    key: str
    value: dict[str, Any]


def interleave(*streams: tuple[Sequence[Outgoing], float]) -> list[Outgoing]:
    """Merge (messages, rate per second) streams into one send order in which each stream keeps
    its own order and, sent at the sum of the rates, its own rate."""
    timed = [(i / rate, n, i, m) for n, (messages, rate) in enumerate(streams) for i, m in enumerate(messages)]
    return [m for *_, m in sorted(timed, key=lambda t: t[:3])]


class SteadyProducer(threading.Thread):
    """Sends the events at `rate` per second in the background, with a malformed message now
    and then (those must come back as dead letters). An event is a sensor reading (a dict, sent
    to `sensor-readings` keyed by its machine) or an `Outgoing` naming its topic and key."""

    def __init__(self, bootstrap: str, events: Sequence[Union[dict[str, Any], Outgoing]], rate: float) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                                  # ordered per key even when sends are retried (broker frozen)
                                  "enable.idempotence": True,
                                  "message.timeout.ms": 120_000})
        self.events, self.rate = events, rate
        self.failed: list[str] = []
        self.sent_ids: list[str] = []
        self.broken: dict[str, str] = {}  # sha256 of a truncated payload -> its event id
        self.delivered: Counter[str] = Counter()  # acknowledged messages per topic, broken ones included

    def run(self) -> None:
        started = time.monotonic()
        for i, item in enumerate(self.events):
            ahead = i / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            if isinstance(item, Outgoing):
                topic, key, event = item
            else:
                topic, key, event = "sensor-readings", item["machine_id"], item
            value = json.dumps(event).encode()
            if i % 500 == 250:  # a broken copy: answered by a dead letter, not a prediction
                value = value[: len(value) // 2]
                self.broken[hashlib.sha256(value).hexdigest()] = event["event_id"]
            self.producer.produce(topic, value=value, key=key.encode(), on_delivery=self._delivered(event["event_id"]))
            self.producer.poll(0)
        self.producer.flush(120)

    def _delivered(self, event_id: str) -> Any:
        def callback(err: Any, msg: Any) -> None:
            (self.failed if err else self.sent_ids).append(event_id)
            if not err:
                self.delivered[msg.topic()] += 1
        return callback


class RawRecord(NamedTuple):
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    timestamp: Optional[float]  # seconds since the epoch


def read_raw(bootstrap: str, topic: str, count: int, timeout: float = 60.0, settle: float = 1.0) -> list[RawRecord]:
    """Every message of `topic` as stored (bytes, undecoded), ordered by partition and offset:
    what a consumer of the topic is handed. Reads until `count` messages came (the embedded
    broker's end offsets cannot be trusted, DESIGN.md section 4), or `timeout`; then `settle`
    seconds more, so extra copies in the log show too."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-raw-reader", "enable.auto.commit": False})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[RawRecord] = []
        deadline, settled = time.monotonic() + timeout, None
        while time.monotonic() < (settled or deadline):
            for msg in consumer.consume(1000, 0.2):
                if msg.error():
                    continue
                _, ts = msg.timestamp()
                records.append(RawRecord(msg.partition(), msg.offset(), msg.key(), msg.value(), ts / 1000 if ts > 0 else None))
            if settled is None and len(records) >= count:
                settled = time.monotonic() + settle
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()
