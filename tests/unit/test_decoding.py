from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from schemas import DeadLetter, SensorReading
from stream_app.deadletter import build_dead_letter
from stream_app.decoding import ErrorCode, Limits, decode_message

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def reading(i: int = 0, **overrides: object) -> dict:
    return {"event_id": f"e{i}", "machine_id": "m1", "ts": "2026-02-28T10:00:00Z", "sensors": {"t": 1.0}, **overrides}


def decode(raw: bytes, **limits: object):
    return decode_message(raw, SensorReading, Limits(**limits), now=NOW)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", ErrorCode.EMPTY),
        (b"\xc3\x28", ErrorCode.NOT_UTF8),
        (b"{", ErrorCode.NOT_JSON),
        (b'{"a": Infinity}', ErrorCode.NON_FINITE),
        (b"[" * 100_000 + b"]" * 100_000, ErrorCode.TOO_DEEP),
        (b"42", ErrorCode.NOT_OBJECT),
        (json.dumps(reading(schema_version=2)).encode(), ErrorCode.SCHEMA_VERSION),
        (json.dumps(reading(schema_version=True)).encode(), ErrorCode.SCHEMA_VERSION),
        (json.dumps(reading(machine_id=None)).encode(), ErrorCode.INVALID),
        (json.dumps(reading(ts="2026-03-09T00:00:00Z")).encode(), ErrorCode.FUTURE_TS),
    ],
)
def test_each_kind_of_bad_message_gets_its_code_and_no_event(raw: bytes, code: str) -> None:
    decoded = decode(raw)
    assert decoded.events == []
    assert [f.code for f in decoded.failures] == [code]
    assert decoded.failures[0].message


def test_size_and_array_limits() -> None:
    assert decode(b" " * 2048 + b"{}", max_bytes=1024).failures[0].code == ErrorCode.OVERSIZED
    many = json.dumps([reading(i) for i in range(3)]).encode()
    assert decode(many, max_events=2).failures[0].code == ErrorCode.TOO_MANY


def test_field_errors_name_the_field() -> None:
    failure = decode(json.dumps(reading(sensors={"t": "hot"})).encode()).failures[0]
    assert "sensors.t" in failure.message
    assert failure.errors[0]["field"] == "sensors.t"


def test_gateway_array_keeps_good_events_and_indexes_bad_ones() -> None:
    items = [reading(0), reading(1, sensors={}), reading(2), "nope"]
    decoded = decode(json.dumps(items).encode())
    assert [e.event_id for e in decoded.events] == ["e0", "e2"]
    assert [(f.item_index, f.code) for f in decoded.failures] == [(1, ErrorCode.INVALID), (3, ErrorCode.NOT_OBJECT)]


def test_future_tolerance_is_configurable() -> None:
    raw = json.dumps(reading(ts="2026-03-09T00:00:00Z")).encode()
    assert decode(raw, max_future_skew=timedelta(days=30)).events


def test_dead_letter_keeps_payload_origin_and_reason() -> None:
    raw = b"\xff\x00binary"
    failure = decode(raw).failures[0]
    letter = build_dead_letter(failure, topic="sensor-readings", partition=2, offset=17, key=b"m1", raw=raw)
    DeadLetter.model_validate(letter.model_dump())
    assert (letter.partition, letter.offset, letter.key) == (2, 17, "m1")
    assert letter.payload_encoding == "base64" and letter.payload_bytes == len(raw)
    assert letter.error_code == ErrorCode.NOT_UTF8
    again = build_dead_letter(failure, topic="sensor-readings", partition=2, offset=17, key=b"m1", raw=raw)
    assert again.dead_letter_id == letter.dead_letter_id, "redelivery must give the same id"


def test_dead_letter_truncates_huge_payloads_but_hashes_the_whole() -> None:
    raw = ("é" * 1000).encode()
    failure = decode(raw).failures[0]
    letter = build_dead_letter(failure, topic="t", partition=0, offset=1, key=None, raw=raw, max_payload_bytes=101)
    assert letter.payload_truncated and letter.payload_bytes == 2000
    assert letter.payload_encoding == "utf-8" and letter.payload == "é" * 50
    import hashlib

    assert letter.payload_sha256 == hashlib.sha256(raw).hexdigest()


# --- hostile inputs found by the end-to-end fault suite (tests/faults/test_hostile_input.py) ---
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[]", ErrorCode.EMPTY),  # an empty gateway array is answered, not silently dropped
        (json.dumps(reading(ts=10**400)).encode(), ErrorCode.INVALID),  # beyond any float
        (json.dumps(reading(cycle=2**63)).encode(), ErrorCode.INVALID),  # beyond int64 in the scorer
    ],
)
def test_numbers_and_arrays_that_once_escaped_as_exceptions(raw: bytes, code: str) -> None:
    decoded = decode(raw)
    assert decoded.events == [] and [f.code for f in decoded.failures] == [code]


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        (None, b"\x01" * 300_000),  # escapes to six bytes each in JSON
        (b"k" * 700_000, b"{"),  # a huge key
        (None, json.dumps(reading(sensors={f"s{'x' * 70}{i}": "bad" for i in range(14_000)})).encode()),  # many errors
    ],
)
def test_a_dead_letter_stays_far_below_the_broker_limit_whatever_the_input(key, raw: bytes) -> None:
    decoded = decode(raw, max_bytes=2_000_000)
    assert decoded.failures
    letter = build_dead_letter(decoded.failures[0], topic="t", partition=0, offset=1, key=key, raw=raw)
    assert len(letter.model_dump_json().encode()) < 600_000
    assert letter.payload_bytes == len(raw)


def test_a_bad_gateway_element_keeps_only_itself_not_the_whole_array() -> None:
    items = [reading(i) for i in range(500)]
    items[7] = {**reading(7), "sensors": {"t": "hot"}, "pad": "x" * 1000}
    raw = json.dumps(items).encode()
    decoded = decode(raw)
    (failure,) = decoded.failures
    letter = build_dead_letter(failure, topic="t", partition=0, offset=3, key=None, raw=raw)
    assert letter.item_index == 7 and json.loads(letter.payload) == items[7]
    assert letter.payload_bytes == len(raw) and len(letter.payload) < 2000
