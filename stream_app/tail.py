"""`stream-app tail TOPIC`: print a topic's messages as JSON lines."""

from __future__ import annotations

import json
import sys
from typing import Optional

from stream_app.kafka_io import consume_json


async def tail(bootstrap: str, topic: str, *, from_beginning: bool, limit: Optional[int], idle: Optional[float]) -> int:
    printed = 0
    async for _, value in consume_json(bootstrap, [topic], from_beginning=from_beginning, idle_timeout=idle):
        text = json.dumps(value, ensure_ascii=False) if not isinstance(value, bytes) else repr(value)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        printed += 1
        if limit is not None and printed >= limit:
            break
    return printed
