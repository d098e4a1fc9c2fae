"""Raw message bytes -> validated input events, or precise reasons why not.

Agents consume raw bytes and call `decode_message`; nothing here raises for bad input. A
message is one JSON event or a JSON array of events of one kind (gateways batch); in an array,
each bad element is its own failure and the good ones go on to scoring.

Two paths, one result. Well-formed input, nearly all of it, is validated straight from its bytes
by pydantic's JSON parser in strict mode (about two thirds the cost of `json.loads` +
`model_validate`: load_tests/hot_path.py). Strict mode accepts a subset of what the checked path
accepts, so anything it refuses (bad input, or merely a "1" where a number belongs, which the
checked path coerces or names precisely) goes the checked path: parse, check the schema version,
validate each element, one failure per bad element.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Generic, Optional, TypeVar

from pydantic import TypeAdapter, ValidationError

from schemas.common import SUPPORTED_SCHEMA_VERSIONS, InputEvent

E = TypeVar("E", bound=InputEvent)


class ErrorCode:
    EMPTY = "empty_message"
    OVERSIZED = "oversized_message"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NON_FINITE = "non_finite_number"
    TOO_DEEP = "nesting_too_deep"
    NOT_OBJECT = "not_an_object"
    TOO_MANY = "too_many_events"
    SCHEMA_VERSION = "unsupported_schema_version"
    INVALID = "invalid_fields"
    FUTURE_TS = "timestamp_in_future"


@dataclass(frozen=True)
class DecodeFailure:
    code: str
    message: str
    item_index: Optional[int] = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    # The offending element of a gateway array, as parsed (its dead letter keeps only it).
    item: Any = None


@dataclass
class Decoded(Generic[E]):
    events: list[E] = field(default_factory=list)
    failures: list[DecodeFailure] = field(default_factory=list)


MAX_FIELD_ERRORS = 20  # per event, in a dead letter: enough to fix it, bounded in size


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1_000_000
    max_events: int = 10_000
    max_future_skew: timedelta = timedelta(days=7)


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


class _NonFinite(ValueError):
    pass


def _parse(raw: bytes) -> Any:
    text = raw.decode("utf-8")  # UnicodeDecodeError handled by the caller
    return json.loads(text, parse_constant=_reject_constant)


def _field_errors(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = [
        # field paths echo input keys, which may be huge: cut them
        {"field": (".".join(str(p) for p in err["loc"]) or "(message)")[:200], "error": err["msg"][:500], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)[:MAX_FIELD_ERRORS]
    ]
    total = exc.error_count()
    shown = "; ".join(f"{e['field']}: {e['error']}" for e in errors[:5])
    more = f" (and {total - 5} more)" if total > 5 else ""
    return shown + more, errors


def _validate_one(
    obj: Any, model: type[E], index: Optional[int], limits: Limits, now: datetime
) -> E | DecodeFailure:
    if not isinstance(obj, dict):
        return DecodeFailure(ErrorCode.NOT_OBJECT, f"expected a JSON object, got {type(obj).__name__}", index)
    version = obj.get("schema_version", 1)
    # Numbers only: a list or object is unhashable (set membership would raise), true is not 1.
    if isinstance(version, bool) or not isinstance(version, (int, float)) or version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))
        return DecodeFailure(
            ErrorCode.SCHEMA_VERSION, f"schema_version {version!r} is not supported (supported: {supported})", index
        )
    try:
        event = model.model_validate(obj)
    except ValidationError as exc:
        message, errors = _field_errors(exc)
        return DecodeFailure(ErrorCode.INVALID, message, index, errors)
    except RecursionError:
        return DecodeFailure(ErrorCode.TOO_DEEP, "message nests too deeply to validate", index)
    if event.ts > now + limits.max_future_skew:
        return DecodeFailure(
            ErrorCode.FUTURE_TS,
            f"ts {event.ts.isoformat()} is more than {limits.max_future_skew} ahead of now ({now.isoformat()})",
            index,
        )
    return event


@lru_cache(maxsize=None)
def _array_of(model: type[E]) -> TypeAdapter[list[E]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _fast(raw: bytes, model: type[E], limits: Limits, now: datetime) -> Optional[list[E]]:
    """The events of a message in which every event is valid, else None (the checked path then
    finds what is wrong). Only messages the checked path would accept as they are get through:
    strict validation, the same schema-version, count and timestamp checks."""
    if b"Infinity" in raw or b"NaN" in raw:
        return None  # the checked path refuses these literals anywhere (pydantic's parser takes them)
    start = raw[:1]
    try:
        if start == b"{":
            events = [model.model_validate_json(raw, strict=True)]
        elif start == b"[":
            events = _array_of(model).validate_json(raw, strict=True)
            if not events or len(events) > limits.max_events:
                return None
        else:
            return None
    except (ValidationError, RecursionError):
        return None
    latest = now + limits.max_future_skew
    for event in events:
        if event.schema_version not in SUPPORTED_SCHEMA_VERSIONS or event.ts > latest:
            return None
    return events


def decode_message(
    raw: Optional[bytes], model: type[E], limits: Limits = Limits(), now: Optional[datetime] = None
) -> Decoded[E]:
    """Decode one Kafka message value into events of `model` and failures; never raises."""
    now = now or datetime.now(timezone.utc)
    if raw and len(raw) <= limits.max_bytes:
        events = _fast(raw, model, limits, now)
        if events is not None:
            return Decoded(events)
    return decode_checked(raw, model, limits, now)


def decode_checked(raw: Optional[bytes], model: type[E], limits: Limits, now: datetime) -> Decoded[E]:
    """The checked path alone: what `decode_message` returns, every failure named."""
    result: Decoded[E] = Decoded()
    if not raw:
        result.failures.append(DecodeFailure(ErrorCode.EMPTY, "message has no value"))
        return result
    if len(raw) > limits.max_bytes:
        result.failures.append(
            DecodeFailure(ErrorCode.OVERSIZED, f"message is {len(raw)} bytes; the limit is {limits.max_bytes}")
        )
        return result
    try:
        obj = _parse(raw)
    except UnicodeDecodeError as exc:
        result.failures.append(DecodeFailure(ErrorCode.NOT_UTF8, f"message is not UTF-8: {exc.reason} at byte {exc.start}"))
        return result
    except _NonFinite as exc:
        result.failures.append(DecodeFailure(ErrorCode.NON_FINITE, f"{exc} is not a valid JSON number"))
        return result
    except RecursionError:
        result.failures.append(DecodeFailure(ErrorCode.TOO_DEEP, "message nests too deeply to parse"))
        return result
    except ValueError as exc:
        result.failures.append(DecodeFailure(ErrorCode.NOT_JSON, f"message is not JSON: {exc}"))
        return result

    if isinstance(obj, list):
        if not obj:
            result.failures.append(DecodeFailure(ErrorCode.EMPTY, "gateway array holds no events"))
            return result
        if len(obj) > limits.max_events:
            result.failures.append(
                DecodeFailure(ErrorCode.TOO_MANY, f"array holds {len(obj)} events; the limit is {limits.max_events}")
            )
            return result
        items: list[tuple[Optional[int], Any]] = list(enumerate(obj))
    else:
        items = [(None, obj)]
    for index, item in items:
        outcome = _validate_one(item, model, index, limits, now)
        if isinstance(outcome, DecodeFailure):
            result.failures.append(outcome if index is None else replace(outcome, item=item))
        else:
            result.events.append(outcome)
    return result
