"""Node embeddings, refreshed off the hot path and only looked up when scoring.

Every `every_n` transactions applied to the graph (or `every_s` seconds, whichever comes first)
the inference thread takes a snapshot of the established flows (arrays, about a millisecond for
a few thousand edges) and hands it to a background thread, which computes the node features
(anchor distances) and runs the GNN encoder over the whole graph. The new table replaces the old
one by a single reference assignment, so scoring always sees a complete table and never waits.
The first table is computed inline (at load, before any scoring). With `background=False`
(training's evaluation replay, tests) every refresh runs inline, so results do not depend on
thread timing.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from stream_app.graph import pyg
from stream_app.graph.state import TransactionGraph
from stream_app.models.supply_chain_gnn import SupplyChainGNN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingTable:
    index: dict[str, int]
    z: torch.Tensor  # (N, D)
    applied: int  # graph.applied when the snapshot was taken
    built_at: float  # time.monotonic()
    nodes: int
    edges: int

    def rows(self, node_ids: Sequence[str]) -> np.ndarray:
        """Row per node, -1 for nodes without an embedding (no established flow yet)."""
        get = self.index.get
        return np.fromiter((get(n, -1) for n in node_ids), dtype=np.int64, count=len(node_ids))


def compute_table(model: SupplyChainGNN, snap: pyg.GraphSnapshot, anchors: Sequence[str], applied: int) -> EmbeddingTable:
    data = pyg.to_data(snap, anchors)
    with torch.no_grad():
        z = model.encode(data.x, data.edge_index) if len(snap.nodes) else torch.zeros(0, model.embedding)
    return EmbeddingTable(snap.index, z.contiguous(), applied, time.monotonic(), len(snap.nodes), int(snap.edges.shape[1]))


class EmbeddingRefresher:
    def __init__(
        self,
        model: SupplyChainGNN,
        anchors: Sequence[str],
        *,
        min_edge_count: int = 3,
        every_n: int = 1000,
        every_s: float = 30.0,
        background: bool = True,
        table: Optional[EmbeddingTable] = None,
    ) -> None:
        self.model = model.eval()
        self.anchors = list(anchors)
        self.min_edge_count = min_edge_count
        self.every_n = max(1, every_n)
        self.every_s = every_s
        self.table = table
        self.refreshes = 0
        self._last_applied = table.applied if table else -1
        self._last_time = time.monotonic()
        self._background = background
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="supply-chain-embeddings") if background else None
        self._running: Optional[Future[None]] = None
        self._lock = threading.Lock()

    def due(self, graph: TransactionGraph) -> bool:
        changed = graph.applied != self._last_applied
        return changed and (
            graph.applied - self._last_applied >= self.every_n or time.monotonic() - self._last_time >= self.every_s
        )

    def maybe_refresh(self, graph: TransactionGraph) -> bool:
        """Call from the thread that mutates the graph. Returns whether a refresh started."""
        if self.table is not None and not self.due(graph):
            return False
        if self._running is not None and not self._running.done():
            return False  # one at a time; the next call after it finishes picks up the changes
        snap = pyg.snapshot(graph, self.min_edge_count)
        applied = graph.applied
        self._last_applied, self._last_time = applied, time.monotonic()
        if self._pool is None or self.table is None:  # the first table inline: never score without one
            self._build(snap, applied)
        else:
            self._running = self._pool.submit(self._build, snap, applied)
        return True

    def _build(self, snap: pyg.GraphSnapshot, applied: int) -> None:
        try:
            started = time.perf_counter()
            table = compute_table(self.model, snap, self.anchors, applied)
        except Exception:  # keep serving the previous table; scoring must not depend on this
            log.exception("supply-chain embedding refresh failed; keeping the previous table")
            return
        with self._lock:
            self.table = table
            self.refreshes += 1
        log.debug("embeddings refreshed: %d nodes, %d edges in %.1f ms", table.nodes, table.edges,
                  1000 * (time.perf_counter() - started))

    def refresh_now(self, graph: TransactionGraph) -> None:
        """A table of this graph before the next score (another graph replaced the one the
        table was made from). Call from the thread that mutates the graph."""
        self.wait()
        snap = pyg.snapshot(graph, self.min_edge_count)
        self._last_applied, self._last_time = graph.applied, time.monotonic()
        self._build(snap, graph.applied)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Until a running refresh has finished (tests, shutdown)."""
        running = self._running
        if running is not None:
            running.result(timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
