"""The supply-chain graph, shared through the compacted `supply-chain-graph` topic, so a worker's
start-up is bounded by a snapshot and not by the transactions topic's retention (what a
snapshot holds, and how it is cut and checked: stream_app/graph/snapshot.py).

* Writer: the worker whose scoring agent holds partition 0 of the transactions topic (one at a
  time, chosen by the consumer group). Every SUPPLY_CHAIN__GRAPH_SNAPSHOT_INTERVAL_S its graph
  follower, between two of its batches, takes the graph and the amount statistics together with
  its own positions (every record before them applied) in the inference thread, then writes the
  snapshot in the background, head last.
* Reader: a follower starting up (SUPPLY_CHAIN__GRAPH_FROM_SNAPSHOT) loads the latest snapshot
  made by the model version its scorer serves, and reads the transactions and verdicts topics on
  from the snapshot's offsets. Records the snapshot's graph already holds (the writer's scoring
  agent may have applied them before its follower read them) are dropped as duplicates. Without
  a usable snapshot (the first start, another model version, a damaged or forged one) the
  follower replays the topics from the beginning, as a lone worker does.

What is not in a snapshot: the embeddings (each worker makes them from the graph it loaded:
load_tests/graph_startup.py times it), and the memory beyond the latest 50,000 transaction ids
(the duplicate check) and shipments (late verdicts' joins).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Optional

from stream_app import metrics
from stream_app.graph import snapshot
from stream_app.graph.snapshot import BadSnapshot, GraphSnapshot
from stream_app.kafka_io import read_partition_latest
from stream_app.settings import Settings

log = logging.getLogger(__name__)

STREAM = "supply_chain"
READ_STALL_S = 30.0


class GraphSnapshots:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topics.supply_chain_graph
        self.interval = settings.supply_chain.graph_snapshot_interval_s
        self.writer = False  # holds partition 0 of the transactions topic (set by the stream's wiring)
        self._last = time.monotonic()
        self._writing: Optional[asyncio.Future[None]] = None
        self._slot: Optional[int] = None  # where the next snapshot goes
        self._mark: Optional[tuple[int, str]] = None  # what the last snapshot held

    async def _records(self) -> dict[bytes, bytes]:
        return await read_partition_latest(self.settings, self.topic, 0, READ_STALL_S, 100)

    async def read(self) -> Optional[GraphSnapshot]:
        """The latest snapshot (None: none written yet); raises BadSnapshot for one that cannot be used."""
        records = await self._records()
        self._slot = snapshot.next_slot(records)
        return snapshot.decode(records)

    def due(self) -> bool:
        if not self.writer or self.interval <= 0:
            return False
        if self._writing is not None and not self._writing.done():
            return False
        return time.monotonic() - self._last >= self.interval

    def changed(self, applied: int, offsets: dict[str, dict[int, int]]) -> bool:
        """Whether the graph moved since the last snapshot (what it applied, where it read);
        either way, the next check is an interval away."""
        self._last = time.monotonic()
        mark = (applied, json.dumps(offsets, sort_keys=True))
        if mark == self._mark:
            return False
        self._mark = mark
        return True

    def write(self, producer: Any, snap: GraphSnapshot) -> None:
        """Write in the background (the follower goes on reading meanwhile)."""
        self._last = time.monotonic()
        self._writing = asyncio.ensure_future(self._write(producer, snap))

    async def written(self) -> None:
        """Wait for the snapshot being written, if any (tests, shutdown)."""
        if self._writing is not None:
            await asyncio.shield(self._writing)

    async def _write(self, producer: Any, snap: GraphSnapshot) -> None:
        started = time.monotonic()
        try:
            if self._slot is None:
                self._slot = snapshot.next_slot(await self._records())
            slot = self._slot
            records = await asyncio.get_running_loop().run_in_executor(None, snapshot.encode, snap, slot)
            # One record at a time, each acknowledged before the next: the head never precedes
            # its chunks, and each is its own batch (the embedded broker reports the end of a
            # multi-record batch wrong, which would hide the head from a reader).
            for key, value in records:
                await (await producer.send(self.topic, key, value, 0, None, None))
        except Exception:  # the graph is written next time; scoring goes on
            self._mark = None
            log.exception("supply chain: writing the graph snapshot failed")
            return
        self._slot = 1 - slot
        metrics.STATE_SNAPSHOT_RECORDS.labels(STREAM).inc(len(records))
        size = sum(len(v) for _, v in records)
        log.info("supply chain: graph snapshot written (%d nodes, %d bytes in %d records, %.1f s)",
                 len(snap.graph.get("nodes", ())), size, len(records), time.monotonic() - started)


def refused(why: BadSnapshot) -> None:
    metrics.STATE_REFUSED.labels(STREAM, "graph_snapshot").inc()
    log.warning("supply chain: the graph snapshot was refused (%s); replaying the topics from the beginning", why)
