"""Event ids for rows that have none (a failure log, a historian export): derived from what the
row says once validated, so importing the same file again, or the same history in another format
(CSV or Parquet, ISO text or epoch milliseconds), gives the same ids and repeated rows drop as
duplicates, as repeated event_ids do."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from schemas.common import InputEvent
from schemas.outputs import deterministic_id

E = TypeVar("E", bound=InputEvent)
_PLACEHOLDER = "-"  # validated in place of the missing id, replaced at once


def validate(model: type[E], row: dict[str, Any]) -> tuple[E, bool]:
    """The event, and whether its id was derived. Raises pydantic's ValidationError."""
    if row.get("event_id") not in (None, ""):
        return model.model_validate(row), False
    event = model.model_validate({**row, "event_id": _PLACEHOLDER})
    content = json.dumps(event.model_dump(mode="json", exclude={"event_id"}), sort_keys=True, separators=(",", ":"))
    return event.model_copy(update={"event_id": deterministic_id("history-row", model.__name__, content)}), True
