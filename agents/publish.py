"""Publishing from agents: send without awaiting each delivery, then wait for all of a batch's
deliveries before the batch's input offsets are acknowledged (at-least-once).

A batch's outputs go out in bulk (`send_many`): encoded once each, grouped by topic partition
(the producer's own partitioner, so a key lands where a single send would put it) and handed to
the producer as whole record batches, one delivery to wait for per batch instead of per
message."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Optional, Sequence, TypeVar, Union

from aiokafka import AIOKafkaProducer

from schemas import DeadLetter, OutputMessage
from schemas.common import InputEvent
from stream_app import metrics
from stream_app.deadletter import kafka_headers
from stream_app.encoded import EncodedMessage
from stream_app.intake import Intake, RawMessage, decode_batch, limits_from_settings
from stream_app.settings import Settings

Headers = Sequence[tuple[str, bytes]]
MAX_ARRAY_BYTES = 500_000  # an array answer is split into arrays of at most this (producers other than Kafka's)
# Each output: (topic, key, message), or a list of messages sent as one JSON array; a message
# may come serialized already (stream_app/encoded.py).
Message = Union[OutputMessage, EncodedMessage]
Outgoing = tuple[str, Optional[Union[str, bytes]], Union[Message, list[Message]]]


class Outbox:
    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._pending: list[Awaitable[Any]] = []

    async def send(
        self, topic: str, key: Optional[str], message: OutputMessage, headers: Optional[Headers] = None
    ) -> None:
        """Dead letters get their `dlq.*` headers here, whichever agent sends them."""
        await self._send_one(topic, _key(key), message.model_dump_json().encode(), headers or _headers(message))

    async def _send_one(self, topic: str, key: Optional[bytes], value: bytes, headers: Optional[Headers]) -> None:
        fut = await self._producer.send(topic, key, value, None, None, list(headers) if headers else None)
        self._pending.append(fut)

    async def send_many(self, outgoing: Sequence[Outgoing]) -> None:
        """The messages in order per topic partition, as whole record batches where the producer
        is Kafka's own (one by one otherwise, and for any message too large for a batch). A list
        goes out as JSON arrays of its messages: one, or several in order where one would be
        larger than half the producer's request size."""
        kafka = _kafka_producer(self._producer)
        if kafka is None:
            for topic, key, message in outgoing:
                for value in _values(message, MAX_ARRAY_BYTES):
                    await self._send_one(topic, _key(key), value, _headers(message))
            return
        grouped: dict[tuple[str, int], list[tuple[Optional[bytes], bytes, Optional[Headers]]]] = {}
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        limit = kafka._max_request_size // 2  # leaves room for the batch's and request's framing
        for topic, key, message in outgoing:
            headers, key_bytes = _headers(message), _key(key)
            for value in _values(message, limit):
                if len(value) + len(key_bytes or b"") > limit:
                    await self._send_one(topic, key_bytes, value, headers)  # refused or sent alone, as ever
                else:
                    await self._group(kafka, grouped, partitions, topic, key_bytes, value, headers)
        for (topic, partition), records in grouped.items():
            batch = kafka.create_batch()
            for key_bytes, value, headers in records:
                if batch.append(key=key_bytes, value=value, timestamp=None, headers=list(headers or ())) is None:
                    self._pending.append(await kafka.send_batch(batch, topic, partition=partition))
                    batch = kafka.create_batch()
                    batch.append(key=key_bytes, value=value, timestamp=None, headers=list(headers or ()))
            if batch.record_count():
                self._pending.append(await kafka.send_batch(batch, topic, partition=partition))

    @staticmethod
    async def _group(kafka: AIOKafkaProducer, grouped: dict[tuple[str, int], list[Any]],
                     partitions: dict[str, tuple[list[int], list[int]]], topic: str, key: Optional[bytes], value: bytes,
                     headers: Optional[Headers]) -> None:
        """Into its partition's list (the producer's partitioner on the key, as a single send)."""
        if topic not in partitions:
            await kafka.client._wait_on_metadata(topic)
            partitions[topic] = (sorted(kafka._metadata.partitions_for_topic(topic)),
                                 sorted(kafka._metadata.available_partitions_for_topic(topic)))
        every, available = partitions[topic]
        grouped.setdefault((topic, kafka._partitioner(key, every, available)), []).append((key, value, headers))

    def discard(self) -> None:
        """Forget pending sends (after a failed batch: their outcome no longer matters)."""
        self._pending = []

    async def flush(self) -> int:
        """Wait until the broker acknowledged everything sent since the last flush."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)
        return len(pending)


E = TypeVar("E", bound=InputEvent)


async def take_in(messages: Sequence[RawMessage], model: type[E], settings: Settings, outbox: Outbox, stream: str) -> Intake[E]:
    """Every agent's first step: the messages' valid events, each with the message it came
    from; the rest sent to the dead-letter topic with their reasons (counted per stream and
    code). The dead letters are acknowledged with the batch's outputs (`flush`)."""
    intake = decode_batch(messages, model, limits_from_settings(settings))
    if intake.dead_letters:
        await outbox.send_many([(settings.topics.dead_letters, letter.key, letter) for letter in intake.dead_letters])
        for letter in intake.dead_letters:
            metrics.DEAD_LETTERS.labels(stream, letter.error_code).inc()
    return intake


def _key(key: Optional[Union[str, bytes]]) -> Optional[bytes]:
    return key.encode() if isinstance(key, str) else key


def _bytes(message: Message) -> bytes:
    return message.value if isinstance(message, EncodedMessage) else message.model_dump_json().encode()


def _values(message: Union[Message, Sequence[Message]], limit: int) -> list[bytes]:
    """The message's bytes; a list's as JSON arrays in order, each under `limit` bytes where the
    elements allow (a gateway of 10,000 readings would not fit one request)."""
    if not isinstance(message, (list, tuple)):
        return [_bytes(message)]
    arrays: list[bytes] = []
    part: list[bytes] = []
    size = 2
    for element in map(_bytes, message):
        if part and size + len(element) + 1 > limit:
            arrays.append(b"[" + b",".join(part) + b"]")
            part, size = [], 2
        part.append(element)
        size += len(element) + 1
    if part:
        arrays.append(b"[" + b",".join(part) + b"]")
    return arrays


def _headers(message: Union[Message, Sequence[Message]]) -> Optional[Headers]:  # dead letters: dlq.*
    return kafka_headers(message) if isinstance(message, DeadLetter) else None


def _kafka_producer(producer: Any) -> Any:
    """The aiokafka producer under Faust's (or the producer itself), if there is one."""
    inner = producer._ensure_producer() if hasattr(producer, "_ensure_producer") else producer
    return inner if isinstance(inner, AIOKafkaProducer) else None
