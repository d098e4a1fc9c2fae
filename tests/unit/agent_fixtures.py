"""Test doubles shared by the agents' unit tests (which run the pipelines without a broker)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional


class RecordingProducer:
    """Stands in for Faust's producer: records sends, acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Optional[bytes], dict[str, Any]]] = []

    async def send(self, topic: str, key: Optional[bytes], value: bytes, *_: Any) -> "asyncio.Future[None]":
        self.sent.append((topic, key, json.loads(value)))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [v for t, _, v in self.sent if t == topic]
