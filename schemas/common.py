"""Field types shared by every message. Imports nothing of the project."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat

# Epoch milliseconds outside these years are almost always epoch *seconds* or garbage.
_MIN_TS = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MAX_TS = datetime(2100, 1, 1, tzinfo=timezone.utc)


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
        if len(value) > 64:
            raise ValueError("timestamp text is too long")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not ISO 8601") from None
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


Timestamp = Annotated[datetime, BeforeValidator(_parse_ts)]
# Strict: "1.5" or true are type errors, not numbers; NaN/inf are rejected explicitly.
FiniteFloat = Annotated[StrictFloat, AfterValidator(_finite)]
EntityId = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(min_length=1, max_length=64)]


class InputEvent(BaseModel):
    """Base of every input event: unknown extra fields are ignored (producers may add fields)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = 1
    event_id: EntityId
    ts: Timestamp


class OutputMessage(BaseModel):
    """Base of every message this product publishes: extra fields are a bug, not tolerated."""

    model_config = ConfigDict(extra="forbid")
