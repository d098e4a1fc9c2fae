"""Drift monitoring inside an agent: one `DriftMonitor` per input partition (its data is what
this worker sees of the stream), fed in the inference thread right after scoring.

Where the detectors go when a partition moves: maintenance hands them over exactly, in its
partition markers (agents/maintenance_state.py). The other streams snapshot them every
DRIFT__SNAPSHOT_INTERVAL_S to the compacted `drift-state` topic (`DriftSnapshots`: one record
per stream partition, on that partition), and a worker taking a partition over carries on from
the snapshot instead of relearning a reference (the values since the snapshot are not replayed).
Not a Faust table: a worker with a table resumes fetching to recover its changelog before it
seeks its input partitions back to their committed offsets, and the fault suite saw inputs
read in that window skipped, and committed, unanswered.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Callable, Generic, Mapping, Optional, Sequence, TypeVar

from stream_app.intake import RawMessage
from schemas import DriftEvent
from stream_app import metrics
from stream_app.drift import DriftConfig, DriftMonitor
from stream_app.drift_snapshot import ForgedSnapshot
from stream_app.kafka_io import read_partition_latest
from stream_app.settings import DriftSettings, Settings

log = logging.getLogger(__name__)

E = TypeVar("E")
R = TypeVar("R")
# (events of one partition, their results) -> monitored name -> values
Extract = Callable[[Sequence[E], Sequence[R]], Mapping[str, list[float]]]


class DriftSnapshots:
    """Detector snapshots in the compacted `drift-state` topic, shared by a worker's streams."""

    def __init__(self, settings: Settings, producer: Callable[[], Any]) -> None:
        self.settings = settings
        self.topic = settings.topics.drift_state
        self._producer = producer  # the app's (Faust) producer, once it exists
        # Bumped when a partition is revoked: a monitor from before is stale if it comes back.
        self.generation: dict[int, int] = defaultdict(int)

    def revoked(self, partitions: set[int]) -> None:
        for p in partitions:
            self.generation[p] += 1

    async def load(self, key: bytes, partition: int) -> Optional[bytes]:
        return (await read_partition_latest(self.settings, self.topic, partition, stall_s=10.0)).get(key)

    async def save(self, key: bytes, partition: int, data: bytes) -> None:
        await (await self._producer().send(self.topic, key, data, partition, None, None))


class DriftTracker(Generic[E, R]):
    def __init__(
        self,
        stream: str,
        settings: DriftSettings,
        extract: Extract,
        kswin_features: Sequence[str] = (),
        snapshot_store: Optional[DriftSnapshots] = None,
    ) -> None:
        self.stream = stream
        self.config = DriftConfig(
            adwin_delta=settings.adwin_delta, kswin_alpha=settings.kswin_alpha, kswin_every=settings.kswin_every,
            min_effect=settings.min_effect, reference_size=settings.reference_size,
        )
        self.ignore = frozenset(settings.ignore_features)
        self.extract = extract
        self.kswin_features = tuple(kswin_features)
        self.snapshot_store = snapshot_store
        self._generation: dict[Optional[int], int] = {}  # the store's, when each monitor was set up
        self.snapshot_interval = settings.snapshot_interval_s
        self.monitors: dict[Optional[int], DriftMonitor] = {}
        # Restored detectors: events below these offsets are in them already (never fed twice).
        self.fed_from: dict[Optional[int], int] = {}
        self._last_snapshot = time.monotonic()

    def _key(self, partition: Optional[int]) -> bytes:
        return f"{self.stream}:{partition}".encode()

    def ensure(self, partitions: set[Optional[int]]) -> None:
        """Fresh monitors for partitions without one (no snapshot read: see `restore`)."""
        for partition in partitions - self.monitors.keys():
            self.fresh(partition)

    async def restore(self, partitions: set[Optional[int]]) -> None:
        """On the event loop, before scoring: monitors for partitions new here (or back after a
        revocation), from their snapshot when there is one."""
        store = self.snapshot_store
        if store is None:
            self.ensure(partitions)
            return
        for partition in partitions:
            generation = store.generation[partition] if partition is not None else 0
            if partition in self.monitors and self._generation.get(partition) == generation:
                continue
            self.fresh(partition)
            self._generation[partition] = generation
            if partition is None:
                continue
            try:
                snapshot = await store.load(self._key(partition), partition)
                if snapshot:
                    self.monitors[partition] = self._loads(snapshot)
                    log.info("%s drift detectors of partition %s restored", self.stream, partition)
            except Exception:  # a missing or bad snapshot costs a new reference, not the worker
                log.warning("%s drift snapshot of partition %s unusable; starting afresh", self.stream, partition,
                            exc_info=True)

    # --- hand-over with a stream's entity state (maintenance): instead of the table ---------------
    def fresh(self, partition: Optional[int]) -> None:
        self.monitors[partition] = DriftMonitor(self.stream, partition, self.config, self.kswin_features)
        self.fed_from.pop(partition, None)

    def load(self, partition: Optional[int], snapshot: bytes, offset: int) -> None:
        """Detectors that already include the partition's events below `offset`."""
        self.monitors[partition] = self._loads(snapshot)
        self.fed_from[partition] = offset

    def _loads(self, snapshot: bytes) -> DriftMonitor:
        """A snapshot read from a topic; one the product did not write is counted, and raises."""
        try:
            return DriftMonitor.loads(snapshot)
        except ForgedSnapshot:
            metrics.STATE_REFUSED.labels(self.stream, "drift").inc()
            raise

    def dumps(self, partition: Optional[int]) -> Optional[bytes]:
        """In the inference thread."""
        monitor = self.monitors.get(partition)
        return monitor.dumps() if monitor is not None else None

    def drop(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.monitors.pop(partition, None)
            self.fed_from.pop(partition, None)

    def observe(self, events: Sequence[E], results: Sequence[R], origin: Sequence[RawMessage]) -> list[DriftEvent]:
        """In the inference thread: feed each partition's monitor with its events' values."""
        by_partition: dict[Optional[int], list[int]] = defaultdict(list)
        for i, message in enumerate(origin[: len(results)]):
            if message.offset is None or message.offset >= self.fed_from.get(message.partition, -1):
                by_partition[message.partition].append(i)
        found: list[DriftEvent] = []
        for partition, idx in by_partition.items():
            values = self.extract([events[i] for i in idx], [results[i] for i in idx])
            values = {k: v for k, v in values.items() if k not in self.ignore}
            last_ts = getattr(events[idx[-1]], "ts", None)
            found.extend(self.monitors[partition].observe(values, last_ts))
        for event in found:
            metrics.DRIFT_EVENTS.labels(self.stream, event.feature, event.detector).inc()
            metrics.DRIFT_LAST.labels(self.stream, event.feature).set(event.detected_at.timestamp())
        return found

    def snapshot_due(self) -> bool:
        return time.monotonic() - self._last_snapshot >= self.snapshot_interval

    def snapshots(self) -> dict[Optional[int], bytes]:
        """In the inference thread (pickling takes a few ms): every partition's state."""
        self._last_snapshot = time.monotonic()
        means: dict[str, list[float]] = defaultdict(list)
        for monitor in self.monitors.values():
            for name, mean in monitor.window_means().items():
                means[name].append(mean)
        for name, values in means.items():
            metrics.DRIFT_WINDOW_MEAN.labels(self.stream, name).set(sum(values) / len(values))
        return {partition: monitor.dumps() for partition, monitor in self.monitors.items()}

    async def store(self, snapshots: Mapping[Optional[int], bytes]) -> None:
        """On the event loop: write the snapshots (a failure is logged; the next turn writes)."""
        if self.snapshot_store is None:
            return
        for partition, data in snapshots.items():
            if partition is None:
                continue
            try:
                await self.snapshot_store.save(self._key(partition), partition, data)
            except Exception:
                log.warning("%s drift snapshot of partition %s not written", self.stream, partition, exc_info=True)
