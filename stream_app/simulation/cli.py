"""`stream-app simulate`: live events into Kafka, or a history file for `train --data`."""

from __future__ import annotations

import argparse
import asyncio

from stream_app.broker import ensure_broker
from stream_app.kafka_io import ensure_topics
from stream_app.settings import Settings
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator
from stream_app.simulation.producer import DriftInjection, inject_drift, maintenance_events, produce


def simulate(settings: Settings, args: argparse.Namespace) -> int:
    if args.history:
        args.history.mkdir(parents=True, exist_ok=True)
        history = FleetSimulator(FleetConfig(n_machines=args.machines, seed=args.seed)).history(args.lives)
        readings, outcomes = args.history / "readings.jsonl", args.history / "outcomes.jsonl"
        history.write(readings, outcomes)
        print(f"wrote {len(history.readings)} readings to {readings} and {len(history.outcomes)} outcomes to {outcomes}")
        return 0

    broker = ensure_broker(settings.bootstrap_servers, settings.uses_embedded_broker, settings.data_dir / "broker.log")
    try:
        topics = [settings.topics.sensor_readings, settings.topics.maintenance_outcomes]
        asyncio.run(ensure_topics(settings.bootstrap_servers, topics, settings.topic_partitions))
        events = maintenance_events(settings, args.machines, args.seed)
        if args.drift:
            events = inject_drift(events, DriftInjection.parse(args.drift))
        print(f"producing simulated readings of {args.machines} machines at {args.rate:g}/s to {settings.bootstrap_servers}", flush=True)
        try:
            stats = asyncio.run(produce(settings, events, args.rate, duration=args.duration, count=args.count))
        except KeyboardInterrupt:
            return 0
        total = sum(stats.sent.values())
        print(f"sent {stats.sent} in {stats.seconds:.1f}s ({total / max(stats.seconds, 1e-9):.0f}/s)")
        return 0
    finally:
        if broker is not None:
            broker.stop()
