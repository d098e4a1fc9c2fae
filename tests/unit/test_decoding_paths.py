"""The fast decoding path (strict validation straight from bytes) must give exactly what the
checked path gives: the same events for input it takes, and it must leave everything else
(bad input, lax but acceptable input) to the checked path."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import SensorReading
from stream_app.decoding import Decoded, _fast, decode_checked, decode_message
from tests.unit.test_fuzz_decoding import INPUTS, LIMITS, NOW, VALID, hostile_values


def _same(a: Decoded, b: Decoded) -> None:
    assert a.events == b.events
    assert [(f.code, f.message, f.item_index, f.errors) for f in a.failures] == \
        [(f.code, f.message, f.item_index, f.errors) for f in b.failures]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(INPUTS),
    st.lists(st.dictionaries(st.text(max_size=12), hostile_values, max_size=3), min_size=1, max_size=4),
    st.sampled_from([None, 1, 1.0, "1", True, 2]),
    st.booleans(),
)
def test_both_paths_agree(model: type, changes: list[dict], version: object, as_array: bool) -> None:
    items = []
    for change in changes:
        event = {**VALID[model], **change}
        if version is not None:
            event["schema_version"] = version
        items.append(event)
    raw = json.dumps(items if as_array else items[0]).encode()
    _same(decode_message(raw, model, LIMITS, now=NOW), decode_checked(raw, model, LIMITS, now=NOW))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(INPUTS), st.integers(min_value=1, max_value=60))
def test_valid_messages_and_arrays_take_the_fast_path(model: type, n: int) -> None:
    one = json.dumps(VALID[model]).encode()
    assert _fast(one, model, LIMITS, NOW) == decode_checked(one, model, LIMITS, NOW).events
    many = json.dumps([VALID[model]] * n).encode()
    fast = _fast(many, model, LIMITS, NOW)
    if n > LIMITS.max_events:  # too many events: the checked path says so
        assert fast is None
    else:
        assert fast == decode_checked(many, model, LIMITS, NOW).events and len(fast) == n


def test_lax_input_goes_the_checked_path() -> None:
    """Strict validation refuses what the checked path coerces or rejects by name (non-finite
    literals even in fields the model ignores, which pydantic's parser would take)."""
    base = VALID[SensorReading]
    lax = ({"schema_version": "1"}, {"schema_version": 2}, {"ts": "2099-01-01T00:00:00Z"},
           {"extra": float("inf")}, {"extra": [float("-inf")]}, {"extra": {"x": float("nan")}})
    for change in lax:
        raw = json.dumps({**base, **change}).encode()
        assert _fast(raw, SensorReading, LIMITS, NOW) is None
        _same(decode_message(raw, SensorReading, LIMITS, now=NOW), decode_checked(raw, SensorReading, LIMITS, NOW))
    # A whole float is an integer in JSON (and its schema) on both paths.
    whole = json.dumps({**base, "cycle": 3.0}).encode()
    assert decode_message(whole, SensorReading, LIMITS, now=NOW).events[0].cycle == 3
    _same(decode_message(whole, SensorReading, LIMITS, now=NOW), decode_checked(whole, SensorReading, LIMITS, NOW))
