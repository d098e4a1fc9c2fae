"""The retraining job against a real (embedded) broker: the history read back from the topics
(gateway arrays, bad messages and duplicates included) trains a version that is compared with
the current one and promoted through the gate, recorded as the "retrain" actor; a drift event
of the stream on drift-events starts a run."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from schemas import DriftEvent
from stream_app.kafka_io import ensure_topics
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings
from stream_app.training import maintenance as mt
from stream_app.training import retrain
from tests.integration.kafka_clients import produce

pytestmark = [pytest.mark.integration]


def _history_messages(readings: list, outcomes: list) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Readings one per message, keyed by machine, except a gateway array of three; two bad
    messages and one repeated reading; outcomes one per message."""
    encoded = [(r.machine_id.encode(), r.model_dump_json().encode()) for r in readings]
    array = json.dumps([json.loads(v) for _, v in encoded[:3]]).encode()
    reading_messages = [(encoded[0][0], array), *encoded[3:], encoded[10], (b"m", b"not json"), (b"m", b'{"event_id": "x"}')]
    outcome_messages = [(o.machine_id.encode(), o.model_dump_json().encode()) for o in outcomes]
    return reading_messages, outcome_messages


def test_a_retraining_run_reads_the_topics_compares_registers_and_promotes(broker, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap, model_dir=tmp_path / "models")
    readings, outcomes = mt.simulated_history(n_machines=10, seed=5, lives_per_machine=2)
    registry = ModelRegistry(settings.model_dir)
    # The current version: barely trained, so the retrained one should pass the gate.
    mt.train_maintenance(registry, readings, outcomes, mt.TrainConfig.quick(epochs=1, lr=1e-6))
    topics = settings.topics
    asyncio.run(ensure_topics(broker.bootstrap, [topics.sensor_readings, topics.maintenance_outcomes], partitions=3))
    reading_messages, outcome_messages = _history_messages(readings, outcomes)
    produce(broker.bootstrap, topics.sensor_readings, reading_messages)
    produce(broker.bootstrap, topics.maintenance_outcomes, outcome_messages)

    result = retrain.retrain_once(settings, retrain.RetrainJob("maintenance", quick=True), reason="test")

    assert result.version == "v2", result.text
    read = (f"topic {topics.sensor_readings}: {len(reading_messages)} messages, {len(readings)} events, "
            "2 undecodable skipped (not_json 1, invalid_fields 1), 1 duplicate")
    assert read in result.text and f"{len(outcomes)} events" in result.text
    new = registry.get("maintenance", "v2")
    assert new.manifest["data_fingerprint"] == mt.data_fingerprint(readings, outcomes)  # every event, once
    comparison = new.manifest["comparison"]
    assert comparison["current"]["version"] == "v1" and set(comparison["candidate"]) == {"roc_auc", "brier"}
    assert comparison["candidate"]["roc_auc"] > comparison["current"]["roc_auc"]
    retrained = [(e.action, e.version) for e in registry.history("maintenance") if e.actor == "retrain"]
    assert retrained == [("registered", "v2"), ("promoted", "v2")]
    assert registry.history("maintenance")[-1].reason.startswith("retraining: test")
    assert registry.current("maintenance").version == "v2"
    assert topics.sensor_readings in json.loads(new.file("report.json").read_text())["source"]


def test_drift_of_the_stream_starts_a_run(broker, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap, model_dir=tmp_path / "models")
    now = datetime.now(timezone.utc)

    def drift(stream: str, feature: str, at: datetime) -> tuple[bytes, bytes]:
        event = DriftEvent(drift_id=f"{stream}-{feature}", stream=stream, partition=1, feature=feature, detector="adwin",
                           detected_at=at, event_ts=at, values_seen=4000, mean_before=1.0, mean_after=1.9,
                           reference_mean=1.0, reference_std=0.2, effect=4.5, sensitivity={"delta": 0.002})
        return stream.encode(), event.model_dump_json().encode()

    produce(broker.bootstrap, settings.topics.drift_events, [
        drift("maintenance", "old_news", datetime(2020, 1, 1, tzinfo=timezone.utc)),  # before the job's horizon
        drift("demand", "units", now),  # another stream
        drift("maintenance", "vibration_rms", now),
    ])
    reasons: list[str] = []

    def run(settings: Settings, job: retrain.RetrainJob, reason: str) -> retrain.RetrainResult:
        reasons.append(reason)
        return retrain.RetrainResult("v1", "retrained")

    schedule = retrain.Schedule(every_s=None, min_interval_s=3600, drift_since=now.timestamp() - 60)
    watch = retrain.Watch(settings, retrain.RetrainJob("maintenance"), schedule, run=run)
    asyncio.run(asyncio.wait_for(retrain.watch(watch, on_drift=True, max_runs=1), timeout=60))
    assert len(reasons) == 1 and reasons[0].startswith("drift in vibration_rms (adwin, partition 1, effect 4.5)")
