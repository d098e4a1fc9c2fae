"""The generic micro-batch path: whatever goes wrong inside a batch, every source message is
answered and the agent carries on."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stream_app.intake import RawMessage
from agents.pipeline import PROCESSING_FAILED, Output, StreamPipeline
from agents.publish import Outbox
from schemas import SensorReading
from stream_app.settings import Settings
from tests.unit.agent_fixtures import RecordingProducer


def _messages() -> list[RawMessage]:
    one = {"event_id": "e1", "machine_id": "m1", "ts": "2026-03-01T00:00:00Z", "sensors": {"t": 1.0}}
    gateway = [{**one, "event_id": "e2"}, {**one, "event_id": "e3"}]
    return [RawMessage("sensor-readings", 0, 10, b"m1", json.dumps(one).encode()),
            RawMessage("sensor-readings", 0, 11, b"m1", json.dumps(gateway).encode())]


def test_a_failure_while_publishing_dead_letters_every_source_message_once() -> None:
    def outputs(result: Any) -> Any:
        raise RuntimeError("an output the broker refuses")

    producer = RecordingProducer()
    with ThreadPoolExecutor(1) as executor:
        run = StreamPipeline("maintenance", SensorReading, Settings(), lambda events: list(events), outputs,
                             Outbox(producer), executor)
        asyncio.run(run.process(_messages()))  # does not raise
    letters = producer.on("dead-letters")
    assert [(d["offset"], d["error_code"]) for d in letters] == [(10, PROCESSING_FAILED), (11, PROCESSING_FAILED)]
    assert "an output the broker refuses" in letters[0]["error_message"]


def test_without_failure_nothing_is_dead_lettered() -> None:
    def outputs(event: SensorReading) -> Any:
        yield Output("echo", event.machine_id, event)

    producer = RecordingProducer()
    with ThreadPoolExecutor(1) as executor:
        run = StreamPipeline("maintenance", SensorReading, Settings(), lambda events: list(events), outputs,
                             Outbox(producer), executor)
        asyncio.run(run.process(_messages()))
    assert [m["event_id"] for m in producer.on("echo")] == ["e1", "e2", "e3"]
    assert producer.on("dead-letters") == []


def test_a_large_batch_is_scored_a_chunk_at_a_time_with_every_output_in_order(monkeypatch) -> None:
    import agents.pipeline

    monkeypatch.setattr(agents.pipeline, "SCORE_CHUNK", 2)
    sizes: list[int] = []

    def score(events: list[SensorReading]) -> list[SensorReading]:
        sizes.append(len(events))
        return list(events)

    def outputs(event: SensorReading) -> Any:
        yield Output("echo", event.machine_id, event)

    producer = RecordingProducer()
    with ThreadPoolExecutor(1) as executor:
        asyncio.run(StreamPipeline("maintenance", SensorReading, Settings(), score, outputs, Outbox(producer),
                                   executor).process(_messages()))
    assert sizes == [2, 1]
    assert [m["event_id"] for m in producer.on("echo")] == ["e1", "e2", "e3"]


def test_messages_of_partitions_no_longer_assigned_are_left_to_their_new_owner() -> None:
    """Kept: messages of held partitions. The others are disowned: untracked, so the consumer
    refuses the ack Faust's batching sends for them and never commits them from here."""
    from collections import namedtuple
    from types import SimpleNamespace

    from stream_app.faust_transport import held_messages

    TP = namedtuple("TP", "topic partition")
    events = [SimpleNamespace(message=SimpleNamespace(topic=t, partition=p, offset=1, key=b"k", value=b"{}", timestamp=None,
                                                      tracked=True))
              for t, p in (("sensor-readings", 0), ("sensor-readings", 1), ("sensor-readings", 2), ("x", None))]
    app = SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: {TP(topic="sensor-readings", partition=0),
                                                                       TP(topic="sensor-readings", partition=2),
                                                                       TP(topic="other", partition=1)}))
    kept = held_messages(app, events)
    assert [(m.topic, m.partition) for m in kept] == [("sensor-readings", 0), ("sensor-readings", 2), ("x", None)]
    assert [e.message.tracked for e in events] == [True, False, True, True]