"""Publishing from agents: send without awaiting each delivery, then wait for all of a batch's
deliveries before the batch's input offsets are acknowledged (at-least-once)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Optional, Sequence

from schemas import DeadLetter, OutputMessage
from stream_app.deadletter import kafka_headers

Headers = Sequence[tuple[str, bytes]]


class Outbox:
    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._pending: list[Awaitable[Any]] = []

    async def send(
        self, topic: str, key: Optional[str], message: OutputMessage, headers: Optional[Headers] = None
    ) -> None:
        """Dead letters get their `dlq.*` headers here, whichever agent sends them."""
        if headers is None and isinstance(message, DeadLetter):
            headers = kafka_headers(message)
        value = message.model_dump_json().encode()
        fut = await self._producer.send(
            topic, key.encode() if key is not None else None, value, None, None, list(headers) if headers else None
        )
        self._pending.append(fut)

    def discard(self) -> None:
        """Forget pending sends (after a failed batch: their outcome no longer matters)."""
        self._pending = []

    async def flush(self) -> int:
        """Wait until the broker acknowledged everything sent since the last flush."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)
        return len(pending)
