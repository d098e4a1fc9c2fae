"""Write the JSON Schema of every message to schemas/json/ (`python -m schemas.export`).
`--check` exits 1 when the committed files differ from the models.

One file per message (`MESSAGES`), per input one for the gateway form, a JSON array of its
events (`GATEWAY_BATCHES`), and per per-event output one for the array that answers a gateway
message (`ANSWER_BATCHES`). What the files say beyond pydantic's defaults comes from here and
from the field types (schemas/common.py), never from editing the files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from schemas import ANSWER_BATCHES, GATEWAY_BATCHES, MESSAGES
from schemas.common import MAX_GATEWAY_EVENTS

JSON_DIR = Path(__file__).parent / "json"
# The largest finite double: JSON has no NaN or infinity, and the worker refuses numbers beyond it.
MAX_DOUBLE = sys.float_info.max


class ContractSchema(GenerateJsonSchema):
    """Draft 2020-12, declared in `$schema`; input numbers (`FiniteFloat`, the strict floats)
    bounded to a finite double."""

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        return {"$schema": self.schema_dialect, **super().generate(schema, mode)}

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        json_schema = super().float_schema(schema)
        if not schema.get("strict"):
            return json_schema
        if "minimum" not in json_schema and "exclusiveMinimum" not in json_schema:
            json_schema["minimum"] = -MAX_DOUBLE
        if "maximum" not in json_schema and "exclusiveMaximum" not in json_schema:
            json_schema["maximum"] = MAX_DOUBLE
        return json_schema


def schema_of(name: str) -> dict[str, Any]:
    if name in GATEWAY_BATCHES or name in ANSWER_BATCHES:
        model = GATEWAY_BATCHES.get(name) or ANSWER_BATCHES[name]
        batch = Annotated[list[model], Field(min_length=1, max_length=MAX_GATEWAY_EVENTS)]  # type: ignore[valid-type]
        schema = TypeAdapter(batch).json_schema(schema_generator=ContractSchema)
        one = name.removesuffix("-batch")
        schema["title"] = f"{model.__name__}Batch"
        schema["description"] = (
            f"A gateway message: a JSON array of {one} events ({one}.schema.json). The worker takes each valid "
            "element and dead-letters each bad one on its own." if name in GATEWAY_BATCHES else
            "The answer to a gateway message where its input topic's TOPIC_CONFIG__<TOPIC>__ANSWER_ARRAYS is on: "
            f"one message, a JSON array of {one} messages ({one}.schema.json), one per valid event of the gateway "
            "message in its order, keyed by the gateway message's key.")
    else:
        schema = MESSAGES[name].model_json_schema(schema_generator=ContractSchema)
    schema["$id"] = f"{name}.schema.json"
    return schema


def render(name: str) -> str:
    return json.dumps(schema_of(name), indent=2, sort_keys=True) + "\n"


def names() -> list[str]:
    return [*MESSAGES, *GATEWAY_BATCHES, *ANSWER_BATCHES]


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    JSON_DIR.mkdir(exist_ok=True)
    stale = []
    for name in names():
        path = JSON_DIR / f"{name}.schema.json"
        text = render(name)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.name)
        if not check:
            path.write_text(text)
    if check and stale:
        print("stale JSON Schema files (run python -m schemas.export):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
