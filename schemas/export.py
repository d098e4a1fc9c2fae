"""Write the JSON Schema of every message to schemas/json/ (`python -m schemas.export`).
`--check` exits 1 when the committed files differ from the models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas import MESSAGES

JSON_DIR = Path(__file__).parent / "json"


def render(name: str) -> str:
    schema = MESSAGES[name].model_json_schema()
    schema["$id"] = f"{name}.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    JSON_DIR.mkdir(exist_ok=True)
    stale = []
    for name in MESSAGES:
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
