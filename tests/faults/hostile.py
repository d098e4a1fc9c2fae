"""Hostile input for the end-to-end fault tests (tests/faults/test_hostile_input.py).

A `HostileLoad` makes `Case`s: one Kafka message each (topic, key, value) and what must come
back for it. Two sources, both deterministic:

* a seeded generator of named kinds, each with its expected answer worked out by hand (a
  truncated event is `not_json`, a lone NaN literal `non_finite_number`, a 900 KB event id
  `invalid_fields`, ...), interleaved with valid events of bounded entities;
* the hypothesis strategies of tests/unit/test_fuzz_decoding.py (fields changed, added or
  removed, arbitrary bytes), drawn with a fixed seed; their expected answer is what
  `decode_message` says for them in this process (so the worker must answer each exactly as
  decoding would, through Kafka and back).

What an answer is:
* a dead letter naming the message's topic, partition and offset (and `item_index` for one
  element of a gateway array) with one specific error code: `letters`;
* for an event the stream scores (sensor readings, supply-chain transactions): a prediction or
  score naming its event id: `scored`;
* a valid event of the other inputs (outcomes, verdicts, calendar, sales) is answered by the
  absence of a dead letter; for sales the demand scorer may still reject a decodable event
  (`unknown_market`, `sales_event_too_old`): `maybe` says which elements may get which codes.

`verify` matches what a reader collected against the cases.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Optional

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from schemas import CalendarEntry, MaintenanceOutcome, SalesEvent, SensorReading, SupplyChainTransaction, SupplyChainVerdict
from stream_app.decoding import ErrorCode, Limits, decode_message
from stream_app.scoring.demand import TOO_OLD, UNKNOWN_MARKET
from stream_app.settings import Topics
from tests.unit.test_fuzz_decoding import INPUTS, VALID, hostile_values

T = Topics()
MODEL_OF: dict[str, type] = {
    T.sensor_readings: SensorReading,
    T.maintenance_outcomes: MaintenanceOutcome,
    T.supply_chain_transactions: SupplyChainTransaction,
    T.supply_chain_verdicts: SupplyChainVerdict,
    T.sales_events: SalesEvent,
    T.demand_calendar: CalendarEntry,
}
TOPIC_OF = {model: topic for topic, model in MODEL_OF.items()}
INPUT_TOPICS = list(MODEL_OF)
# Input topic -> the topic where each of its valid events is answered by event id.
SCORED_ON = {T.sensor_readings: T.maintenance_predictions, T.supply_chain_transactions: T.supply_chain_scores}
OUTPUT_TOPICS = [*SCORED_ON.values(), T.dead_letters]
DEMAND_REJECTIONS = frozenset({UNKNOWN_MARKET, TOO_OLD})
# Every code a dead letter may carry for bad input; "scoring_failed" is not one (a model fault).
SPECIFIC_CODES = frozenset(v for k, v in vars(ErrorCode).items() if k.isupper()) | DEMAND_REJECTIONS

MARKETS = ("DE", "FR")  # sent on demand-calendar before any sale: the only known markets
UNKNOWN_MARKET_NAME = "unknown-market-zz"
HEALTHY = {"vibration_rms": (2.0, 0.3), "vibration_hf": (0.3, 0.05), "bearing_temp": (60.0, 3.0), "motor_temp": (70.0, 3.0),
           "oil_pressure": (3.5, 0.2), "motor_current": (40.0, 2.0), "rpm": (1480.0, 20.0), "ambient_temp": (22.0, 1.0)}
NODE_TYPES = ("manufacturer", "distributor", "wholesaler", "pharmacy", "hospital")
HUGE = 900_000  # bytes of one huge string: under the 1 MB message limit
OVERSIZED = 1_050_000  # over the worker's MAX_MESSAGE_BYTES (1,000,000 by default)


@dataclass
class Case:
    topic: str
    kind: str
    value: Optional[bytes]
    key: Optional[bytes] = None
    # item_index (None: the whole message) -> the code its dead letter must carry
    letters: dict[Optional[int], str] = field(default_factory=dict)
    # item_index -> codes a dead letter for it may carry (it may also get none)
    maybe: dict[Optional[int], frozenset[str]] = field(default_factory=dict)
    scored: list[str] = field(default_factory=list)  # event ids answered on SCORED_ON[topic]
    partition: Optional[int] = None
    offset: Optional[int] = None

    @property
    def size(self) -> int:
        return len(self.value or b"") + len(self.key or b"")


# --- hypothesis examples, drawn with a fixed seed ------------------------------------------------
def draw(strategy: st.SearchStrategy[Any], n: int, fixed_seed: int) -> list[Any]:
    """Up to n examples of `strategy`, the same ones on every run (no database, fixed seed)."""
    out: list[Any] = []

    @seed(fixed_seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


def changed_fields_strategy() -> st.SearchStrategy[tuple[type, bytes]]:
    """The unit fuzz test's valid events with fields changed, added or removed, as bytes."""

    def build(args: tuple[type, dict, list, object]) -> tuple[type, bytes]:
        model, changes, removed, version = args
        event = {**VALID[model], **changes}
        for key in removed:
            event.pop(key, None)
        if version is not None:
            event["schema_version"] = version
        return model, json.dumps(event).encode()

    return st.tuples(
        st.sampled_from(INPUTS),
        st.dictionaries(st.text(max_size=12), hostile_values, max_size=4),
        st.lists(st.text(max_size=12), max_size=3),
        st.sampled_from([None, 0, 1, 2, -1, "1", True]),
    ).map(build)


def any_bytes_strategy() -> st.SearchStrategy[tuple[type, bytes]]:
    return st.tuples(st.sampled_from(INPUTS), st.binary(max_size=3000))


def oracle_case(model: type, raw: bytes, kind: str, now: datetime, skipped: list[str]) -> Optional[Case]:
    """The answer `decode_message` gives, as a case. None, with the reason in `skipped`, when
    decoding raises or yields nothing at all: both are bugs the test then reports."""
    topic = TOPIC_OF[model]
    try:
        decoded = decode_message(raw, model, Limits(), now=now)
    except Exception as exc:  # decode_message promises never to raise
        skipped.append(f"decode_message raised {type(exc).__name__}: {exc} for {raw[:80]!r}")
        return None
    if not decoded.events and not decoded.failures:
        skipped.append(f"decoded to nothing (no event, no failure): {raw[:80]!r}")
        return None
    case = Case(topic, kind, raw, letters={f.item_index: f.code for f in decoded.failures})
    if topic in SCORED_ON:
        case.scored = [e.event_id for e in decoded.events]
    if topic == T.sales_events and decoded.events:
        # Decodable sales with a made-up market or an old day may be rejected by the scorer.
        case.maybe = {None: DEMAND_REJECTIONS} if not raw.lstrip().startswith(b"[") else {
            i: DEMAND_REJECTIONS for i in range(len(json.loads(raw)))}
    return case


# --- the seeded generator ------------------------------------------------------------------------
def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _dumps(obj: Any, **marks: str) -> bytes:
    """JSON text, with each string "@@name@@" replaced by the raw JSON text marks[name]
    (literals json.dumps will not write: NaN in a field, 5000-digit numbers, ...)."""
    text = json.dumps(obj)
    for name, literal in marks.items():
        text = text.replace(json.dumps(f"@@{name}@@"), literal)
    return text.encode()


REQUIRED = {topic: [n for n, f in model.model_fields.items() if f.is_required()] for topic, model in MODEL_OF.items()}
# A field of each input whose value must be a string (for wrong types and huge strings).
STRING_FIELD = {T.sensor_readings: "machine_id", T.maintenance_outcomes: "machine_id", T.supply_chain_transactions: "lot_id",
                T.supply_chain_verdicts: "shipment_id", T.sales_events: "sku", T.demand_calendar: "market"}


class HostileLoad:
    """Deterministic cases (seeded), valid events over bounded sets of machines, SKUs, lots."""

    # kind -> weight among the mixed cases of one phase
    WEIGHTS: dict[str, int] = {
        "valid": 30, "valid_extra_fields": 4, "valid_duplicate": 4, "valid_out_of_order": 4, "valid_extreme_numbers": 2,
        "gateway_mixed": 8, "truncated": 5, "not_utf8": 3, "binary_garbage": 3, "empty": 2, "null_value": 2,
        "nan_literal": 2, "infinity_literal": 1, "huge_float": 2, "huge_int": 2, "huge_digits": 1, "wrong_type": 4,
        "missing_field": 4, "null_field": 2, "future_schema_version": 2, "past_schema_version": 2,
        "string_schema_version": 1, "far_future_ts": 3, "ancient_ts": 2, "epoch_seconds_ts": 2, "not_an_object": 3,
        "utf8_bom": 1, "lone_surrogate": 1, "deep_nesting": 2, "deep_nesting_in_field": 1, "too_many_events": 1,
        "binary_key": 2, "unknown_market": 3,
    }
    # kinds of about 1 MB: a fixed number per topic and phase, not drawn
    LARGE = ("huge_string_field", "valid_huge_extra_field", "oversized")

    def __init__(self, fixed_seed: int, now: Optional[datetime] = None) -> None:
        self.rng = random.Random(fixed_seed)
        self.seed = fixed_seed
        self.now = now or datetime.now(timezone.utc)
        self.valid_sent: dict[str, list[Case]] = {t: [] for t in INPUT_TOPICS}
        self.skipped: list[str] = []  # hypothesis examples the decoder failed on (bugs), not sent
        self.made: dict[str, Callable[[str, str], Case]] = {
            name: getattr(self, f"_{name}") for name in [*self.WEIGHTS, *self.LARGE]}

    # --- valid events ----------------------------------------------------------------------------
    def _ts(self, max_age_h: float = 36.0, min_age_h: float = 0.0) -> Any:
        ts = self.now - timedelta(hours=self.rng.uniform(min_age_h, max_age_h))
        return _iso(ts) if self.rng.random() < 0.7 else int(ts.timestamp() * 1000)

    def event(self, topic: str, event_id: str, **ts_range: float) -> tuple[dict[str, Any], bytes]:
        """A valid event of `topic` and its Kafka key."""
        r = self.rng
        ts = self._ts(**ts_range)
        if topic == T.sensor_readings:
            machine = f"m-{r.randrange(40):03d}"
            sensors = {k: round(r.gauss(mu, sd), 4) for k, (mu, sd) in HEALTHY.items()}
            return {"event_id": event_id, "machine_id": machine, "ts": ts, "machine_type": "pump",
                    "operating_mode": "normal", "sensors": sensors}, machine.encode()
        if topic == T.maintenance_outcomes:
            machine = f"m-{r.randrange(40):03d}"
            return {"event_id": event_id, "machine_id": machine, "ts": ts,
                    "outcome": r.choice(["failure", "repair"])}, machine.encode()
        if topic == T.supply_chain_transactions:
            shipment = f"s-{event_id}"
            return {"event_id": event_id, "ts": ts, "shipment_id": shipment, "product_id": f"p-{r.randrange(8)}",
                    "lot_id": f"l-{r.randrange(30)}", "source_id": f"n-{r.randrange(20)}", "source_type": r.choice(NODE_TYPES),
                    "target_id": f"n-{r.randrange(20)}", "target_type": r.choice(NODE_TYPES),
                    "quantity": r.randint(1, 500), "unit_price": round(r.uniform(1, 50), 2)}, shipment.encode()
        if topic == T.supply_chain_verdicts:
            shipment = f"s-{r.randrange(1000)}"
            return {"event_id": event_id, "ts": ts, "shipment_id": shipment,
                    "verdict": r.choice(["confirmed", "cleared"])}, shipment.encode()
        if topic == T.sales_events:
            sku, market = f"sku-{r.randrange(20)}", r.choice(MARKETS)
            return {"event_id": event_id, "ts": ts, "sku": sku, "market": market, "units": r.randint(0, 20),
                    "unit_price": round(r.uniform(1, 30), 2), "promo": r.random() < 0.1}, f"{sku}/{market}".encode()
        if topic == T.demand_calendar:
            start = (self.now + timedelta(days=r.randint(-10, 30))).date()
            return {"event_id": event_id, "ts": ts, "kind": r.choice(["holiday", "campaign", "launch", "media"]),
                    "market": r.choice(MARKETS), "start": start.isoformat(),
                    "end": (start + timedelta(days=r.randint(0, 5))).isoformat()}, event_id.encode()
        raise ValueError(topic)

    def _valid_case(self, topic: str, eid: str, kind: str, obj: dict[str, Any], key: Optional[bytes], **marks: str) -> Case:
        case = Case(topic, kind, _dumps(obj, **marks), key, scored=[eid] if topic in SCORED_ON else [])
        self.valid_sent[topic].append(case)
        return case

    def _bad(self, topic: str, kind: str, value: Optional[bytes], code: str, key: Optional[bytes] = None) -> Case:
        return Case(topic, kind, value, key, letters={None: code})

    # --- kinds: (topic, event id) -> case ----------------------------------------------------------
    def _valid(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        return self._valid_case(topic, eid, "valid", obj, key)

    def _valid_extra_fields(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj.update({"unexpected": {"nested": [1, {"a": None}], "text": "x" * 2000}, "schema_version": 1, "zz_extra": True})
        return self._valid_case(topic, eid, "valid_extra_fields", obj, key)

    def _valid_duplicate(self, topic: str, eid: str) -> Case:
        """The same message again (a producer retry): answered again, never dead-lettered."""
        if not self.valid_sent[topic]:
            return self._valid(topic, eid)
        first = self.rng.choice(self.valid_sent[topic])
        return Case(topic, "valid_duplicate", first.value, first.key, scored=list(first.scored))

    def _valid_out_of_order(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid, min_age_h=40.0, max_age_h=80.0)  # older than the valid ones
        return self._valid_case(topic, eid, "valid_out_of_order", obj, key)

    def _valid_extreme_numbers(self, topic: str, eid: str) -> Case:
        """Finite but absurd values are valid input (the scorers clip or judge them)."""
        obj, key = self.event(topic, eid)
        if topic == T.sensor_readings:
            obj["sensors"] = {"vibration_rms": 1e300, "bearing_temp": -1e300, "rpm": 0.0, "made_up_sensor": 5e-324}
        elif topic == T.supply_chain_transactions:
            obj.update(quantity=1e300, unit_price=0.0)
        elif topic == T.sales_events:
            obj.update(units=1e15, unit_price=1e15)
        elif topic == T.demand_calendar:
            obj.update(intensity=1e300, start="0001-01-01", end="9999-12-31")
        return self._valid_case(topic, eid, "valid_extreme_numbers", obj, key)

    def _valid_huge_extra_field(self, topic: str, eid: str) -> Case:
        """Unknown fields are ignored however large: a 900 KB one is still a valid event."""
        obj, key = self.event(topic, eid)
        obj["attachment"] = "a" * HUGE
        return self._valid_case(topic, eid, "valid_huge_extra_field", obj, key)

    def _binary_key(self, topic: str, eid: str) -> Case:
        """A valid event under a key that is not text (keys only partition)."""
        obj, _ = self.event(topic, eid)
        return self._valid_case(topic, eid, "binary_key", obj, bytes(self.rng.randrange(256) for _ in range(16)) + b"\xff")

    def _gateway_mixed(self, topic: str, eid: str) -> Case:
        """A gateway's array: good elements are scored, each bad one is its own dead letter."""
        r = self.rng
        items: list[Any] = []
        case = Case(topic, "gateway_mixed", None)
        for i in range(r.randint(2, 8)):
            obj, key = self.event(topic, f"{eid}.{i}")
            bad = r.random() < 0.4
            if not bad:
                items.append(obj)
                if topic in SCORED_ON:
                    case.scored.append(obj["event_id"])
                continue
            how = r.choice(["missing", "schema", "not_object", "future", "wrong_type"]
                           + (["unknown_market"] if topic == T.sales_events else []))
            if how == "missing":
                obj.pop(r.choice(REQUIRED[topic]))
                code = ErrorCode.INVALID
            elif how == "schema":
                obj["schema_version"] = r.choice([2, 0, 99])
                code = ErrorCode.SCHEMA_VERSION
            elif how == "not_object":
                obj = r.choice([42, "text", None, [1, 2], True])
                code = ErrorCode.NOT_OBJECT
            elif how == "future":
                obj["ts"] = _iso(self.now + timedelta(days=r.randint(30, 3000)))
                code = ErrorCode.FUTURE_TS
            elif how == "wrong_type":
                obj["event_id"] = r.choice([12345, 1.5, ["e"], {"id": 1}, True])
                code = ErrorCode.INVALID
            else:
                obj["market"] = UNKNOWN_MARKET_NAME
                code = UNKNOWN_MARKET
            items.append(obj)
            case.letters[i] = code
        case.value = json.dumps(items).encode()
        case.key = f"gateway-{eid}".encode()
        return case

    def _truncated(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        raw = json.dumps(obj).encode()  # ASCII: a cut never splits a character
        return self._bad(topic, "truncated", raw[: self.rng.randrange(1, len(raw) - 1)], ErrorCode.NOT_JSON, key)

    def _not_utf8(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        raw = json.dumps(obj).encode()
        # Latin-1 text (München) in a string value: JSON in every other respect.
        raw = raw.replace(f'"{eid}"'.encode(), f'"{eid}-München"'.encode("latin-1"), 1)
        return self._bad(topic, "not_utf8", raw, ErrorCode.NOT_UTF8, key)

    def _binary_garbage(self, topic: str, eid: str) -> Case:
        # A continuation byte first: never valid UTF-8.
        raw = bytes([self.rng.randrange(0x80, 0xC0)]) + self.rng.randbytes(self.rng.randrange(0, 2000))
        return self._bad(topic, "binary_garbage", raw, ErrorCode.NOT_UTF8)

    def _empty(self, topic: str, eid: str) -> Case:
        return self._bad(topic, "empty", b"", ErrorCode.EMPTY, eid.encode())

    def _null_value(self, topic: str, eid: str) -> Case:
        """A tombstone (null value)."""
        return self._bad(topic, "null_value", None, ErrorCode.EMPTY, eid.encode())

    def _nan_literal(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj["ts"] = "@@nan@@"
        return self._bad(topic, "nan_literal", _dumps(obj, nan="NaN"), ErrorCode.NON_FINITE, key)

    def _infinity_literal(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj["extra_number"] = "@@inf@@"  # even in an unknown field
        return self._bad(topic, "infinity_literal", _dumps(obj, inf=self.rng.choice(["Infinity", "-Infinity"])),
                         ErrorCode.NON_FINITE, key)

    def _huge_float(self, topic: str, eid: str) -> Case:
        """1e999 parses as infinity without a literal: the field validators reject it."""
        obj, key = self.event(topic, eid)
        obj["ts"] = "@@big@@"
        return self._bad(topic, "huge_float", _dumps(obj, big="1e999"), ErrorCode.INVALID, key)

    def _huge_int(self, topic: str, eid: str) -> Case:
        """A 400-digit integer where a float is expected (no float field: the schema version)."""
        obj, key = self.event(topic, eid)
        name = {T.sensor_readings: "sensors", T.supply_chain_transactions: "quantity", T.sales_events: "units",
                T.demand_calendar: "intensity"}.get(topic, "schema_version")
        if name == "sensors":
            obj["sensors"]["vibration_rms"] = "@@big@@"
        else:
            obj[name] = "@@big@@"
        code = ErrorCode.SCHEMA_VERSION if name == "schema_version" else ErrorCode.INVALID
        return self._bad(topic, "huge_int", _dumps(obj, big="9" * 400), code, key)

    def _huge_digits(self, topic: str, eid: str) -> Case:
        """A 5000-digit integer is valid JSON, but Python refuses to convert more than 4300
        digits while parsing: the message is reported as not_json (see the report: arguably
        a misleading code, the number is the problem)."""
        obj, key = self.event(topic, eid)
        obj["ts"] = "@@big@@"
        return self._bad(topic, "huge_digits", _dumps(obj, big="9" * 5000), ErrorCode.NOT_JSON, key)

    def _wrong_type(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        name = self.rng.choice(["event_id", "ts", STRING_FIELD[topic]])
        obj[name] = self.rng.choice([True, [1, 2], {"a": 1}]) if name != "event_id" else self.rng.choice([7, 2.5, False])
        return self._bad(topic, "wrong_type", json.dumps(obj).encode(), ErrorCode.INVALID, key)

    def _missing_field(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj.pop(self.rng.choice(REQUIRED[topic]))
        return self._bad(topic, "missing_field", json.dumps(obj).encode(), ErrorCode.INVALID, key)

    def _null_field(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj[self.rng.choice(REQUIRED[topic])] = None
        return self._bad(topic, "null_field", json.dumps(obj).encode(), ErrorCode.INVALID, key)

    def _schema(self, topic: str, eid: str, kind: str, version: Any) -> Case:
        obj, key = self.event(topic, eid)
        obj["schema_version"] = version
        return self._bad(topic, kind, json.dumps(obj).encode(), ErrorCode.SCHEMA_VERSION, key)

    def _future_schema_version(self, topic: str, eid: str) -> Case:
        return self._schema(topic, eid, "future_schema_version", self.rng.choice([2, 3, 10**6]))

    def _past_schema_version(self, topic: str, eid: str) -> Case:
        return self._schema(topic, eid, "past_schema_version", self.rng.choice([0, -1]))

    def _string_schema_version(self, topic: str, eid: str) -> Case:
        return self._schema(topic, eid, "string_schema_version", self.rng.choice(["1", True, None, 1.5]))

    def _far_future_ts(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj["ts"] = _iso(self.now + timedelta(days=self.rng.randint(30, 25_000)))  # before 2100
        return self._bad(topic, "far_future_ts", json.dumps(obj).encode(), ErrorCode.FUTURE_TS, key)

    def _ancient_ts(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj["ts"] = self.rng.choice(["1970-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2150-01-01T00:00:00Z", -1, 0])
        return self._bad(topic, "ancient_ts", json.dumps(obj).encode(), ErrorCode.INVALID, key)

    def _epoch_seconds_ts(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj["ts"] = int(self.now.timestamp())  # seconds where milliseconds are expected
        return self._bad(topic, "epoch_seconds_ts", json.dumps(obj).encode(), ErrorCode.INVALID, key)

    def _not_an_object(self, topic: str, eid: str) -> Case:
        raw = self.rng.choice([b"42", b'"reading"', b"null", b"true", b"-0.5e3", b'  "x"  '])
        return self._bad(topic, "not_an_object", raw, ErrorCode.NOT_OBJECT)

    def _utf8_bom(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        return self._bad(topic, "utf8_bom", b"\xef\xbb\xbf" + json.dumps(obj).encode(), ErrorCode.NOT_JSON, key)

    def _lone_surrogate(self, topic: str, eid: str) -> Case:
        """Valid UTF-8 bytes and valid JSON, but the string is no Unicode text."""
        obj, key = self.event(topic, eid)
        obj["event_id"] = "@@sur@@"
        return self._bad(topic, "lone_surrogate", _dumps(obj, sur='"\\ud800-x"'), ErrorCode.INVALID, key)

    def _deep_nesting(self, topic: str, eid: str) -> Case:
        depth = 10_000
        opener, closer = self.rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        return self._bad(topic, "deep_nesting", opener * depth + b"1" + closer * depth, ErrorCode.TOO_DEEP)

    def _deep_nesting_in_field(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj["extra"] = "@@deep@@"
        return self._bad(topic, "deep_nesting_in_field", _dumps(obj, deep="[" * 10_000 + "]" * 10_000), ErrorCode.TOO_DEEP, key)

    def _too_many_events(self, topic: str, eid: str) -> Case:
        """An array of 10,001 elements: over MAX_EVENTS_PER_MESSAGE (10,000), one dead letter."""
        return self._bad(topic, "too_many_events", b"[" + b",".join([b"{}"] * 10_001) + b"]", ErrorCode.TOO_MANY)

    def _unknown_market(self, topic: str, eid: str) -> Case:
        if topic != T.sales_events:
            return self._valid(topic, eid)
        obj, key = self.event(topic, eid)
        obj["market"] = UNKNOWN_MARKET_NAME
        return self._bad(topic, "unknown_market", json.dumps(obj).encode(), UNKNOWN_MARKET, key)

    def _huge_string_field(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj[self.rng.choice(["event_id", STRING_FIELD[topic]])] = "h" * HUGE
        return self._bad(topic, "huge_string_field", json.dumps(obj).encode(), ErrorCode.INVALID, key)

    def _oversized(self, topic: str, eid: str) -> Case:
        obj, key = self.event(topic, eid)
        obj["padding"] = "p" * OVERSIZED
        return self._bad(topic, "oversized", json.dumps(obj).encode(), ErrorCode.OVERSIZED, key)

    # --- phases ------------------------------------------------------------------------------------
    def calendar(self, n: int = 12) -> list[Case]:
        """Valid calendar entries naming every market the valid sales use."""
        cases = []
        for i in range(n):
            obj, key = self.event(T.demand_calendar, f"cal-{self.seed}-{i}")
            obj["market"] = MARKETS[i % len(MARKETS)]
            cases.append(self._valid_case(T.demand_calendar, obj["event_id"], "valid", obj, key))
        return cases

    def phase(self, name: str, n_mixed: int, n_changed: int, n_bytes: int, large_per_topic: int = 1) -> list[Case]:
        """One phase: `n_mixed` drawn kinds over all input topics, the large kinds, and the
        hypothesis examples, shuffled together (deterministically)."""
        kinds, weights = list(self.WEIGHTS), list(self.WEIGHTS.values())
        cases = []
        for i in range(n_mixed):
            topic = INPUT_TOPICS[i % len(INPUT_TOPICS)]
            kind = self.rng.choices(kinds, weights)[0]
            cases.append(self.made[kind](topic, f"{name}-{i}"))
        for topic in INPUT_TOPICS:
            for kind in self.LARGE:
                for j in range(large_per_topic):
                    cases.append(self.made[kind](topic, f"{name}-{kind}-{topic}-{j}"))
        seed_base = self.seed * 1000 + sum(map(ord, name))
        for kind, examples in (("hypothesis_fields", draw(changed_fields_strategy(), n_changed, seed_base)),
                               ("hypothesis_bytes", draw(any_bytes_strategy(), n_bytes, seed_base + 1))):
            for model, raw in examples:
                case = oracle_case(model, raw, kind, self.now, self.skipped)
                if case is not None:
                    cases.append(case)
        self.rng.shuffle(cases)
        return cases


# --- checking the answers --------------------------------------------------------------------------
@dataclass
class Verdict:
    cases: int
    missing_letters: list[tuple[Case, Optional[int], str]] = field(default_factory=list)
    wrong_letters: list[tuple[Case, dict[str, Any], str]] = field(default_factory=list)
    unscored: dict[str, tuple[int, int]] = field(default_factory=dict)  # event id -> (expected, got)
    stray_letters: list[dict[str, Any]] = field(default_factory=list)  # naming no message sent
    letters_by_code: Counter[str] = field(default_factory=Counter)
    letters_by_topic: Counter[str] = field(default_factory=Counter)
    scored: Counter[str] = field(default_factory=Counter)

    @property
    def complete(self) -> bool:
        """Every expected answer came (wrong ones are reported, not waited for)."""
        return not self.missing_letters and not self.unscored

    @property
    def ok(self) -> bool:
        return self.complete and not self.wrong_letters and not self.stray_letters

    def problems(self, limit: int = 8) -> str:
        def show(case: Case) -> str:
            return f"{case.kind} on {case.topic}[{case.partition}]@{case.offset} ({(case.value or b'')[:80]!r})"

        lines = [f"missing dead letter: {show(c)} item {i}: expected {code}" for c, i, code in self.missing_letters[:limit]]
        lines += [f"wrong dead letter: {show(c)} item {d.get('item_index')}: {why}; got {d['error_code']}: "
                  f"{d['error_message'][:200]}" for c, d, why in self.wrong_letters[:limit]]
        lines += [f"not scored: {eid!r} expected {n}, got {got}" for eid, (n, got) in list(self.unscored.items())[:limit]]
        lines += [f"stray dead letter: {d['source_topic']}[{d['partition']}]@{d['offset']} {d['error_code']}"
                  for d in self.stray_letters[:limit]]
        counts = (f"{len(self.missing_letters)} missing, {len(self.wrong_letters)} wrong, {len(self.unscored)} unscored ids, "
                  f"{len(self.stray_letters)} stray")
        return counts + ("\n  " + "\n  ".join(lines) if lines else "")


def verify(messages: dict[str, list[Any]], cases: Iterable[Case]) -> Verdict:
    """Match the outputs read (topic -> messages) against the cases sent."""
    cases = list(cases)
    verdict = Verdict(len(cases))
    letters: dict[tuple[str, int, int], dict[Optional[int], dict[str, Any]]] = {}
    seen_ids: set[str] = set()
    for letter in messages.get(T.dead_letters, []):
        if letter["dead_letter_id"] in seen_ids:  # at-least-once: the same letter again
            continue
        seen_ids.add(letter["dead_letter_id"])
        letters.setdefault((letter["source_topic"], letter["partition"], letter["offset"]), {})[letter["item_index"]] = letter
        verdict.letters_by_code[letter["error_code"]] += 1
        verdict.letters_by_topic[letter["source_topic"]] += 1

    expected_scores: dict[str, Counter[str]] = {t: Counter() for t in SCORED_ON.values()}
    matched: set[tuple[str, int, int]] = set()
    for case in cases:
        if case.topic in SCORED_ON:
            expected_scores[SCORED_ON[case.topic]].update(case.scored)
        position = (case.topic, case.partition, case.offset)
        got = letters.get(position, {})
        matched.add(position)  # type: ignore[arg-type]
        for index, code in case.letters.items():
            if index not in got:
                verdict.missing_letters.append((case, index, code))
        for index, letter in got.items():
            allowed = {case.letters[index]} if index in case.letters else set(case.maybe.get(index, ()))
            if letter["error_code"] not in allowed:
                why = f"expected {sorted(allowed)}" if allowed else "expected no dead letter"
                verdict.wrong_letters.append((case, letter, why))
            elif letter["error_code"] not in SPECIFIC_CODES:
                verdict.wrong_letters.append((case, letter, "not a specific error code"))
            elif letter["payload_sha256"] != hashlib.sha256(case.value or b"").hexdigest():
                verdict.wrong_letters.append((case, letter, "payload_sha256 is not the message's"))
    verdict.stray_letters = [d for pos, items in letters.items() if pos not in matched for d in items.values()]

    for out_topic, expected in expected_scores.items():
        got_ids = Counter(m["event_id"] for m in messages.get(out_topic, []))
        verdict.scored[out_topic] = sum(got_ids.values())
        for eid, n in expected.items():
            if got_ids[eid] < n:
                verdict.unscored[eid] = (n, got_ids[eid])
    return verdict
