"""The published JSON Schemas (schemas/json/) against the worker's decoding (stream_app/decoding.py):
the README's example messages and the simulators' messages are valid; for input messages, what
the worker takes (events, no dead letter) the schema accepts and what it dead-letters the schema
rejects, but for the few differences `KNOWN_EXCEPTIONS` names and checks.

Validation is Draft 2020-12 with format assertion (`date`, and `date-time` added below: the
`rfc3339-validator` package jsonschema would use is not installed). Message sizes and the
gateway array length are checked at the worker's defaults (MAX_MESSAGE_BYTES,
MAX_EVENTS_PER_MESSAGE)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from schemas import GATEWAY_BATCHES, MESSAGES, CalendarEntry, InputEvent, SalesEvent, SensorReading
from schemas.common import MAX_GATEWAY_EVENTS, TS_PATTERN
from schemas.export import JSON_DIR
from stream_app.decoding import SUPPORTED_SCHEMA_VERSIONS, Limits, decode_message
from stream_app.settings import Settings, Topics
from stream_app.simulation.streams import STREAMS
from tests.unit.test_fuzz_decoding import VALID

README = Path(__file__).resolve().parents[2] / "README.md"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)  # the worker's clock: VALID events are a month old
NAME_OF = {model: name for name, model in MESSAGES.items()}
T = Topics()
SCHEMA_OF_TOPIC = {T.sensor_readings: "sensor-reading", T.maintenance_outcomes: "maintenance-outcome",
                   T.supply_chain_transactions: "supply-chain-transaction", T.supply_chain_verdicts: "supply-chain-verdict",
                   T.sales_events: "sales-event", T.demand_calendar: "demand-calendar-entry"}
SCHEMA_OF_HISTORY_FILE = {"readings.jsonl": "sensor-reading", "outcomes.jsonl": "maintenance-outcome",
                          "transactions.jsonl": "supply-chain-transaction", "verdicts.jsonl": "supply-chain-verdict",
                          "sales.jsonl": "sales-event", "calendar.jsonl": "demand-calendar-entry"}
# README labels of message examples -> schema; "(abridged)" examples leave fields out on purpose.
SCHEMA_OF_README_LABEL = {
    "Sensor reading": "sensor-reading", "Sensor readings from a gateway": "sensor-reading-batch",
    "Maintenance outcome": "maintenance-outcome", "Prediction": "maintenance-prediction", "Alert": "alert",
    "Explanation": "explanation", "Dead letter": "dead-letter", "Drift event": "drift-event",
    "Supply-chain transaction": "supply-chain-transaction", "Supply-chain verdict": "supply-chain-verdict",
    "Supply-chain score": "supply-chain-score", "Sales event": "sales-event", "Calendar entry": "demand-calendar-entry",
    "Demand forecast": "demand-forecast",
}

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII)
FORMATS = FormatChecker()  # every format jsonschema can check here, and RFC 3339 date-time


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    return bool(_RFC3339.match(instance)) and bool(datetime.fromisoformat(instance.upper().replace("Z", "+00:00")))


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((JSON_DIR / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FORMATS)


def errors(name: str, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator(name).iter_errors(instance)]


def schema_accepts(model: type, value: Any) -> bool:
    """What a producer validating the message against the published schema would conclude."""
    name = NAME_OF[model]
    return validator(f"{name}-batch" if isinstance(value, list) else name).is_valid(value)


def worker_accepts(model: type, value: Any, now: datetime = NOW, raw: Optional[bytes] = None) -> bool:
    """The worker takes every event of the message (`raw`, or `value` as JSON) and dead-letters
    nothing."""
    decoded = decode_message(raw or json.dumps(value).encode(), model, Limits(), now=now)
    return bool(decoded.events) and not decoded.failures


# --- what the schemas cannot say, or say more strictly than the worker reads ------------------------
@dataclass(frozen=True)
class KnownException:
    model: type
    value: dict[str, Any]
    decoded: bool  # whether decoding takes it
    valid: bool  # whether the schema does
    why: str
    raw: Optional[bytes] = None  # the bytes the worker gets, where `value` cannot be written as JSON by Python


def _with(model: type, **fields: Any) -> dict[str, Any]:
    return {**VALID[model], **fields}


def _deep(depth: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(depth - 1):
        nested = [nested]
    return nested


_DEEP = _with(SensorReading, pad=_deep(5000))

KNOWN_EXCEPTIONS = [
    # Rejections JSON Schema cannot express: the schema accepts what the worker dead-letters.
    KnownException(SensorReading, _with(SensorReading, ts="2026-06-09T00:00:00Z"), False, True,
                   "timestamp_in_future: `ts` more than MAX_FUTURE_SKEW_S ahead of the worker's clock"),
    KnownException(SensorReading, _with(SensorReading, ts="2000-01-01T00:30:00+01:00"), False, True,
                   "instant before 2000: written as 2000-01-01 with a positive offset (the pattern reads the "
                   "written year, not the instant)"),
    KnownException(SensorReading, _with(SensorReading, machine_id="\ud800"), False, True,
                   "lone surrogate: a JSON \\ud800 escape in a checked string is no Unicode text to pydantic; "
                   "JSON Schema sees a one-character string"),
    KnownException(SensorReading, _with(SensorReading, pad="p" * 1_000_001), False, True,
                   "oversized_message: MAX_MESSAGE_BYTES is about the bytes, not the JSON value"),
    KnownException(SensorReading, _DEEP, False, True,
                   "parser limits: nesting beyond the parser's stack (nesting_too_deep), here in an ignored field",
                   raw=json.dumps(VALID[SensorReading])[:-1].encode() + b', "pad": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    KnownException(SensorReading, _with(SensorReading, pad=10**5000), False, True,
                   "parser limits: an integer of more than 4,300 digits, which Python will not parse (not_json)",
                   raw=json.dumps(VALID[SensorReading])[:-1].encode() + b', "pad": 1' + b"0" * 5000 + b"}"),
    KnownException(SalesEvent, _with(SalesEvent, market="unknown-market-zz"), True, True,
                   "unknown_market, sales_event_too_old: decodable; the demand scorer's state dead-letters them "
                   "(tests/unit/test_demand_agent.py)"),
]


@pytest.mark.parametrize("case", KNOWN_EXCEPTIONS, ids=lambda c: c.why.split(":")[0])
def test_each_known_exception_is_still_one(case: KnownException) -> None:
    """When the worker changes, an exception that no longer holds must leave the list."""
    assert worker_accepts(case.model, case.value, raw=case.raw) is case.decoded
    assert schema_accepts(case.model, case.value) is case.valid


# --- the README's examples ------------------------------------------------------------------------
def readme_examples() -> list[tuple[str, bool, str]]:
    """(label, abridged, JSON text) of each message example: a ```json block under a paragraph
    "Label ...:", or an inline "Label (...): `{...}`"."""
    text = README.read_text()
    found = []
    for match in re.finditer(r"(?:^|\n\n)([^\n`][^\n]*(?:\n[^\n]+)*?)\n\n```json\n(.*?)\n```", text, re.S):
        label = re.split(r"[(:]", match.group(1), maxsplit=1)[0].strip()
        found.append((label, "abridged" in match.group(1).split(":")[0], match.group(2)))
    for match in re.finditer(r"^([A-Z][\w -]*?)( \([^)]*\))?: `(\{.*?\})`", text, re.M):
        found.append((match.group(1), "abridged" in (match.group(2) or ""), match.group(3)))
    return found


README_EXAMPLES = readme_examples()


def test_the_readme_shows_message_examples() -> None:
    labels = {label for label, _, _ in README_EXAMPLES}
    assert {"Sensor reading", "Alert", "Maintenance outcome", "Dead letter"} <= labels


@pytest.mark.parametrize("label, abridged, text", README_EXAMPLES, ids=[label for label, _, _ in README_EXAMPLES])
def test_readme_examples_are_valid_messages(label: str, abridged: bool, text: str) -> None:
    assert label in SCHEMA_OF_README_LABEL, f"README example {label!r}: which schema? (SCHEMA_OF_README_LABEL)"
    if abridged:
        pytest.skip("an abridged example leaves fields out on purpose")
    message = json.loads(text)
    name = SCHEMA_OF_README_LABEL[label]
    assert errors(name, message) == []
    model = GATEWAY_BATCHES.get(name) or MESSAGES[name]
    if issubclass(model, InputEvent):
        assert worker_accepts(model, message, now=datetime.now(timezone.utc)), "the worker must take it too"


# --- the simulators' messages ---------------------------------------------------------------------
def _simulated() -> list[tuple[str, str, Any]]:
    """(stream, schema name, message): live events of each stream, its history files' events, and
    gateway arrays of them (the simulators send single events; the load tests send arrays)."""
    out = []
    for stream_name, stream in STREAMS.items():
        events = [(SCHEMA_OF_TOPIC[topic], e.value) for topic, e in islice(stream.live(Settings(), 5, 4), 300)]
        for file, history in stream.history(5, {"supply-chain": 3}.get(stream_name, 2), 1).items():
            events += [(SCHEMA_OF_HISTORY_FILE[file], e) for e in history[:: max(1, len(history) // 200)]]
        by_schema: dict[str, list[Any]] = {}
        for name, event in events:
            by_schema.setdefault(name, []).append(event)
        out += [(stream_name, name, event) for name, event in events]
        out += [(stream_name, f"{name}-batch", batch[:50]) for name, batch in by_schema.items()]
    return out


SIMULATED = _simulated()


def test_simulated_messages_cover_every_input_and_its_gateway_form() -> None:
    assert {name for _, name, _ in SIMULATED} == set(GATEWAY_BATCHES) | {n.removesuffix("-batch") for n in GATEWAY_BATCHES}


@pytest.mark.parametrize("stream", list(STREAMS))
def test_simulated_messages_are_valid_and_taken_by_the_worker(stream: str) -> None:
    now = datetime.now(timezone.utc)  # live streams start a lookback before the real now
    bad = []
    for _, name, message in (s for s in SIMULATED if s[0] == stream):
        problems = errors(name, message)
        model = GATEWAY_BATCHES.get(name) or MESSAGES[name]
        if problems or not worker_accepts(model, message, now=now):
            bad.append((name, problems[:3], json.dumps(message)[:200]))
    assert bad == []


# --- hostile and edge forms: the worker and the schema agree ---------------------------------------
HOSTILE_VALUES: list[Any] = [None, "", "x", "x" * 65, "x" * 129, 0, -1, 1.5, 1e308, 10**400, True, False, "1", "yes",
                             [], {}, [1], {"a": 1}, "2026-05-01", "2026-05-01T00:00:00Z", 1777593600, 1777593600000]


def _field_cases() -> list[tuple[type, str, Any]]:
    """Every field of every input set to each hostile value, or removed (`...`)."""
    return [(model, field, value) for model in GATEWAY_BATCHES.values() for field in model.model_fields
            for value in [*HOSTILE_VALUES, ...]]


@pytest.mark.parametrize("model", list(GATEWAY_BATCHES.values()), ids=lambda m: m.__name__)
def test_a_changed_or_missing_field_is_refused_by_both_or_neither(model: type) -> None:
    disagree = []
    for _, field, value in (c for c in _field_cases() if c[0] is model):
        message = dict(VALID[model])
        if value is ...:
            message.pop(field, None)
        else:
            message[field] = value
        worker, schema = worker_accepts(model, message), schema_accepts(model, message)
        if worker != schema:
            disagree.append((field, repr(value)[:40], f"worker {worker}, schema {schema}"))
    assert disagree == []


def _reading(**fields: Any) -> dict[str, Any]:
    return _with(SensorReading, **fields)


SHAPES: list[tuple[str, Any]] = [
    ("a number", 42), ("a string", "reading"), ("null", None), ("true", True), ("an empty array", []),
    ("an array of arrays", [[_reading()]]), ("an array with a bad element", [_reading(), _reading(sensors={})]),
    ("an array with a null", [_reading(), None]), ("a gateway array", [_reading(event_id=f"e{i}") for i in range(3)]),
    ("schema_version 1.0", _reading(schema_version=1.0)), ("schema_version 2", _reading(schema_version=2)),
    ("schema_version true", _reading(schema_version=True)), ("schema_version null", _reading(schema_version=None)),
    ("schema_version \"1\"", _reading(schema_version="1")), ("schema_version []", _reading(schema_version=[])),
    ("schema_version {}", _reading(schema_version={})), ("extra fields", _reading(firmware={"v": [1, None]})),
    ("no sensors", _reading(sensors={})), ("257 sensors", _reading(sensors={f"s{i}": 1.0 for i in range(257)})),
    ("256 sensors", _reading(sensors={f"s{i}": 1.0 for i in range(256)})), ("a null sensor", _reading(sensors={"a": None})),
    ("a sensor name of 65", _reading(sensors={"s" * 65: 1.0})), ("an empty sensor name", _reading(sensors={"": 1.0})),
    ("a sensor as text", _reading(sensors={"a": "2.5"})), ("a sensor as boolean", _reading(sensors={"a": True})),
    ("a sensor of 1e308", _reading(sensors={"a": -1e308})), ("a sensor beyond a double", _reading(sensors={"a": 2 * 10**308})),
    ("an infinite sensor (1e400 parsed)", _reading(sensors={"a": float("inf")})),
    ("cycle 5.0", _reading(cycle=5.0)), ("cycle 2**53", _reading(cycle=2**53)), ("cycle 2**53 + 1", _reading(cycle=2**53 + 1)),
    ("cycle 5.5", _reading(cycle=5.5)),
]


@pytest.mark.parametrize("what, message", SHAPES, ids=[s[0] for s in SHAPES])
def test_message_shapes(what: str, message: Any) -> None:
    assert worker_accepts(SensorReading, message) == schema_accepts(SensorReading, message)


def test_a_gateway_array_of_more_events_than_the_limit_is_refused_by_both() -> None:
    assert MAX_GATEWAY_EVENTS == Limits().max_events == Settings().max_events_per_message
    assert SUPPORTED_SCHEMA_VERSIONS == {1}
    minimal = {"event_id": "e", "machine_id": "m", "ts": 1777593600000, "sensors": {"a": 1}}
    for n, accepted in ((MAX_GATEWAY_EVENTS, True), (MAX_GATEWAY_EVENTS + 1, False)):
        message = [minimal] * n
        assert worker_accepts(SensorReading, message) is accepted
        assert validator("sensor-reading-batch").is_valid(message) is accepted


def test_messages_that_are_not_json_are_refused_before_any_schema() -> None:
    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    def strict_json(raw: bytes) -> Any:  # what a JSON Schema validator's parser would do first
        return json.loads(raw.decode("utf-8"), parse_constant=refuse)

    for raw in [b"", b"\xff\xfe{}", b"\xef\xbb\xbf" + json.dumps(_reading()).encode(), b'{"a": NaN}',
                json.dumps(_reading())[:-3].encode()]:
        assert decode_message(raw, SensorReading, Limits(), now=NOW).failures
        with pytest.raises(ValueError):
            strict_json(raw)


# --- timestamps --------------------------------------------------------------------------------------
def _ts(ts: Any) -> tuple[bool, bool]:
    message = _reading(ts=ts)
    return worker_accepts(SensorReading, message), schema_accepts(SensorReading, message)


DOCUMENTED_TS = [f"2026-05-01{sep}10:20{sec}{zone}" for sep in "Tt " for sec in ("", ":30", ":30.5", ":30,123456789")
                 for zone in ("", "Z", "+01:00", "-0530", "+03", "-00:00")] + ["2026-05-01", "2024-02-29T00:00"]


@pytest.mark.parametrize("ts", DOCUMENTED_TS)
def test_every_documented_iso_form_is_read_by_both(ts: str) -> None:
    assert _ts(ts) == (True, True)


@pytest.mark.parametrize("ts, taken", [
    (946684800000, True), (946684799999, False), (1777593600000.5, True), (1777593600, False), (-1, False), (0, False),
    (True, False), (4102444800000, False), ("2026-02-29", False), ("2026-04-31T00:00", False), ("2026-05-01T24:00", False),
    ("2026-05-01T23:59:60", False), ("2026-05-01T10:00z", False), ("2026-05-01T10:00:00Z\n", False),
    ("2026-05-01T10:00:00 ", False), ("1999-12-31T23:59:59Z", False), ("2026-05-01T10:00+24:00", False),
    ("2026-05-01T10:0", False), ("2026-05-01T", False), ("2026-05", False), ("２０２６-05-01", False),
    ("2026-05-01T10:00:00." + "1" * 50, False), ("", False), ("yesterday", False),
])
def test_timestamp_edges(ts: Any, taken: bool) -> None:
    assert _ts(ts) == (taken, taken)


def _known_ts_exception(ts: str) -> bool:
    """KNOWN_EXCEPTIONS: the 2000 edge, and the future (from a day short of the skew: offsets)."""
    return ts.startswith("2000-01-01") or ts[:10] >= (NOW + timedelta(days=6)).date().isoformat()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(TS_PATTERN))
def test_whatever_the_pattern_matches_the_worker_reads(ts: str) -> None:
    if len(ts) <= 64 and not _known_ts_exception(ts):  # longer: the schema's maxLength refuses it
        assert _ts(ts) == (True, True)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(DOCUMENTED_TS), st.lists(st.tuples(st.integers(0, 30), st.sampled_from("0123456789-:TtZz+., W")),
                                                  min_size=1, max_size=3))
def test_a_mangled_timestamp_the_schema_accepts_the_worker_reads(ts: str, edits: list[tuple[int, str]]) -> None:
    for position, char in edits:
        ts = ts[:position] + char + ts[position + 1:]
    worker, schema = _ts(ts)
    assert worker or not schema or _known_ts_exception(ts), ts
