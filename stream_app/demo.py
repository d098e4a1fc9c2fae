"""`stream-app demo`: the embedded broker, a model (trained now if absent), a worker and the
simulator in one command; alerts and their explanations printed as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

from stream_app.broker import ensure_broker
from stream_app.kafka_io import consume_json, encode_json, json_producer
from stream_app.registry import ModelRegistry
from stream_app.demo_screen import Screen
from stream_app.errors import Problem
from stream_app.settings import Settings
from stream_app.simulation.producer import produce
from stream_app.simulation.streams import STREAMS
from stream_app.worker import ensure_contract_topics

# A few malformed messages mixed in, to show that bad input lands in dead-letters and the
# worker carries on.
BAD_INPUT = [
    b"{not json",
    b'{"event_id": "bad-1", "machine_id": "m-x", "ts": "2026-01-01T00:00:00Z", "sensors": {"vibration_rms": "high"}}',
    b'{"event_id": "bad-2", "machine_id": "m-x", "sensors": {"vibration_rms": 1.0}}',
    b'{"schema_version": 99, "event_id": "bad-3"}',
]

BAD_INPUT_KEY = "m-x"

# A reading sent before the simulator starts: its prediction shows the worker is consuming.
PROBE = "demo-probe"
STATUS_EVERY_S = 5.0


async def _watch(settings: Settings, screen: Screen) -> None:
    t = settings.topics
    topics = [t.alerts, t.explanations, t.maintenance_predictions, t.supply_chain_scores, t.demand_forecasts,
              t.dead_letters]
    async for topic, value in consume_json(settings.bootstrap_servers, topics, from_beginning=False):
        if not isinstance(value, dict):
            continue
        if topic == t.alerts:
            screen.alert(value)
        elif topic == t.explanations:
            screen.explanation(value)
        elif topic == t.maintenance_predictions:
            screen.prediction(value, probe_prefix=PROBE)
        elif topic == t.supply_chain_scores:
            screen.counts["supply chain scored"] += 1
        elif topic == t.demand_forecasts:
            screen.forecast(value)
        elif topic == t.dead_letters:
            screen.dead_letter(value)


async def _wait_for_worker(settings: Settings, screen: Screen, alive: Callable[[], bool], timeout: float = 120.0) -> None:
    """Send a probe reading until its prediction comes back: the worker has joined and scores."""
    log = settings.data_dir / "worker.log"
    producer = json_producer(settings.bootstrap_servers)
    await producer.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            if not alive():
                raise Problem("the demo's worker stopped before it scored anything", f"its log says why: {log}")
            event_id = f"{PROBE}-{int(time.time() * 1000)}"
            reading = {"event_id": event_id, "machine_id": PROBE, "ts": int(time.time() * 1000),
                       "sensors": {"vibration_rms": 2.0}}
            await producer.send_and_wait(settings.topics.sensor_readings, encode_json(reading), key=PROBE.encode())
            for _ in range(20):
                await asyncio.sleep(0.25)
                if event_id in screen.answered_probes:
                    print(f"worker ready after {time.monotonic() - started:.0f}s", flush=True)
                    return
        raise Problem(f"the demo's worker did not answer within {timeout:.0f} s", f"its log may say why: {log}")
    finally:
        await producer.stop()


async def _send_bad_input(settings: Settings) -> None:
    producer = json_producer(settings.bootstrap_servers)
    await producer.start()
    try:
        for payload in BAD_INPUT:
            await producer.send_and_wait(settings.topics.sensor_readings, payload, key=BAD_INPUT_KEY.encode())
    finally:
        await producer.stop()


async def _run(settings: Settings, duration: Optional[float], streams: Sequence[str], speed: float, machines: int,
               worker: subprocess.Popen[bytes]) -> None:
    screen = Screen(deliberate={BAD_INPUT_KEY: "malformed on purpose by the demo"})
    started = time.monotonic()
    watcher = asyncio.create_task(_watch(settings, screen))
    await _wait_for_worker(settings, screen, alive=lambda: worker.poll() is None)

    def caught_up(name: str) -> Callable[[float], None]:
        def note(ts: float) -> None:
            screen.note(f"{name}: simulated time has reached the present; from now on its events follow the wall clock")
        return note

    seed = int(time.time())
    producers = [
        asyncio.create_task(produce(
            settings, STREAMS[name].live(settings, seed, machines if name == "maintenance" else None),
            STREAMS[name].demo_rate * speed, duration=duration, on_event=screen.sent, on_caught_up=caught_up(name),
        ))
        for name in streams
    ]
    await _send_bad_input(settings)
    shown = tuple(streams)
    try:
        last_status = time.monotonic()
        while not all(p.done() for p in producers):
            await asyncio.sleep(1.0)
            screen.tick()
            if time.monotonic() - last_status >= STATUS_EVERY_S:
                last_status = time.monotonic()
                screen.status(last_status - started, shown)
        await asyncio.gather(*producers)
        await asyncio.sleep(3.0)  # the last outputs
        screen.tick(force=True)
        screen.status(time.monotonic() - started, shown)
    finally:
        for task in (*producers, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _ensure_models(settings: Settings, streams: Sequence[str]) -> None:
    registry = ModelRegistry(settings.model_dir)
    missing = [name for name in streams if registry.current(name) is None]
    if not missing:
        return
    print(f"No model yet for {', '.join(missing)}: training on simulated history (about a minute each).", flush=True)
    from stream_app.training.cli import train_streams

    train_streams(settings, missing, data=None, outcomes=None, quick=False)


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "worker.log"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "METRICS_PORT": str(settings.metrics_port)}
    log_file = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    print(f"starting a worker (log: {log_path})", flush=True)
    return subprocess.Popen([sys.executable, "-m", "stream_app", "worker"], stdout=log_file, stderr=subprocess.STDOUT, env=env)


def run_demo(settings: Settings, duration: Optional[float], streams: Sequence[str], speed: float, machines: int) -> int:
    broker = ensure_broker(settings.bootstrap_servers, settings.uses_embedded_broker, settings.data_dir / "broker.log")
    worker: Optional[subprocess.Popen[bytes]] = None
    try:
        asyncio.run(ensure_contract_topics(settings))
        _ensure_models(settings, streams)
        worker = _start_worker(settings)
        rates = ", ".join(f"{name} {STREAMS[name].demo_rate * speed:g}/s" for name in streams)
        print(f"simulating {rates}; alerts appear below ({'for %.0f s' % duration if duration else 'Ctrl-C stops'}); "
              "minor ones are counted, every alert is on the alerts topic (stream-app tail alerts --new)", flush=True)
        asyncio.run(_run(settings, duration, streams, speed, machines, worker))
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()
    return 0
