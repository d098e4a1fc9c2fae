"""Drive a simulator into Kafka at a steady rate (`stream-app simulate`, the demo, tests)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator, Optional

from stream_app.kafka_io import encode_json, json_producer
from stream_app.settings import Settings
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator, SimEvent

# Simulated time runs faster than wall time (one reading per machine per simulated 30 min);
# starting a year back keeps event timestamps in the past for over an hour at demo rates, so
# they pass the future-timestamp check that guards real producers.
DEFAULT_LOOKBACK = timedelta(days=365)


@dataclass
class ProduceStats:
    sent: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, topic: str) -> None:
        self.sent[topic] = self.sent.get(topic, 0) + 1


def maintenance_events(settings: Settings, n_machines: int, seed: int, start: Optional[datetime] = None) -> Iterator[tuple[str, SimEvent]]:
    start = start or datetime.now(timezone.utc) - DEFAULT_LOOKBACK
    sim = FleetSimulator(FleetConfig(n_machines=n_machines, seed=seed, start=start))
    topics = settings.topics
    for event in sim.live(start):
        topic = topics.sensor_readings if event.kind == "reading" else topics.maintenance_outcomes
        yield topic, event


@dataclass(frozen=True)
class DriftInjection:
    """From the `after`-th reading on, multiply one sensor by `factor` (a recalibrated or
    replaced sensor): `simulate --drift vibration_rms=1.8@5000`."""

    sensor: str
    factor: float
    after: int

    @classmethod
    def parse(cls, text: str) -> "DriftInjection":
        try:
            sensor, rest = text.split("=", 1)
            factor, after = rest.split("@", 1)
            return cls(sensor.strip(), float(factor), int(after))
        except ValueError:
            raise ValueError(f"--drift takes SENSOR=FACTOR@READINGS, e.g. vibration_rms=1.8@5000, not {text!r}") from None


def inject_drift(events: Iterator[tuple[str, SimEvent]], drift: DriftInjection) -> Iterator[tuple[str, SimEvent]]:
    readings = 0
    for topic, event in events:
        if event.kind == "reading":  # sensor readings only: other streams have no sensors
            readings += 1
            value = event.value.get("sensors", {}).get(drift.sensor)
            if readings > drift.after and value is not None:
                sensors = {**event.value["sensors"], drift.sensor: round(value * drift.factor, 4)}
                event = SimEvent(event.kind, event.key, {**event.value, "sensors": sensors})
        yield topic, event


# Ground truth and calendars go out as they come; the rate applies to the event stream itself.
UNPACED_KINDS = frozenset({"outcome", "verdict"})


def is_paced(event: SimEvent) -> bool:
    return event.kind not in UNPACED_KINDS


async def produce(
    settings: Settings,
    events: Iterator[tuple[str, SimEvent]],
    rate: float,
    *,
    duration: Optional[float] = None,
    count: Optional[int] = None,
    on_event: Optional[Callable[[str, SimEvent], None]] = None,
) -> ProduceStats:
    """Send events at `rate` per second until `duration` seconds or `count` events (ground
    truth and calendar entries ride along unpaced and uncounted)."""
    stats = ProduceStats()
    producer = json_producer(settings.bootstrap_servers)
    await producer.start()
    started = time.monotonic()
    sent = 0
    try:
        for topic, event in events:
            if count is not None and sent >= count:
                break
            elapsed = time.monotonic() - started
            if duration is not None and elapsed >= duration:
                break
            # Pace against the schedule, not per message: sleeps of 1 ms and more only.
            ahead = sent / rate - elapsed
            if ahead > 0.001:
                await asyncio.sleep(ahead)
            await producer.send(topic, encode_json(event.value), key=event.key.encode())
            stats.add(topic)
            if on_event is not None:
                on_event(topic, event)
            if is_paced(event):
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
        stats.seconds = time.monotonic() - started
    return stats
