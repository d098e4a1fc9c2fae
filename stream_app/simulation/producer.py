"""Drive a simulator into Kafka at a steady rate (`stream-app simulate`, the demo, tests)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

from stream_app.kafka_io import encode_json, json_producer
from stream_app.settings import Settings
from stream_app.simulation.clock import SendSchedule, event_time, is_paced
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator, SimEvent


@dataclass
class ProduceStats:
    sent: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, topic: str) -> None:
        self.sent[topic] = self.sent.get(topic, 0) + 1


# A failure goes out this long (simulated) after it happened, as a maintenance system reports
# it, so the demo screen shows it after the machine's last readings were scored. The worker does
# not need it: a failure read before those readings starts the new life after them
# (MaintenanceScorer.reset_machine). Two hours is within the shortest repair.
REPORT_DELAY_S = 2 * 3600.0


def maintenance_events(
    settings: Settings, n_machines: int, seed: int, start: Optional[datetime] = None, *, healthy_start: bool = False
) -> Iterator[tuple[str, SimEvent]]:
    """Live (topic, event) pairs; simulated time starts at `start` (default: the stream's
    lookback before now, streams.py). `healthy_start`: every machine begins before its fault
    develops (FleetConfig.healthy_start), as the demo wants. Failures are sent REPORT_DELAY_S
    after they happened (their `ts` stays the time of the failure)."""
    if start is None:
        from stream_app.simulation.streams import MAINTENANCE_LOOKBACK

        start = datetime.now(timezone.utc) - MAINTENANCE_LOOKBACK
    sim = FleetSimulator(FleetConfig(n_machines=n_machines, seed=seed, start=start, healthy_start=healthy_start))
    topics = settings.topics
    for event in report_later(sim.live(start), REPORT_DELAY_S):
        topic = topics.sensor_readings if event.kind == "reading" else topics.maintenance_outcomes
        yield topic, event


def report_later(events: Iterator[SimEvent], delay_s: float) -> Iterator[SimEvent]:
    """Outcomes held back until the stream's clock is `delay_s` past them; everything else as is."""
    held: deque[tuple[float, SimEvent]] = deque()
    for event in events:
        if event.kind == "outcome":
            held.append((event_time(event) + delay_s, event))
            continue
        now = event_time(event)
        while held and held[0][0] <= now:
            yield held.popleft()[1]
        yield event


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


async def produce(
    settings: Settings,
    events: Iterator[tuple[str, SimEvent]],
    rate: float,
    *,
    duration: Optional[float] = None,
    count: Optional[int] = None,
    on_event: Optional[Callable[[str, SimEvent], None]] = None,
    on_caught_up: Optional[Callable[[float], None]] = None,
) -> ProduceStats:
    """Send events at `rate` per second until `duration` seconds or `count` events (ground
    truth and calendar entries ride along unpaced and uncounted), never an event before its
    own timestamp (clock.py). `on_caught_up(ts)` is called once, when the stream's simulated
    time reaches the present and starts following the wall clock."""
    stats = ProduceStats()
    producer = json_producer(settings.bootstrap_servers)
    await producer.start()
    started = time.time()
    schedule = SendSchedule(rate, started)
    sent = 0
    try:
        for topic, event in events:
            if count is not None and sent >= count:
                break
            at = schedule.next(event)
            if duration is not None and max(at, time.time()) - started >= duration:
                break
            # Sleep until the schedule says, not per message: sleeps of 1 ms and more only.
            wait = at - time.time()
            if wait > 0.001:
                await asyncio.sleep(wait)
            await producer.send(topic, encode_json(event.value), key=event.key.encode())
            stats.add(topic)
            if on_event is not None:
                on_event(topic, event)
            if on_caught_up is not None and schedule.caught_up_at is not None:
                on_caught_up(schedule.caught_up_at)
                on_caught_up = None
            if is_paced(event):
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
        stats.seconds = time.time() - started
    return stats
