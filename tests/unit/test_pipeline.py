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

    monkeypatch.setattr(agents.pipeline, "SCORE_CHUNK", 1)
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
    assert sizes == [1, 2], "the gateway message's two readings stay in one chunk"
    assert [m["event_id"] for m in producer.on("echo")] == ["e1", "e2", "e3"]


def test_scoring_chunks_never_split_a_gateway_message() -> None:
    from agents.pipeline import chunks

    a, b, c = (RawMessage("t", 0, o, None, b"[]") for o in range(3))
    origin = [a, a, a, b, c, c]
    assert list(chunks(origin, 2)) == [(0, 3), (3, 6)]
    assert list(chunks(origin, 100)) == [(0, 6)]
    assert list(chunks([], 2)) == []


def test_an_array_answer_too_large_for_one_request_is_split_in_order() -> None:
    import json

    from agents.publish import _values
    from schemas import DriftEvent

    events = [DriftEvent(drift_id=f"d{i}", stream="s", partition=0, feature="f", detector="adwin",
                         detected_at="2026-12-07T00:00:00Z", event_ts=None, values_seen=i, mean_before=0, mean_after=1,
                         reference_mean=0, reference_std=1, effect=1, sensitivity={}) for i in range(50)]
    one = len(events[0].model_dump_json())
    arrays = _values(events, limit=10 * one)
    assert len(arrays) > 1 and all(len(a) <= 10 * one for a in arrays)
    assert [e["drift_id"] for a in arrays for e in json.loads(a)] == [f"d{i}" for i in range(50)]
    assert _values(events, limit=10**9) == [b"[" + b",".join(e.model_dump_json().encode() for e in events) + b"]"]
