"""Drift monitoring inside an agent: one `DriftMonitor` per input partition (its data is what
this worker sees of the stream), fed in the inference thread right after scoring, snapshot to a
Faust table keyed `stream:partition` so a restarted or rebalanced worker carries on with the
detectors' state instead of relearning a reference."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Callable, Generic, Mapping, Optional, Sequence, TypeVar

from stream_app.intake import RawMessage
from schemas import DriftEvent
from stream_app import metrics
from stream_app.drift import DriftConfig, DriftMonitor
from stream_app.settings import DriftSettings

log = logging.getLogger(__name__)

E = TypeVar("E")
R = TypeVar("R")
# (events of one partition, their results) -> monitored name -> values
Extract = Callable[[Sequence[E], Sequence[R]], Mapping[str, list[float]]]


def drift_table(app: Any, partitions: int) -> Any:
    """The Faust table holding every stream's detector snapshots (raw bytes)."""
    # The app's serializers are raw bytes, so keys and values are stored as given.
    return app.Table("drift-state", default=None, partitions=partitions, key_type=bytes, value_type=bytes)


class DriftTracker(Generic[E, R]):
    def __init__(
        self,
        stream: str,
        settings: DriftSettings,
        extract: Extract,
        kswin_features: Sequence[str] = (),
        table: Optional[Any] = None,
    ) -> None:
        self.stream = stream
        self.config = DriftConfig(
            adwin_delta=settings.adwin_delta, kswin_alpha=settings.kswin_alpha, kswin_every=settings.kswin_every,
            min_effect=settings.min_effect, reference_size=settings.reference_size,
        )
        self.ignore = frozenset(settings.ignore_features)
        self.extract = extract
        self.kswin_features = tuple(kswin_features)
        self.table = table
        self.snapshot_interval = settings.snapshot_interval_s
        self.monitors: dict[Optional[int], DriftMonitor] = {}
        # Restored detectors: events below these offsets are in them already (never fed twice).
        self.fed_from: dict[Optional[int], int] = {}
        self._last_snapshot = time.monotonic()

    def _key(self, partition: Optional[int]) -> bytes:
        return f"{self.stream}:{partition}".encode()

    def ensure(self, partitions: set[Optional[int]]) -> None:
        """On the event loop, before scoring: monitors for new partitions, restored from the
        table when a snapshot exists."""
        for partition in partitions - self.monitors.keys():
            snapshot = self.table.data.get(self._key(partition)) if self.table is not None else None
            monitor = None
            if snapshot:
                try:
                    monitor = DriftMonitor.loads(snapshot)
                    log.info("%s drift detectors of partition %s restored", self.stream, partition)
                except Exception:  # a bad snapshot costs a new reference, not the worker
                    log.warning("%s drift snapshot of partition %s unreadable; starting afresh", self.stream, partition)
            self.monitors[partition] = monitor or DriftMonitor(self.stream, partition, self.config, self.kswin_features)

    # --- hand-over with a stream's entity state (maintenance): instead of the table ---------------
    def fresh(self, partition: Optional[int]) -> None:
        self.monitors[partition] = DriftMonitor(self.stream, partition, self.config, self.kswin_features)
        self.fed_from.pop(partition, None)

    def load(self, partition: Optional[int], snapshot: bytes, offset: int) -> None:
        """Detectors that already include the partition's events below `offset`."""
        self.monitors[partition] = DriftMonitor.loads(snapshot)
        self.fed_from[partition] = offset

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

    def store(self, snapshots: Mapping[Optional[int], bytes]) -> None:
        """On the event loop: write the snapshots to the table's changelog."""
        if self.table is None:
            return
        for partition, data in snapshots.items():
            if partition is None:
                continue
            key = self._key(partition)
            self.table.data[key] = data
            self.table.send_changelog(partition, key, data)
