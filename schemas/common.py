"""Field types shared by every message. Imports nothing of the project."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, WithJsonSchema

# Epoch milliseconds outside these years are almost always epoch *seconds* or garbage.
_MIN_TS = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MAX_TS = datetime(2100, 1, 1, tzinfo=timezone.utc)
_MAX_TS_CHARS = 64

# Input layouts the worker reads (`schema_version`; absent means 1).
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
# The layout of every message this product publishes; consumers check it (absent means 1).
OUTPUT_SCHEMA_VERSION = 1
# Events in one gateway message (a JSON array): the worker's default MAX_EVENTS_PER_MESSAGE.
MAX_GATEWAY_EVENTS = 10_000


def _parse_ts(value: Any) -> datetime:
    """ISO 8601 (naive means UTC) or epoch milliseconds, returned timezone-aware in UTC."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO 8601 text or epoch milliseconds, not a boolean")
    if isinstance(value, (int, float)):
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer beyond any float
            finite = False
        if not finite:
            raise ValueError("timestamp must be a finite number of epoch milliseconds")
        try:
            parsed = datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"epoch milliseconds {value!r} are out of range") from None
        if not (_MIN_TS <= parsed < _MAX_TS):
            hint = " (epoch seconds? send milliseconds)" if 9e8 < value < 5e9 else ""
            raise ValueError(f"epoch milliseconds {value!r} are outside 2000-2100{hint}")
        return parsed
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        if len(value) > _MAX_TS_CHARS:
            raise ValueError("timestamp text is too long")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not ISO 8601") from None
        # Only the forms the JSON Schema names, not all fromisoformat reads (week dates, basic
        # format, any separator); a year outside 2000-2100 is named as such below.
        if _MIN_TS.year <= parsed.year < _MAX_TS.year and not _TS_TEXT.match(value):
            raise ValueError(f"timestamp {value!r} is not ISO 8601 as the schema has it "
                             "(YYYY-MM-DD[Thh:mm[:ss[.fff]]][Z|±hh:mm])")
    else:
        raise ValueError("timestamp must be ISO 8601 text or epoch milliseconds")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    parsed = parsed.astimezone(timezone.utc)
    if not (_MIN_TS <= parsed < _MAX_TS):
        raise ValueError(f"timestamp {value!r} is outside 2000-2100")
    return parsed


def _finite(value: float) -> float:
    try:
        result = float(value)
    except OverflowError:  # an int beyond float range: pydantic only reports ValueErrors
        raise ValueError("number is too large") from None
    if not math.isfinite(result):
        raise ValueError("number must be finite (NaN and infinity are not allowed)")
    return result


# The ISO 8601 text a producer may send for `ts`, as a JSON Schema pattern that reads the same in
# ECMA 262 and Python `re` ([0-9]: Python's \d takes any Unicode digit; `(?!\n)`: Python's `$`
# also matches before a trailing newline). Years 2000-2099 with real calendar days, time to the
# minute or finer, an optional zone. `_parse_ts` (datetime.fromisoformat) reads more: week
# dates, basic format, any date-time separator; the schema keeps to the common forms, and accepts
# nothing `_parse_ts` refuses but the exceptions listed in tests/unit/test_schema_contract.py.
_DATE = (r"20[0-9]{2}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
         r"|02-(?:0[1-9]|1[0-9]|2[0-8]))|20(?:[02468][048]|[13579][26])-02-29")
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]+)?)?"
_ZONE = r"Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?"
TS_PATTERN = rf"^(?:{_DATE})(?:[Tt ]{_TIME}(?:{_ZONE})?)?(?!\n)$"
_TS_TEXT = re.compile(TS_PATTERN)
_EPOCH_MS = (int(_MIN_TS.timestamp() * 1000), int(_MAX_TS.timestamp() * 1000))

TS_JSON_SCHEMA: dict[str, Any] = {
    "description": "ISO 8601 (no zone means UTC) or epoch milliseconds; 2000-01-01 to 2100-01-01 UTC, "
                   "and no more than the worker's MAX_FUTURE_SKEW_S (7 days) ahead of its clock",
    "anyOf": [
        {"type": "string", "maxLength": _MAX_TS_CHARS, "pattern": TS_PATTERN},
        {"type": "number", "minimum": _EPOCH_MS[0], "exclusiveMaximum": _EPOCH_MS[1]},
    ],
}

Timestamp = Annotated[datetime, BeforeValidator(_parse_ts), WithJsonSchema(TS_JSON_SCHEMA)]
def _parse_date(value: Any) -> date:
    """A calendar date as `YYYY-MM-DD` text (or a date, from a history file): not a number, not a
    date-time, which lax validation would read as a date when it falls on midnight."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_TEXT.match(value):
        return date.fromisoformat(value)
    raise ValueError("a date must be YYYY-MM-DD text")


_DATE_TEXT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?!\n)$")
# A calendar date: pattern as well as format, for validators that treat format as a note only.
IsoDate = Annotated[date, BeforeValidator(_parse_date),
                    Field(json_schema_extra={"pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"})]
def _whole(value: Any) -> int:
    """A JSON integer, as JSON Schema reads one: 5 or 5.0, not "5", true or 5.5."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a whole number, not text or a boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


# After any Field constraints in an Annotated (`Annotated[int, Field(ge=0), WHOLE_NUMBER]`):
# before them, pydantic cannot write the constraints into the JSON Schema.
WHOLE_NUMBER = BeforeValidator(_whole)
# Strict: "1.5" or true are type errors, not numbers; NaN/inf are rejected explicitly.
FiniteFloat = Annotated[StrictFloat, AfterValidator(_finite)]
EntityId = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(min_length=1, max_length=64)]


class InputEvent(BaseModel):
    """Base of every input event: unknown extra fields are ignored (producers may add fields)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = Field(1, json_schema_extra={"enum": sorted(SUPPORTED_SCHEMA_VERSIONS)})
    event_id: EntityId
    ts: Timestamp


class OutputPart(BaseModel):
    """A piece of a published message (an alert's input reference, a forecast day): extra
    fields are a bug, not tolerated."""

    model_config = ConfigDict(extra="forbid")


class OutputMessage(OutputPart):
    """Base of every message this product publishes, each stamped with its layout's version."""

    schema_version: Literal[1] = OUTPUT_SCHEMA_VERSION
