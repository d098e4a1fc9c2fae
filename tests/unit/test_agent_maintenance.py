"""The maintenance agent's pipeline without a broker: what it publishes for a batch."""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from stream_app.intake import RawMessage
from agents.maintenance import pipeline
from agents.publish import Outbox
from tests.unit.agent_fixtures import RecordingProducer
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import Settings


def _message(offset: int, value: bytes, key: bytes = b"m1") -> RawMessage:
    return RawMessage("sensor-readings", 0, offset, key, value, None)


def _reading(i: int, machine: str = "m1", **sensors: float) -> bytes:
    return json.dumps({"event_id": f"e{i}", "machine_id": machine, "ts": 1767225600000 + i * 1_800_000,
                       "sensors": sensors or {"vibration_rms": 2.0}}).encode()


def _run(scorer: Any, messages: list[RawMessage]) -> RecordingProducer:
    producer = RecordingProducer()
    with ThreadPoolExecutor(1) as executor:
        asyncio.run(pipeline(Settings(), scorer.score_batch, Outbox(producer), executor).process(messages))
    return producer


@pytest.fixture
def rule_scorer(tmp_path) -> MaintenanceScorer:
    from stream_app.settings import MaintenanceSettings

    return MaintenanceScorer.load(ModelRegistry(tmp_path), MaintenanceSettings())


def test_good_and_bad_messages_in_one_batch(rule_scorer: MaintenanceScorer) -> None:
    messages = [
        _message(0, _reading(0)),
        _message(1, b"{oops"),
        _message(2, _reading(2, vibration_rms=9.0)),
        _message(3, json.dumps([json.loads(_reading(3)), {"event_id": "x"}]).encode()),
    ]
    out = _run(rule_scorer, messages)
    assert [p["event_id"] for p in out.on("maintenance-predictions")] == ["e0", "e2", "e3"]
    letters = out.on("dead-letters")
    assert [(d["offset"], d["error_code"], d["item_index"]) for d in letters] == [(1, "not_json", None), (3, "invalid_fields", 1)]
    alerts = out.on("alerts")
    assert [a["event_ids"] for a in alerts] == [["e2"]]
    assert [e["alert_id"] for e in out.on("explanations")] == [alerts[0]["alert_id"]]


class BrokenScorer:
    model_version = "v9"

    def score_batch(self, readings: Any) -> Any:
        raise RuntimeError("inference exploded")


def test_a_scorer_failure_dead_letters_the_batch_and_the_pipeline_goes_on() -> None:
    messages = [_message(0, _reading(0)), _message(1, json.dumps([json.loads(_reading(1)), json.loads(_reading(2))]).encode())]
    out = _run(BrokenScorer(), messages)
    assert out.on("maintenance-predictions") == []
    letters = out.on("dead-letters")
    # One dead letter per source message (the gateway message once, not per reading), replayable.
    assert [(d["offset"], d["error_code"]) for d in letters] == [(0, "scoring_failed"), (1, "scoring_failed")]
    assert "inference exploded" in letters[0]["error_message"]
    assert json.loads(letters[1]["payload"])[1]["event_id"] == "e2"


def test_a_model_failing_at_inference_hands_the_stream_to_its_rules(tmp_path) -> None:
    from stream_app import metrics
    from stream_app.settings import MaintenanceSettings
    from tests.unit.maintenance_fixtures import trained_model, write_artifact

    model, features = trained_model()
    scorer = MaintenanceScorer.load(write_artifact(tmp_path / "store", model, features), MaintenanceSettings())
    assert scorer.model_version == "v1"

    def broken(*_: Any) -> Any:
        raise RuntimeError("CUDA error: device-side assert")  # any fault inside the model

    scorer._model.model.forward = broken  # the model itself breaks, not the pipeline
    fallbacks = metrics.SCORER_FALLBACKS.labels("maintenance")._value.get()

    def fall_back(exc: Exception) -> Any:
        return scorer.rules_only(f"model unavailable: failed at inference ({exc})").score_batch

    producer = RecordingProducer()
    with ThreadPoolExecutor(1) as executor:
        run = pipeline(Settings(), scorer.score_batch, Outbox(producer), executor, fallback=fall_back)
        asyncio.run(run.process([_message(0, _reading(0)), _message(1, _reading(1, vibration_rms=9.0))]))
        asyncio.run(run.process([_message(2, _reading(2))]))
    predictions = producer.on("maintenance-predictions")
    assert [p["event_id"] for p in predictions] == ["e0", "e1", "e2"], "nothing lost"
    assert all(p["decision_source"] == "rule" and "failed at inference" in p["reason"] for p in predictions)
    assert [a["event_ids"] for a in producer.on("alerts")] == [["e1"]]
    # audit trail: where the alert's input lies, and its digest
    raw = _reading(1, vibration_rms=9.0)
    assert producer.on("alerts")[0]["inputs"] == [
        {"topic": "sensor-readings", "partition": 0, "offset": 1, "sha256": hashlib.sha256(raw).hexdigest()}]
    assert producer.on("dead-letters") == []
    assert metrics.SCORER_FALLBACKS.labels("maintenance")._value.get() == fallbacks + 1
