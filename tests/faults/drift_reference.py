"""Drift statistics after faults, against a reference recomputed from the input.

Each maintenance partition's drift detectors travel in its partition marker (agents/
maintenance_state.py), valid at the marker's offset. The reference feeds one monitor per
partition with that partition's readings below the offset, in offset order, scored by one
uninterrupted scorer; both must agree on every statistic. Drift events published on
`drift-events` are compared too: the reference's events over the whole partition, by id."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.drift import DriftTracker
from agents.maintenance import drift_values
from agents.maintenance_state import MARKER_KEY, decode_marker
from schemas import SensorReading
from stream_app.decoding import decode_message
from stream_app.drift import DriftMonitor
from stream_app.intake import RawMessage, limits_from_settings
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import DriftSettings, MaintenanceSettings, Settings

TOLERANCE = 1e-6  # relative: model outputs of differently shaped batches differ in the last bits


@dataclass
class DriftCheck:
    partitions: int
    statistics: int  # numbers compared
    differences: list[str] = field(default_factory=list)
    events_expected: int = 0
    events_missing: list[str] = field(default_factory=list)
    events_unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"drift: {self.partitions} partitions' detectors, {self.statistics} statistics checked, "
                f"{len(self.differences)} differ; {self.events_expected} drift events expected, "
                f"{len(self.events_missing)} missing, {len(self.events_unexpected)} unexpected")


async def _read(bootstrap: str, topic: str, partitions: int) -> dict[int, list[Any]]:
    """Every record of `topic`, per partition in offset order (by fetch until it stays empty:
    the embedded broker's end offsets are not to be trusted)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: dict[int, list[Any]] = {p: [] for p in range(partitions)}
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        empty = 0
        while empty < 3:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            empty = 0 if batches else empty + 1
            for tp, records in batches.items():
                out[tp.partition].extend(records)
    finally:
        await consumer.stop()
    return out


def check_drift(
    bootstrap: str, model_dir: Path, settings: DriftSettings, partitions: int, published: Iterable[dict[str, Any]]
) -> DriftCheck:
    markers: dict[int, tuple[int, Optional[bytes]]] = {}
    for p, records in asyncio.run(_read(bootstrap, "maintenance-state", partitions)).items():
        for r in records:
            if r.key == MARKER_KEY:
                info, drift = decode_marker(r.value)
                markers[p] = (int(info["offset"]), drift)
    readings = asyncio.run(_read(bootstrap, "sensor-readings", partitions))

    scorer = MaintenanceScorer.load(ModelRegistry(model_dir), MaintenanceSettings())
    until = DriftTracker("maintenance", settings, drift_values, ("failure_probability", "confidence"))
    whole = DriftTracker("maintenance", settings, drift_values, ("failure_probability", "confidence"))
    expected_events: set[str] = set()
    limits = limits_from_settings(Settings())  # the workers' own
    # Machines are keyed to partitions, so feeding partition after partition gives each machine
    # its readings in order, as the workers saw them.
    for p, records in readings.items():
        until.fresh(p)
        whole.fresh(p)
        cut = markers.get(p, (0, None))[0]
        for i in range(0, len(records), 500):
            chunk = records[i : i + 500]
            events: list[SensorReading] = []
            origin: list[RawMessage] = []
            for r in chunk:
                decoded = decode_message(r.value, SensorReading, limits)
                for event in decoded.events:  # bad readings were dead letters: no drift
                    events.append(event)
                    origin.append(RawMessage(r.topic, r.partition, r.offset, r.key, r.value))
            results = scorer.score_batch(events, explain=False)
            before = [k for k, m in enumerate(origin) if (m.offset or 0) < cut]
            until.observe([events[k] for k in before], [results[k] for k in before], [origin[k] for k in before])
            expected_events |= {e.drift_id for e in whole.observe(events, results, origin)}

    check = DriftCheck(partitions=len(markers), statistics=0)
    for p, (_, blob) in sorted(markers.items()):
        if blob is None:
            check.differences.append(f"partition {p}: its marker carries no drift detectors")
            continue
        mine, theirs = DriftMonitor.loads(blob).summary(), until.monitors[p].summary()
        if mine.keys() != theirs.keys():
            check.differences.append(f"partition {p}: features {sorted(mine)} != {sorted(theirs)}")
            continue
        for feature, stats in theirs.items():
            for name, value in stats.items():
                check.statistics += 1
                if abs(mine[feature][name] - value) > TOLERANCE * max(1.0, abs(value)):
                    check.differences.append(f"partition {p} {feature}.{name}: {mine[feature][name]} != {value}")
    seen = {e["drift_id"] for e in published if e.get("stream") == "maintenance"}
    check.events_expected = len(expected_events)
    check.events_missing = sorted(expected_events - seen)
    check.events_unexpected = sorted(seen - expected_events)
    return check
