"""One worker's scoring throughput on the embedded broker, against a plain consumer baseline.

    python -m load_tests.worker_throughput [--readings 30000] [--machines 2000] [--gateway-batch 100]

Pre-produces a backlog of simulated readings, then measures in the same run and on the same
broker: (a) a plain aiokafka consumer that only decodes JSON (the ceiling of reading the topic
from Python), (b) one worker process scoring single-reading messages, (c) the same worker
scoring gateway messages that each carry `--gateway-batch` readings. Worker throughput is
counted from its first prediction to the last, so start-up and group join are excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from stream_app.broker import EmbeddedBroker
from stream_app.kafka_io import encode_json, ensure_topics, json_producer
from stream_app.registry import ModelRegistry
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator

ALL_TOPICS = ["sensor-readings", "maintenance-outcomes", "maintenance-predictions", "alerts", "explanations", "dead-letters"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readings(n: int, machines: int) -> list[dict[str, Any]]:
    out = []
    for event in FleetSimulator(FleetConfig(n_machines=machines, seed=1)).live():
        if event.kind == "reading":
            out.append(event.value)
            if len(out) == n:
                return out
    return out


async def _produce(bootstrap: str, readings: list[dict[str, Any]], batch: int) -> float:
    producer = json_producer(bootstrap, max_request_size=8_000_000)
    await producer.start()
    started = time.perf_counter()
    try:
        for i in range(0, len(readings), batch):
            chunk = readings[i : i + batch]
            value = chunk[0] if batch == 1 else chunk
            await producer.send("sensor-readings", encode_json(value), key=chunk[0]["machine_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def _plain_consumer(bootstrap: str, expected: int) -> float:
    consumer = AIOKafkaConsumer("sensor-readings", bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                started = started or time.perf_counter()
                for record in records:
                    json.loads(record.value)
                    seen += 1
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - started)


async def _count_predictions(bootstrap: str, expected: int, timeout: float) -> tuple[int, float]:
    consumer = AIOKafkaConsumer("maintenance-predictions", bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen, first, last = 0, None, None
    deadline = time.monotonic() + timeout
    try:
        while seen < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                now = time.perf_counter()
                first = first or now
                last = now
                seen += len(records)
    finally:
        await consumer.stop()
    return seen, seen / max((last or 0) - (first or 0), 1e-9)


def _run_worker_case(model_dir: Path, readings: list[dict[str, Any]], batch: int) -> dict[str, float]:
    with EmbeddedBroker(f"127.0.0.1:{_free_port()}") as broker:
        asyncio.run(ensure_topics(broker.bootstrap, ALL_TOPICS, 4))
        produce_s = asyncio.run(_produce(broker.bootstrap, readings, batch))
        consumer_rate = asyncio.run(_plain_consumer(broker.bootstrap, len(readings))) if batch == 1 else None
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "MODEL_DIR": str(model_dir),
               "METRICS_PORT": "0", "DATA_DIR": tempfile.mkdtemp(prefix="bench-"), "LOG_LEVEL": "WARNING",
               "MAX_EVENTS_PER_MESSAGE": str(max(batch, 10_000)), "MAX_MESSAGE_BYTES": "8000000"}
        worker = subprocess.Popen([sys.executable, "-m", "stream_app", "worker", "--loglevel", "warning"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            seen, rate = asyncio.run(_count_predictions(broker.bootstrap, len(readings), timeout=300))
        finally:
            worker.terminate()
            worker.wait(30)
    result = {"readings": len(readings), "messages": -(-len(readings) // batch), "scored": seen,
              "worker_readings_per_s": rate, "produce_s": produce_s}
    if consumer_rate is not None:
        result["plain_consumer_msgs_per_s"] = consumer_rate
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=30_000)
    parser.add_argument("--machines", type=int, default=2_000)
    parser.add_argument("--gateway-batch", type=int, default=100)
    parser.add_argument("--model-dir", type=Path, default=Path("model_store"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    if ModelRegistry(args.model_dir).current("maintenance") is None:
        print(f"no maintenance model in {args.model_dir}: run `stream-app train maintenance` first", file=sys.stderr)
        return 2
    readings = _readings(args.readings, args.machines)
    single = _run_worker_case(args.model_dir, readings, 1)
    gateway = _run_worker_case(args.model_dir, readings, args.gateway_batch)

    print(f"\n{len(readings)} readings of {args.machines} machines, one worker process, embedded broker")
    print(f"{'case':<46}{'per second':>12}")
    print(f"{'plain aiokafka consumer, json.loads only':<46}{single['plain_consumer_msgs_per_s']:>12,.0f}")
    print(f"{'worker, one reading per message':<46}{single['worker_readings_per_s']:>12,.0f}")
    print(f"{f'worker, {args.gateway_batch} readings per gateway message':<46}{gateway['worker_readings_per_s']:>12,.0f}")
    print(f"worker / plain consumer (single): {single['worker_readings_per_s'] / single['plain_consumer_msgs_per_s']:.2f}")
    for name, case in (("single", single), ("gateway", gateway)):
        if case["scored"] < case["readings"]:
            print(f"WARNING: {name}: only {case['scored']} of {case['readings']} predictions seen")
    if args.json:
        args.json.write_text(json.dumps({"single": single, "gateway": gateway}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
