"""Output messages serialized straight from their fields, for paths that publish one message per
input event: building and dumping a pydantic model per event cost more than the fields' JSON
(`python -m load_tests.hot_path`, "the agent's whole pipeline", measures the path).

The fields are the schema's own (schemas/outputs.py), in its order, `schema_version` first as
pydantic writes it; tests/unit/test_encoded.py holds each encoder to what the model itself
would publish. Values come from the product's own scorer, so they are not validated again here;
the lazily built model (`ScoredReading.prediction`) validates them wherever code asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import orjson

_OPTIONS = orjson.OPT_UTC_Z  # datetimes in UTC as ...Z, as pydantic writes them


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """A message as the bytes it is published as. `event_id`: the input event it answers, where
    one array answers a gateway message (agents/pipeline.py)."""

    value: bytes
    event_id: Optional[str] = None


def encode_fields(fields: Mapping[str, Any], **update: Any) -> bytes:
    """The JSON of an output message with these fields (`schema_version` among them; `update`
    replacing some)."""
    return orjson.dumps({**fields, **update} if update else fields, option=_OPTIONS)
