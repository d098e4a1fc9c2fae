"""Baselines and in-process figures measured in the same run as the workers:

* plain consumer: an aiokafka consumer loop that only decodes each message (the ceiling of
  reading the topic from Python);
* naive scoring: per reading, the maintenance LSTM over the machine's whole window from scratch
  (no carried state, no batching), with the features code the scorer uses;
* the scorer alone: MaintenanceScorer.score_batch on micro-batches, no Kafka (the model ceiling);
* memory: the scorer's per-machine state for a large fleet (state_bytes() / machines).

The bare Faust agent baseline runs as a process like a worker (load_tests/bare_agent.py).
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import psutil
import torch
from aiokafka import AIOKafkaConsumer

from load_tests.loadgen import Feed, simulate
from load_tests.measure import CaseResult
from schemas import SensorReading
from stream_app.registry import ModelRegistry, ModelVersion
from stream_app.scoring.maintenance import MODEL_NAME, LoadedModel, MaintenanceScorer
from stream_app.settings import MaintenanceSettings, Settings
from stream_app.simulation.streams import STREAMS

# Naive scoring runs the LSTM over this many of the machine's readings for every reading.
NAIVE_WINDOW = 64


async def plain_consumer(bootstrap: str, feed: Feed, passes: int = 3, timeout: float = 60.0) -> CaseResult:
    """Messages per second of a consumer that only runs json.loads on each: the best of
    `passes` reads of the whole topic (a ceiling; one pass takes a fraction of a second)."""
    expected = feed.scored_messages()
    rates = [await _read_all(bootstrap, feed.input_topic, expected, timeout) for _ in range(passes)]
    return CaseResult(feed.spec.name, "plain aiokafka consumer, json.loads", "plain-consumer",
                      messages=expected, events=feed.events(), answered=expected,
                      events_per_s=max((r for r in rates if r), default=None))


async def _read_all(bootstrap: str, topic: str, expected: int, timeout: float) -> Optional[float]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen, started = 0, None
    deadline = time.monotonic() + timeout
    try:
        while seen < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                started = started or time.perf_counter()
                for record in records:
                    json.loads(record.value)
                    seen += 1
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - started) if started and seen == expected else None


def sensor_readings(events: int, machines: int, seed: int = 1) -> list[SensorReading]:
    return [SensorReading.model_validate(value) for _, value, _ in _readings(events, machines, seed)]


def _readings(events: int, machines: int, seed: int) -> list[tuple[str, dict[str, Any], str]]:
    return [e for e in simulate("maintenance", events, machines, seed) if e[0] == "sensor_readings"]


def _current(model_dir: Path) -> ModelVersion:
    version = ModelRegistry(model_dir).current(MODEL_NAME)
    if version is None:
        raise LookupError(f"no {MODEL_NAME} model in {model_dir}")
    return version


def naive_scoring(model_dir: Path, events: int, machines: int, window: int = NAIVE_WINDOW) -> CaseResult:
    """Readings per second when each one reruns the LSTM over its machine's last `window`
    readings. Windows are filled first (untimed), so every timed reading pays a full window."""
    loaded = LoadedModel.from_version(_current(model_dir))
    features, model, calibration = loaded.features, loaded.model, loaded.calibration
    readings = sensor_readings(window * machines + events, machines)
    windows: dict[str, deque[tuple[np.ndarray, Any, Any]]] = {}

    def score(r: SensorReading) -> float:
        w = windows.setdefault(r.machine_id, deque(maxlen=window))
        w.append((features.raw_row(r.sensors)[0], r.machine_type, r.operating_mode))
        types, modes = features.category_indices([t for _, t, _ in w], [m for _, _, m in w])
        x, _, _ = features.encode_sequence(np.stack([row for row, _, _ in w]), types, modes)
        logits, _, _ = model(torch.from_numpy(x).unsqueeze(0))
        return float(calibration.ensemble(torch.sigmoid(logits[0, -1:]).numpy())[0])

    timed = readings[-events:]
    with torch.no_grad():
        for r in readings[:-events]:
            windows.setdefault(r.machine_id, deque(maxlen=window)).append(
                (features.raw_row(r.sensors)[0], r.machine_type, r.operating_mode))
        started = time.perf_counter()
        for r in timed:
            score(r)
        seconds = time.perf_counter() - started
    return CaseResult("maintenance", f"naive: LSTM over {window}-reading window", "naive",
                      events=events, answered=events, events_per_s=events / seconds,
                      extra={"window": window, "machines": machines})


def scorer_alone(model_dir: Path, readings: Sequence[SensorReading], batch: int) -> list[CaseResult]:
    """Readings per second of MaintenanceScorer.score_batch on batches of `batch`, no Kafka: as
    served (each model alert explained by integrated gradients while scoring), and the same
    readings without explanations, so the run shows what explanations cost per alert."""
    results = []
    for explain in (True, False):
        scorer = MaintenanceScorer.from_version(_current(model_dir), MaintenanceSettings(), explain=explain)
        started = time.perf_counter()
        alerts = sum(r.alert is not None for chunk in _chunks(readings, batch) for r in scorer.score_batch(chunk))
        seconds = time.perf_counter() - started
        case = f"scorer alone, no Kafka, batches of {batch}" + ("" if explain else ", explanations off")
        results.append(CaseResult("maintenance", case, "scorer", events=len(readings), answered=len(readings),
                                  events_per_s=len(readings) / seconds, extra={"alerts": alerts, "seconds": seconds}))
    served, bare = results
    served.extra["explanation_ms_per_alert"] = 1000 * (served.extra["seconds"] - bare.extra["seconds"]) / max(served.extra["alerts"], 1)
    return results


def memory_case(model_dir: Path, machines: int, readings_per_machine: int, batch: int) -> CaseResult:
    """Scores `readings_per_machine` readings of each of `machines` simulated machines (streamed,
    never all in memory) and reports the scorer's state per machine. The harness's default of 63
    readings fills each machine's explanation ring and wraps it, so every id and checkpoint counts."""
    version = _current(model_dir)
    process = psutil.Process()
    rss_before = process.memory_info().rss
    # Explanations read a machine's history but change no state: skipped, the case is about memory.
    scorer = MaintenanceScorer.from_version(version, MaintenanceSettings(), explain=False)
    total = machines * readings_per_machine
    started = time.perf_counter()
    live = (event.value for topic, event in STREAMS["maintenance"].live(Settings(), 1, machines)
            if event.kind == "reading")
    scored = 0
    for chunk in _chunks_of(live, batch, total):
        scorer.score_batch([SensorReading.model_validate(v) for v in chunk])
        scored += len(chunk)
    seconds = time.perf_counter() - started
    held = scorer.machines
    state = scorer.state_bytes()
    return CaseResult("maintenance", f"memory: {machines:,} machines x {readings_per_machine} readings", "memory",
                      events=scored, answered=scored, events_per_s=scored / seconds,
                      extra={"machines": held, "state_bytes": state, "state_bytes_per_machine": state / max(held, 1),
                             "process_rss_growth_mb": (process.memory_info().rss - rss_before) / 2**20})


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _chunks_of(items: Iterable[Any], size: int, total: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for n, item in enumerate(items):
        if n == total:
            break
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
