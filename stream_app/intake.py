"""Shared first step of every agent (and of retraining from the topics): raw Kafka messages ->
validated events, each remembering where it came from, plus dead letters for whatever could
not be decoded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, Optional, Sequence, TypeVar

from schemas import DeadLetter
from schemas.common import InputEvent
from stream_app.deadletter import build_dead_letter
from stream_app.decoding import Limits, decode_message
from stream_app.settings import Settings

E = TypeVar("E", bound=InputEvent)


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: Optional[int]
    offset: Optional[int]
    key: Optional[bytes]
    value: Optional[bytes]
    # Broker/producer timestamp, seconds since the epoch: the start of end-to-end latency.
    timestamp: Optional[float] = None

    @classmethod
    def from_faust(cls, event: Any) -> "RawMessage":
        msg = event.message
        return cls(msg.topic, msg.partition, msg.offset, msg.key, msg.value, msg.timestamp)


@dataclass
class Intake(Generic[E]):
    events: list[E]
    # origin[i] is the message events[i] came from (a gateway message yields several events).
    origin: list[RawMessage]
    dead_letters: list[DeadLetter]


def limits_from_settings(settings: Settings) -> Limits:
    return Limits(
        max_bytes=settings.max_message_bytes,
        max_events=settings.max_events_per_message,
        max_future_skew=timedelta(seconds=settings.max_future_skew_s),
    )


def decode_batch(messages: Sequence[RawMessage], model: type[E], limits: Limits) -> Intake[E]:
    intake: Intake[E] = Intake([], [], [])
    for message in messages:
        decoded = decode_message(message.value, model, limits)
        intake.events.extend(decoded.events)
        intake.origin.extend([message] * len(decoded.events))
        for failure in decoded.failures:
            intake.dead_letters.append(
                build_dead_letter(
                    failure,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    raw=message.value,
                )
            )
    return intake
