"""Hostile input, generated: whatever bytes arrive, decoding never raises, every message yields
events or precise failures (nothing vanishes), and each failure makes a dead letter that keeps
the payload."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import CalendarEntry, MaintenanceOutcome, SalesEvent, SensorReading, SupplyChainTransaction, SupplyChainVerdict
from stream_app.deadletter import build_dead_letter
from stream_app.decoding import ErrorCode, Limits, decode_message

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
CODES = {v for k, v in vars(ErrorCode).items() if k.isupper()}
INPUTS = [SensorReading, MaintenanceOutcome, SupplyChainTransaction, SupplyChainVerdict, SalesEvent, CalendarEntry]
LIMITS = Limits(max_bytes=20_000, max_events=50)

VALID = {
    SensorReading: {"event_id": "e", "machine_id": "m", "ts": "2026-05-01T00:00:00Z", "sensors": {"vibration_rms": 2.0}},
    MaintenanceOutcome: {"event_id": "e", "machine_id": "m", "ts": 1777593600000, "outcome": "failure"},
    SupplyChainTransaction: {"event_id": "e", "ts": "2026-05-01T00:00:00Z", "shipment_id": "s", "product_id": "p", "lot_id": "l",
                             "source_id": "a", "source_type": "manufacturer", "target_id": "b", "target_type": "pharmacy",
                             "quantity": 10, "unit_price": 2.5},
    SupplyChainVerdict: {"event_id": "e", "ts": "2026-05-01T00:00:00Z", "shipment_id": "s", "verdict": "cleared"},
    SalesEvent: {"event_id": "e", "ts": "2026-05-01T00:00:00Z", "sku": "k", "market": "DE", "units": 3, "unit_price": 9.9},
    CalendarEntry: {"event_id": "e", "ts": "2026-05-01T00:00:00Z", "kind": "holiday", "market": "DE", "start": "2026-05-01", "end": "2026-05-02"},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
hostile_values = json_values | st.just(10**400) | st.text(min_size=500, max_size=2000) | st.sampled_from(
    ["2099-01-01T00:00:00Z", "1999-01-01T00:00:00Z", "not a time", 1e300, -1e300, -1, 0, "", [], {}]
)


def check(raw: bytes, model: type) -> None:
    decoded = decode_message(raw, model, LIMITS, now=NOW)
    assert decoded.events or decoded.failures, "a message vanished"
    for event in decoded.events:
        assert isinstance(event, model)
    for failure in decoded.failures:
        assert failure.code in CODES and failure.message
        letter = build_dead_letter(failure, topic="t", partition=0, offset=1, key=None, raw=raw, max_payload_bytes=4096)
        kept = letter.payload.encode() if letter.payload_encoding == "utf-8" else base64.b64decode(letter.payload)
        assert raw.startswith(kept) and letter.payload_bytes == len(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.sampled_from(INPUTS))
def test_any_bytes(raw: bytes, model: type) -> None:
    check(raw, model)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(INPUTS),
    st.dictionaries(st.text(max_size=12), hostile_values, max_size=4),
    st.lists(st.text(max_size=12), max_size=3),
    st.sampled_from([None, 0, 1, 2, -1, "1", True]),
)
def test_valid_events_with_fields_changed_added_or_removed(model: type, changes: dict, removed: list, version: object) -> None:
    event = {**VALID[model], **changes}
    for key in removed:
        event.pop(key, None)
    if version is not None:
        event["schema_version"] = version
    check(json.dumps(event).encode(), model)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(INPUTS), st.lists(st.booleans(), min_size=1, max_size=60))
def test_gateway_arrays_answer_every_element(model: type, good: list[bool]) -> None:
    items = [VALID[model] if ok else {"event_id": None} for ok in good]
    decoded = decode_message(json.dumps(items).encode(), model, LIMITS, now=NOW)
    if len(items) > LIMITS.max_events:
        assert [f.code for f in decoded.failures] == [ErrorCode.TOO_MANY]
    else:
        assert len(decoded.events) == sum(good)
        assert sorted(f.item_index for f in decoded.failures) == [i for i, ok in enumerate(good) if not ok]


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=100_000), st.sampled_from([b"[", b"{\"a\":"]))
def test_deep_nesting_is_a_failure_not_a_crash(depth: int, opener: bytes) -> None:
    check(opener * depth, SensorReading)


def test_the_valid_examples_are_valid() -> None:
    for model, event in VALID.items():
        assert decode_message(json.dumps(event).encode(), model, LIMITS, now=NOW).events
