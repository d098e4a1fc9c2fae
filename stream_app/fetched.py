"""Whole fetches for an agent: the product's consumer hands each partition's run of records
from a fetch to the topic's `Inbox` in one piece, instead of one Faust event per record.

Faust's per-message path (a message object, an event, a queue hand-off and an ack per record)
cost more than the scoring it fed. An agent reading an inbox takes everything queued (up to a
size) as one batch and reports the batch done only once its outputs were acknowledged; the
consumer commits a partition up to the end of its last batch done, never past a batch that
failed or was never taken:

* a batch fetched before a rebalance is dropped, not scored: after every rebalance Faust seeks
  each partition back to its committed offset, so it is read again by whoever owns it then;
* a batch taken before the rebalance began is waited for (`Consumer.wait_empty`), so the
  commit during the revocation includes it;
* a batch that failed sends its partitions back to the batch's first offset (a seek), and
  nothing after it is done until it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional, Protocol

from faust.types import TP

from stream_app.intake import RawMessage

log = logging.getLogger(__name__)


class BatchConsumer(Protocol):
    """What an inbox needs of the consumer (stream_app/faust_transport.py)."""

    flow_active: bool

    def generation(self) -> int: ...
    def assignment(self) -> Any: ...
    def committed(self, tp: TP) -> Optional[int]: ...
    def batch_done(self, tp: TP, end: int) -> None: ...
    async def seek(self, partition: TP, offset: int) -> None: ...


@dataclass
class Fetched:
    """One partition's records from one fetch, in offset order."""

    tp: TP
    generation: int
    messages: list[RawMessage]

    @property
    def first(self) -> int:
        return self.messages[0].offset  # type: ignore[return-value]

    @property
    def end(self) -> int:
        return self.messages[-1].offset + 1  # type: ignore[operator]


@dataclass
class Taken:
    """What an agent took at once: its messages and, per partition, the offsets they span."""

    messages: list[RawMessage] = field(default_factory=list)
    spans: dict[TP, tuple[int, int]] = field(default_factory=dict)  # tp -> (first, end)


class Inbox:
    """Fetched batches of one topic, waiting for its agent."""

    def __init__(self, topic: str, max_queued: int = 20_000) -> None:
        self.topic = topic
        self.max_queued = max_queued  # messages queued before the fetcher waits (back-pressure)
        self.consumer: Optional[BatchConsumer] = None  # set when the app's consumer is made
        self._queue: deque[Fetched] = deque()
        self._queued = 0
        self._arrived = asyncio.Event()
        self._space = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Per partition, where the next batch must start: the end of the last one taken.
        self._next: dict[TP, int] = {}
        self._generation = -1

    # --- the consumer's side ------------------------------------------------------------------
    async def put(self, fetched: Fetched) -> None:
        """Waits while the agent is `max_queued` messages behind (unless a rebalance began)."""
        while self._queued >= self.max_queued and self._flowing():
            self._space.clear()
            await self._space.wait()
        self._queue.append(fetched)
        self._queued += len(fetched.messages)
        self._arrived.set()

    def clear(self) -> None:
        """A rebalance began: what is queued will be read again after it."""
        self._queue.clear()
        self._queued = 0
        self._space.set()

    async def idle(self) -> None:
        """Until no taken batch is unfinished."""
        await self._idle.wait()

    # --- the agent's side ---------------------------------------------------------------------
    def next_offsets(self) -> dict[int, int]:
        """Per partition of the topic assigned here, the offset its next batch starts at: the
        end of the last batch taken, else the committed offset (0 where none was committed), so
        an agent can take over every assigned partition at once, before its first records come."""
        consumer = self.consumer
        if consumer is None:
            return {}
        current = self._generation == consumer.generation()
        return {tp.partition: (self._next.get(tp) if current else None) or consumer.committed(tp) or 0
                for tp in consumer.assignment() if tp.topic == self.topic}

    @asynccontextmanager
    async def batch(self, max_messages: int) -> AsyncIterator[list[RawMessage]]:
        """The messages queued now (at least one partition's fetch, then whole fetches up to
        `max_messages`); done when the block exits, failed (and read again) if it raises."""
        taken = await self._take(max_messages)
        self._idle.clear()
        try:
            yield taken.messages
        except BaseException:
            await self._failed(taken)
            raise
        else:
            self._finished(taken)
        finally:
            self._idle.set()

    async def _take(self, max_messages: int) -> Taken:
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            taken = Taken()
            while self._queue and (not taken.messages or len(taken.messages) + len(self._queue[0].messages) <= max_messages):
                fetched = self._queue.popleft()
                self._queued -= len(fetched.messages)
                self._admit(fetched, taken)
            self._space.set()
            if taken.messages:
                return taken

    def _flowing(self) -> bool:
        return self.consumer is not None and self.consumer.flow_active

    def _admit(self, fetched: Fetched, taken: Taken) -> None:
        consumer = self.consumer
        if consumer is None or not consumer.flow_active or fetched.generation != consumer.generation():
            return  # fetched before a rebalance: read again after it
        if fetched.generation != self._generation:
            self._generation, self._next = fetched.generation, {}
        tp = fetched.tp
        if tp not in consumer.assignment():
            return
        expected = self._next.get(tp, consumer.committed(tp))
        messages = fetched.messages
        if expected is not None and fetched.first < expected:
            messages = [m for m in messages if m.offset >= expected]  # type: ignore[operator]
            if not messages:
                return
        elif expected is not None and fetched.first > expected:
            # Only after a failed batch (its seek not done yet): what follows it waits for it.
            return
        first, _ = taken.spans.get(tp, (messages[0].offset, 0))
        taken.spans[tp] = (first, fetched.end)  # type: ignore[assignment]
        taken.messages.extend(messages)
        self._next[tp] = fetched.end

    def _finished(self, taken: Taken) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        for tp, (_, end) in taken.spans.items():
            consumer.batch_done(tp, end)

    async def _failed(self, taken: Taken) -> None:
        """Read the batch again: from its first offset per partition, on this worker or the next."""
        consumer = self.consumer
        for tp, (first, _) in taken.spans.items():
            self._next[tp] = first
            if consumer is not None and tp in consumer.assignment():
                try:
                    await consumer.seek(tp, first)
                except Exception:  # the next rebalance seeks to the committed offset, below it
                    log.warning("%s[%d]: could not seek back to %d after a failed batch", tp.topic, tp.partition,
                                first, exc_info=True)
