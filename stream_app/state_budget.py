"""A stream's state budget: how many entities (machines, supply-chain nodes, demand series) a
worker keeps state for, and how long an entity may stay silent before it is forgotten.

Fleets churn: sensors are replaced, assets renamed, a gateway bug invents ids. Without a budget
every id ever seen keeps its state until the worker runs out of memory. With one:

* at most `max_entities` are kept; when a batch brings more, the least recently seen go first;
* an entity whose newest event is more than `idle_s` of event time older than the newest event
  the stream has seen is forgotten (event time, not the wall clock: a replay or a backlog
  forgets exactly what live processing would have);
* each eviction is counted in `stream_app_state_evictions_total{stream, reason}`.

An evicted entity that comes back starts again as a new one (a machine warms up again, a series
has an empty history, a node is new to the graph). The tracker keeps entities in the order
they were last seen (a dict's insertion order: a touch moves the entity to the end), so the
least recently seen is always first and each touch or eviction is O(1).
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Iterable

from stream_app import metrics


class EntityBudget:
    def __init__(self, stream: str, max_entities: int, idle_s: float, slack: int = 0) -> None:
        """`slack`: once over `max_entities`, evict down to max_entities - slack (for state whose
        eviction has a fixed cost per call, such as the graph's tables: it then runs seldom)."""
        if max_entities < 1:
            raise ValueError("max_entities must be >= 1")
        if not 0 <= slack < max_entities:
            raise ValueError("slack must be >= 0 and below max_entities")
        if idle_s <= 0:
            raise ValueError("idle_s must be > 0")
        self.stream = stream
        self.max_entities = max_entities
        self.idle_s = idle_s
        self.slack = slack
        self._seen: dict[str, float] = {}  # entity -> newest event time, least recently seen first
        self.newest = -math.inf  # the newest event time seen on the stream
        self.evicted = {"budget": 0, "idle": 0}

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, entity: object) -> bool:
        return entity in self._seen

    def touch(self, entity: str, ts: float) -> None:
        """`entity` had an event at `ts` (seconds): it becomes the most recently seen."""
        seen = self._seen
        before = seen.pop(entity, -math.inf)
        seen[entity] = ts if ts > before else before
        if ts > self.newest:
            self.newest = ts

    def discard(self, entities: Iterable[str]) -> None:
        """Stop tracking entities forgotten for another reason (their partition moved away)."""
        for e in entities:
            self._seen.pop(e, None)

    def due(self) -> list[str]:
        """The entities to forget now, least recently seen first; they are no longer tracked
        and are counted as evictions. The caller drops their state."""
        out: list[str] = []
        seen = self._seen
        cutoff = self.newest - self.idle_s
        while seen:
            entity, ts = next(iter(seen.items()))
            if ts >= cutoff:
                break
            del seen[entity]
            out.append(entity)
        self._count("idle", len(out))
        if len(seen) > self.max_entities:
            over = len(seen) - self.max_entities + self.slack
            for entity in list(islice(seen, over)):
                del seen[entity]
                out.append(entity)
            self._count("budget", over)
        metrics.STATE_ENTITIES.labels(self.stream).set(len(seen))
        return out

    def shift(self, delta: float) -> None:
        """Move every time by `delta` seconds (state re-anchored in time, see graph/state.py)."""
        self._seen = {e: ts + delta for e, ts in self._seen.items()}
        self.newest += delta

    def _count(self, reason: str, n: int) -> None:
        if n:
            self.evicted[reason] += n
            metrics.STATE_EVICTIONS.labels(self.stream, reason).inc(n)

