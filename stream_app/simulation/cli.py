"""`stream-app simulate`: live events into Kafka, or a history file for `train --data`."""

from __future__ import annotations

import argparse
import asyncio

from stream_app.broker import ensure_broker
from stream_app.kafka_io import ensure_topics
from stream_app.settings import Settings
from stream_app.simulation.producer import DriftInjection, inject_drift, produce
from stream_app.simulation.streams import STREAMS


def simulate(settings: Settings, args: argparse.Namespace) -> int:
    stream = STREAMS[args.stream]
    size = args.machines if args.stream == "maintenance" else args.size
    if args.history:
        from stream_app.training.data import write_jsonl

        args.history.mkdir(parents=True, exist_ok=True)
        for name, events in stream.history(args.seed, size, args.lives).items():
            write_jsonl(args.history / name, events)
            print(f"wrote {len(events)} events to {args.history / name}")
        return 0

    broker = ensure_broker(settings.bootstrap_servers, settings.uses_embedded_broker, settings.data_dir / "broker.log")
    try:
        asyncio.run(ensure_topics(settings.bootstrap_servers, stream.topics(settings), settings.topic_partitions))
        events = stream.live(settings, args.seed, size)
        if args.drift:
            events = inject_drift(events, DriftInjection.parse(args.drift))
        print(f"producing simulated {args.stream} events at {args.rate:g}/s to {settings.bootstrap_servers}", flush=True)
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
