from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (ANSWER_BATCHES, GATEWAY_BATCHES, MESSAGES, DriftEvent, ForecastDay, InputEvent, OutputMessage, SensorReading,
                     deterministic_id, export)
from schemas.outputs import InputRef


def test_committed_json_schema_files_match_the_models() -> None:
    assert export.main(["--check"]) == 0, "run: python -m schemas.export"


def test_every_message_and_gateway_form_has_a_committed_schema_file() -> None:
    assert {p.name for p in export.JSON_DIR.glob("*.schema.json")} == {f"{n}.schema.json" for n in export.names()}
    assert set(export.names()) == set(MESSAGES) | set(GATEWAY_BATCHES) | set(ANSWER_BATCHES)
    inputs = {name for name, model in MESSAGES.items() if issubclass(model, InputEvent)}
    assert set(GATEWAY_BATCHES) == {f"{name}-batch" for name in inputs} and len(inputs) == 6
    assert all(MESSAGES[name.removesuffix("-batch")] is model for name, model in ANSWER_BATCHES.items())


def test_every_file_declares_draft_2020_12_and_every_published_message_its_version() -> None:
    for name in export.names():
        schema = json.loads((export.JSON_DIR / f"{name}.schema.json").read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert schema["$id"] == f"{name}.schema.json"
    for name, model in MESSAGES.items():
        version = json.loads((export.JSON_DIR / f"{name}.schema.json").read_text())["properties"]["schema_version"]
        if issubclass(model, OutputMessage):
            assert version["const"] == 1 == model.model_fields["schema_version"].default, name
        else:
            assert version["enum"] == [1], name


def test_published_messages_carry_their_schema_version_and_their_parts_do_not() -> None:
    assert json.loads(ForecastDay(day="2026-03-01", horizon_days=1, p10=0, p50=1, p90=2).model_dump_json()).keys() \
        == {"day", "horizon_days", "p10", "p50", "p90"}
    assert "schema_version" not in InputRef.model_fields
    drift = DriftEvent(drift_id="d", stream="s", partition=0, feature="f", detector="adwin",
                       detected_at=datetime(2026, 3, 1, tzinfo=timezone.utc), event_ts=None, values_seen=1,
                       mean_before=0, mean_after=1, reference_mean=0, reference_std=1, effect=1, sensitivity={})
    assert json.loads(drift.model_dump_json())["schema_version"] == 1
    with pytest.raises(ValidationError):
        DriftEvent.model_validate({**drift.model_dump(), "schema_version": 2})


def _reading(**overrides: object) -> dict:
    base = {"event_id": "e1", "machine_id": "m1", "ts": "2026-03-01T10:00:00Z", "sensors": {"vibration_rms": 2.5}}
    return {**base, **overrides}


@pytest.mark.parametrize(
    "ts",
    ["2026-03-01T10:00:00Z", "2026-03-01T10:00:00+00:00", "2026-03-01T11:00:00+01:00", "2026-03-01T10:00:00", 1772359200000],
)
def test_timestamps_iso_or_epoch_millis_all_mean_the_same_instant(ts: object) -> None:
    assert SensorReading.model_validate(_reading(ts=ts)).ts == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("ts", "fragment"),
    [(1772359200, "epoch seconds"), (True, "boolean"), ("yesterday", "ISO 8601"), ("1999-01-01T00:00:00Z", "2000-2100")],
)
def test_bad_timestamps_are_rejected_with_a_reason(ts: object, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        SensorReading.model_validate(_reading(ts=ts))


@pytest.mark.parametrize("value", ["2.5", True, float("nan"), float("inf"), 10**400])
def test_sensor_values_must_be_finite_numbers(value: object) -> None:
    with pytest.raises(ValidationError):
        SensorReading.model_validate(_reading(sensors={"vibration_rms": value}))


def test_null_sensor_means_missing_and_extra_fields_are_ignored() -> None:
    reading = SensorReading.model_validate(_reading(sensors={"a": None, "b": 1}, firmware="2.1"))
    assert reading.sensors == {"a": None, "b": 1.0}
    assert not hasattr(reading, "firmware")


def test_deterministic_ids_repeat_for_equal_inputs_only() -> None:
    assert deterministic_id("a", 1) == deterministic_id("a", 1)
    assert deterministic_id("a", 1) != deterministic_id("a", 2)
    assert deterministic_id("a1", "") != deterministic_id("a", "1")


@given(st.lists(st.one_of(st.text(), st.integers(), st.none(), st.floats(allow_nan=False)), max_size=5))
def test_deterministic_ids_are_the_rfc_4122_version_5_uuids_of_their_parts(parts) -> None:
    from schemas.outputs import _ID_NAMESPACE

    assert deterministic_id(*parts) == str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(str(p) for p in parts)))
