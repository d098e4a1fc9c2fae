"""The whole maintenance path on a real broker: a real producer (librdkafka) sends simulated
readings and malformed messages; a real worker process scores them; the outputs are read back
from the topics."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from schemas import Alert, DeadLetter, Explanation, MaintenancePrediction
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator
from tests.integration.kafka_clients import OutputReader, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
# The worker is started with a small message limit so the oversized case stays cheap.
MAX_BYTES = 65_536
OUTPUT_TOPICS = ["maintenance-predictions", "alerts", "explanations", "dead-letters"]

GOOD = {"event_id": "gw-ok-{}", "machine_id": "gw-1", "ts": "2026-03-01T00:00:{:02d}Z",
        "sensors": {"vibration_rms": 2.0, "bearing_temp": 60.0}}

# (payload, expected error code); each must become exactly one dead letter.
MALFORMED: list[tuple[bytes, str]] = [
    (b"{not json", "not_json"),
    (b"\xff\xfe\x00garbage", "not_utf8"),
    (b'{"event_id": "x1", "machine_id": "m", "ts": "2026-03-01T00:00:00Z", "sensors": {"vibration_rms": "high"}}', "invalid_fields"),
    (b'{"event_id": "x2", "machine_id": "m", "sensors": {"vibration_rms": 1.0}}', "invalid_fields"),
    (b'{"event_id": "x3", "machine_id": "m", "ts": "2026-03-01T00:00:00Z", "sensors": {"vibration_rms": NaN}}', "non_finite_number"),
    (b'{"schema_version": 99, "event_id": "x4", "machine_id": "m", "ts": "2026-03-01T00:00:00Z", "sensors": {"a": 1.0}}', "unsupported_schema_version"),
    (b'{"event_id": "x5", "machine_id": "m", "ts": "2090-03-01T00:00:00Z", "sensors": {"a": 1.0}}', "timestamp_in_future"),
    (b"[" * 5000 + b"]" * 5000, "nesting_too_deep"),
    (b'"just a string"', "not_an_object"),
    (json.dumps({"event_id": "x6", "machine_id": "m", "ts": "2026-03-01T00:00:00Z", "sensors": {"a": 1.0}, "pad": "x" * 100_000}).encode(), "oversized_message"),
]


def _gateway_message() -> bytes:
    """One message holding three readings, the middle one bad."""
    good = [json.loads(json.dumps(GOOD).replace("{}", str(i)).replace("{:02d}", f"{i:02d}")) for i in range(3)]
    good[1]["sensors"] = {"vibration_rms": [1, 2]}
    return json.dumps(good).encode()


def test_readings_in_predictions_alerts_explanations_and_dead_letters_out(
    broker, start_worker, trained_model_dir: Path
) -> None:
    history = FleetSimulator(FleetConfig(n_machines=6, seed=11)).history(1)
    readings = history.readings
    worker = start_worker(trained_model_dir, MAX_MESSAGE_BYTES=str(MAX_BYTES))

    produce(broker.bootstrap, "sensor-readings",
            ((r["machine_id"].encode(), json.dumps(r).encode()) for r in readings))
    produce(broker.bootstrap, "sensor-readings", [(b"bad", payload) for payload, _ in MALFORMED])
    produce(broker.bootstrap, "sensor-readings", [(b"gw-1", _gateway_message())])

    expected_ids = {r["event_id"] for r in readings} | {"gw-ok-0", "gw-ok-2"}
    reader = OutputReader(broker.bootstrap, OUTPUT_TOPICS, PARTITIONS)
    try:
        def complete(r: OutputReader) -> bool:
            predicted = {p["event_id"] for p in r.messages["maintenance-predictions"]}
            return expected_ids <= predicted and len(r.messages["dead-letters"]) >= len(MALFORMED) + 1

        assert reader.until(complete, timeout=150, alive=worker.alive), f"outputs incomplete; worker log:\n{worker.log()[-3000:]}"
        reader.poll(2.0)  # anything straggling (duplicates would show here)
    finally:
        reader.close()
    assert worker.proc.poll() is None, "the worker died"

    predictions = [MaintenancePrediction.model_validate(p) for p in reader.messages["maintenance-predictions"]]
    assert {p.event_id for p in predictions} == expected_ids
    assert all(0.0 <= p.failure_probability <= 1.0 and 0.0 <= p.confidence <= 1.0 for p in predictions)
    assert {p.model_version for p in predictions} == {"v1"}

    # Bad input: one dead letter per malformed message, with its precise code and origin.
    letters = [DeadLetter.model_validate(d) for d in reader.messages["dead-letters"]]
    codes = sorted(d.error_code for d in letters if d.item_index is None)
    assert codes == sorted(code for _, code in MALFORMED)
    gateway = [d for d in letters if d.item_index is not None]
    assert len(gateway) == 1 and gateway[0].item_index == 1 and gateway[0].error_code == "invalid_fields"
    assert all(d.source_topic == "sensor-readings" and d.offset is not None for d in letters)
    binary = next(d for d in letters if d.error_code == "not_utf8")
    assert binary.payload_encoding == "base64"

    # Alerts: every failing machine in this history should be flagged before it fails, and each
    # alert has its explanation under the same id.
    alerts = [Alert.model_validate(a) for a in reader.messages["alerts"]]
    explanations = {e["alert_id"]: Explanation.model_validate(e) for e in reader.messages["explanations"]}
    assert alerts, "no alert at all"
    assert {a.alert_id for a in alerts} <= set(explanations)
    failures = {o["machine_id"]: datetime.fromisoformat(o["ts"].replace("Z", "+00:00")) for o in history.outcomes}
    caught = {
        a.entity_id for a in alerts
        if a.entity_id in failures and 0 <= (failures[a.entity_id] - a.event_ts).total_seconds() <= 48 * 3600
    }
    assert len(caught) >= len(failures) // 2, f"only {sorted(caught)} of {sorted(failures)} alerted before failure"
    for alert in alerts:
        explanation = explanations[alert.alert_id]
        assert explanation.entity_id == alert.entity_id and explanation.text
        if alert.decision_source == "model":
            assert explanation.features, "a model alert must say which sensors drove it"


def test_without_a_model_the_rules_decide_and_say_why(broker, start_worker, tmp_path: Path) -> None:
    worker = start_worker(tmp_path / "empty_model_store")
    hot = {"event_id": "hot-1", "machine_id": "m-hot", "ts": "2026-03-01T00:00:00Z",
           "sensors": {"vibration_rms": 9.5, "bearing_temp": 70.0}}
    calm = {"event_id": "calm-1", "machine_id": "m-calm", "ts": "2026-03-01T00:00:00Z",
            "sensors": {"vibration_rms": 2.0, "bearing_temp": 60.0}}
    produce(broker.bootstrap, "sensor-readings", [(b"m-hot", json.dumps(hot).encode()), (b"m-calm", json.dumps(calm).encode())])

    reader = OutputReader(broker.bootstrap, OUTPUT_TOPICS, PARTITIONS)
    try:
        done = reader.until(
            lambda r: len(r.messages["maintenance-predictions"]) >= 2 and r.messages["explanations"], 90, worker.alive
        )
        assert done, f"outputs incomplete; worker log:\n{worker.log()[-3000:]}"
    finally:
        reader.close()
    predictions = {p["event_id"]: p for p in reader.messages["maintenance-predictions"]}
    assert all(p["decision_source"] == "rule" and p["model_version"] is None for p in predictions.values())
    assert "model unavailable" in predictions["hot-1"]["reason"]
    assert [a["entity_id"] for a in reader.messages["alerts"]] == ["m-hot"]
    alert = reader.messages["alerts"][0]
    assert alert["decision_source"] == "rule" and "vibration_rms" in alert["reason"]
    assert any(rule["fired"] and rule["rule"].startswith("vibration_rms") for rule in reader.messages["explanations"][0]["rules"])


def test_a_gateway_message_is_answered_by_one_array_where_its_topic_says_so(
    broker, start_worker, trained_model_dir: Path
) -> None:
    """TOPIC_CONFIG__SENSOR_READINGS__ANSWER_ARRAYS: one predictions message per gateway message,
    its valid readings' predictions in order, keyed like the gateway message; single-reading
    messages are answered as ever."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    worker = start_worker(trained_model_dir, TOPIC_CONFIG__SENSOR_READINGS__ANSWER_ARRAYS="true")
    single = {**json.loads(json.dumps(GOOD).replace("{}", "single").replace("{:02d}", "30")), "machine_id": "m-single"}
    produce(broker.bootstrap, "sensor-readings", [(b"gw-1", _gateway_message()), (b"m-single", json.dumps(single).encode())])

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "arrays", "enable.auto.commit": False})
    consumer.assign([TopicPartition("maintenance-predictions", p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    records = []
    try:
        for _ in range(240):
            records += [m for m in consumer.consume(100, 0.5) if not m.error()]
            if len(records) >= 2 or not worker.alive():
                break
        records += [m for m in consumer.consume(100, 2.0) if not m.error()]  # nothing more may come
    finally:
        consumer.close()
    assert len(records) == 2, f"{len(records)} prediction messages; worker log:\n{worker.log()[-3000:]}"
    by_key = {m.key(): json.loads(m.value()) for m in records}
    answer = by_key[b"gw-1"]
    assert isinstance(answer, list) and [p["event_id"] for p in answer] == ["gw-ok-0", "gw-ok-2"]
    assert all(MaintenancePrediction.model_validate(p).machine_id == "gw-1" for p in answer)
    assert MaintenancePrediction.model_validate(by_key[b"m-single"]).event_id == "gw-ok-single"
