from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import MESSAGES, SensorReading, deterministic_id
from schemas import export


def test_committed_json_schema_files_match_the_models() -> None:
    assert export.main(["--check"]) == 0, "run: python -m schemas.export"


def test_every_message_has_a_committed_schema_file() -> None:
    assert {p.name for p in export.JSON_DIR.glob("*.schema.json")} == {f"{n}.schema.json" for n in MESSAGES}


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
