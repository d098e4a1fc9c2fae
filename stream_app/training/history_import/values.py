"""One cell of a CSV or Parquet file as the event's JSON would carry it. A CSV cell is text; a
Parquet cell already has a type (number, timestamp, date, text). Every converter returns None for
an empty cell and raises ValueError, with a short reason, for one it cannot read."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Optional

Convert = Callable[[Any], Any]
# How many tools write "missing" in a text cell; NaN is the contract's null.
_NULL_WORDS = ("", "null", "none", "na", "n/a", "nan")


def _real(value: Any) -> Optional[float]:
    """A typed number (not a boolean) as a float; NaN is null."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{value!r} is too large") from None
    return None if math.isnan(number) else number


def text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        # An id column a tool stored as numbers (101, or 101.0 once a null made it float).
        number = _real(value)
        if number is None:
            return None
        return str(int(number)) if number.is_integer() else str(value)
    raise ValueError(f"{value!r} is not text")


def keyword(value: Any) -> Optional[str]:
    """A choice of the contract (failure/repair, node types, ...): case does not matter."""
    found = text(value)
    return found.lower() if found else found


def number(value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if value.lower() in _NULL_WORDS:
            return None
        try:
            parsed = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    else:
        parsed = _real(value)
        if parsed is None:
            return None
    if not math.isfinite(parsed):
        raise ValueError(f"{value!r} is not finite")
    return parsed


def whole(value: Any) -> Optional[int]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        parsed = float(value.strip()) if isinstance(value, str) else _real(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if parsed is None:
        return None
    if not parsed.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(parsed)


def flag(value: Any) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    word = text(value)
    if word is None:
        return None
    if word.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"{value!r} is not true/false")
    return word.lower() in ("true", "1")


def timestamp(value: Any) -> Any:
    """ISO text stays text and a number is epoch milliseconds (the contract allows both); a
    Parquet timestamp (naive means UTC) or date is passed on as such."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):  # a daily export's date column: midnight UTC
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        found = value.strip() or None
        if found is not None and found.lstrip("-").isdigit():
            return int(found)
        return found
    if value is None:
        return None
    found_ms = _real(value)
    return int(found_ms) if found_ms is not None and found_ms.is_integer() else found_ms


def day(value: Any) -> Any:
    """A calendar date: text as ISO, a Parquet date, or a timestamp at midnight."""
    if isinstance(value, datetime):
        if value.time() != datetime.min.time():
            raise ValueError(f"{value.isoformat()} is not a date (it has a time of day)")
        return value.date()
    if isinstance(value, date):
        return value
    return text(value)
