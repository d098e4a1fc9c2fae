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
from datetime import datetime
from typing import Any, Optional, Sequence

from stream_app.broker import ensure_broker
from stream_app.kafka_io import consume_json, encode_json, json_producer
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings
from stream_app.simulation.producer import is_paced, produce
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

# A reading sent before the simulator starts: its prediction shows the worker is consuming.
PROBE = "demo-probe"

BOLD, RED, YELLOW, DIM, RESET = ("\033[1m", "\033[31m", "\033[33m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("",) * 5


def _ts(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


class Screen:
    """What a person watching the demo sees: alerts with their explanation, failures as they
    happen (and whether an alert came first), and a status line every few seconds."""

    def __init__(self) -> None:
        self.counts = {"sent": 0, "maintenance predictions": 0, "supply-chain scores": 0, "demand forecasts": 0,
                       "alerts": 0, "dead letters": 0, "failures": 0, "caught": 0}
        self.explanations: dict[str, dict[str, Any]] = {}
        self.pending_alerts: dict[str, dict[str, Any]] = {}
        self.last_alert_ts: dict[str, str] = {}
        self.seen_event_ids: set[str] = set()

    def alert(self, alert: dict[str, Any]) -> None:
        self.counts["alerts"] += 1
        self.last_alert_ts[alert["entity_id"]] = alert["event_ts"]
        explanation = self.explanations.pop(alert["alert_id"], None)
        if explanation is None:
            self.pending_alerts[alert["alert_id"]] = alert
            return
        self._show(alert, explanation)

    def explanation(self, explanation: dict[str, Any]) -> None:
        alert = self.pending_alerts.pop(explanation["alert_id"], None)
        if alert is None:
            self.explanations[explanation["alert_id"]] = explanation
        else:
            self._show(alert, explanation)

    def _show(self, alert: dict[str, Any], explanation: dict[str, Any]) -> None:
        """Three lines per alert; the full explanation is on the explanations topic."""
        colour = RED if alert["severity"] == "critical" else YELLOW
        print(
            f"\n{colour}{BOLD}ALERT {alert['severity'].upper()}{RESET} {alert['kind']} {BOLD}{alert['entity_id']}{RESET} "
            f"at {_ts(alert['event_ts'])}  score {alert['score']:.2f}  confidence {alert['confidence']:.2f}  "
            f"decided by {alert['decision_source']} ({alert['model_name']} {alert['model_version'] or '-'})"
        )
        print(f"  {alert['explanation']}")
        drivers = explanation.get("features") or []
        if drivers:
            shown = ", ".join(
                f"{d['name']} {d['contribution']:+.2f}" + (f" (now {d['value']:.3g})" if d.get("value") is not None else "")
                for d in drivers[:3]
            )
            print(f"  {DIM}drivers: {shown}{RESET}")
        sys.stdout.flush()

    def prediction(self, prediction: dict[str, Any]) -> None:
        self.counts["maintenance predictions"] += 1
        if prediction["event_id"].startswith(PROBE):
            self.seen_event_ids.add(prediction["event_id"])

    def outcome(self, outcome: dict[str, Any]) -> None:
        if outcome.get("outcome") != "failure":
            return
        self.counts["failures"] += 1
        machine = outcome["machine_id"]
        alerted = self.last_alert_ts.pop(machine, None)
        if alerted:
            self.counts["caught"] += 1
            lead = (datetime.fromisoformat(outcome["ts"].replace("Z", "+00:00")) - datetime.fromisoformat(alerted.replace("Z", "+00:00"))).total_seconds() / 3600
            note = f"last alert {lead:.1f} h before"
        else:
            note = "no alert before it"
        print(f"\n{BOLD}FAILURE{RESET} {machine} ({outcome.get('failure_mode')}) at {_ts(outcome['ts'])}: {note}", flush=True)

    def status(self, elapsed: float) -> None:
        c = dict(self.counts)
        failures = f"machine failures {c.pop('failures')} ({c.pop('caught')} alerted first)"
        shown = ", ".join(f"{name} {n}" for name, n in c.items())
        print(f"{DIM}[{elapsed:5.0f}s] events {shown}, {failures}{RESET}", flush=True)


async def _watch(settings: Settings, screen: Screen) -> None:
    t = settings.topics
    topics = [t.alerts, t.explanations, t.maintenance_predictions, t.supply_chain_scores, t.demand_forecasts,
              t.dead_letters, t.maintenance_outcomes]
    async for topic, value in consume_json(settings.bootstrap_servers, topics, from_beginning=False):
        if not isinstance(value, dict):
            continue
        if topic == t.alerts:
            screen.alert(value)
        elif topic == t.explanations:
            screen.explanation(value)
        elif topic == t.maintenance_predictions:
            screen.prediction(value)
        elif topic == t.supply_chain_scores:
            screen.counts["supply-chain scores"] += 1
        elif topic == t.demand_forecasts:
            screen.counts["demand forecasts"] += 1
        elif topic == t.dead_letters:
            screen.counts["dead letters"] += 1
            print(f"{DIM}dead letter: {value['error_code']}: {value['error_message'][:100]}{RESET}", flush=True)
        elif topic == t.maintenance_outcomes:
            screen.outcome(value)


async def _wait_for_worker(settings: Settings, screen: Screen, timeout: float = 120.0) -> None:
    """Send a probe reading until its prediction comes back: the worker has joined and scores."""
    producer = json_producer(settings.bootstrap_servers)
    await producer.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            event_id = f"{PROBE}-{int(time.time() * 1000)}"
            reading = {"event_id": event_id, "machine_id": PROBE, "ts": int(time.time() * 1000),
                       "sensors": {"vibration_rms": 2.0}}
            await producer.send_and_wait(settings.topics.sensor_readings, encode_json(reading), key=PROBE.encode())
            for _ in range(20):
                await asyncio.sleep(0.25)
                if event_id in screen.seen_event_ids:
                    print(f"worker ready after {time.monotonic() - started:.0f}s", flush=True)
                    return
        raise RuntimeError(f"the worker did not answer within {timeout:.0f}s; see {settings.data_dir / 'worker.log'}")
    finally:
        await producer.stop()


async def _send_bad_input(settings: Settings) -> None:
    producer = json_producer(settings.bootstrap_servers)
    await producer.start()
    try:
        for payload in BAD_INPUT:
            await producer.send_and_wait(settings.topics.sensor_readings, payload, key=b"m-x")
    finally:
        await producer.stop()


async def _run(settings: Settings, duration: Optional[float], streams: Sequence[str], speed: float, machines: int) -> None:
    screen = Screen()
    started = time.monotonic()
    watcher = asyncio.create_task(_watch(settings, screen))
    await _wait_for_worker(settings, screen)

    def count(topic: str, event: Any) -> None:
        if is_paced(event):
            screen.counts["sent"] += 1

    seed = int(time.time())
    producers = [
        asyncio.create_task(produce(
            settings, STREAMS[name].live(settings, seed, machines if name == "maintenance" else None),
            STREAMS[name].demo_rate * speed, duration=duration, on_event=count,
        ))
        for name in streams
    ]
    await _send_bad_input(settings)
    try:
        while not all(p.done() for p in producers):
            await asyncio.sleep(5.0)
            screen.status(time.monotonic() - started)
        await asyncio.gather(*producers)
        await asyncio.sleep(3.0)  # the last outputs
        screen.status(time.monotonic() - started)
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
        print(f"simulating {rates}; alerts appear below ({'for %.0f s' % duration if duration else 'Ctrl-C stops'})", flush=True)
        asyncio.run(_run(settings, duration, streams, speed, machines))
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
