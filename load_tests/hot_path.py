"""The maintenance agent's per-reading costs, in process, each against its baseline in the same run:

* decoding: the fast path (strict validation straight from the bytes) against the checked path
  alone (`json.loads` + validation), single-reading and gateway messages;
* explanations: a batch's model alerts explained together (`explain_model_alerts`) against the
  same alerts explained one by one;
* garbage collection: one full pass over what is loaded by then (libraries, torch, the inputs),
  which a worker spares itself by freezing it (agents/shared_scorer.py);
* the agent's whole pipeline in process (decode to serialized outputs, acknowledged at once),
  gateway and single-reading messages;
* drift: the stream's detectors fed each scored batch's values (per reading), as the agent
  feeds them, all readings into one partition's detectors: the steady state, where the sampled
  distribution test (KSWIN) runs on full windows. A worker's partitions each reach it after
  ~4,000 of their readings;
* the distribution test alone (`ks_two_sample`, its exact p-values from a table) against scipy's
  `ks_2samp`, which River's KSWIN calls, on the same pairs of 50 values.

    python -m load_tests.hot_path [--readings 25000] [--machines 2000] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from agents.drift import DriftTracker
from agents.maintenance import drift_values
from load_tests.loadgen import simulate
from schemas import SensorReading
from stream_app.decoding import Limits, decode_checked, decode_message
from stream_app.intake import RawMessage
from stream_app.registry import ModelRegistry
from stream_app.scoring.explain import ReplayedAlert, explain_model_alerts
from stream_app.scoring.maintenance import MODEL_NAME, CalibratedModel, MaintenanceScorer
from stream_app.settings import MaintenanceSettings, Settings

BATCH = 500  # readings per scored batch, as a worker takes them from a backlog


class _Capturing(MaintenanceScorer):
    """Keeps what each batch's model alerts replay, to explain them again outside the scorer."""

    bursts: list[list[ReplayedAlert]]

    def _explain_models(self, b: Any) -> None:
        if b.replays:
            self.bursts.append(list(b.replays.values()))
        super()._explain_models(b)


def _us_per(n: int, fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return 1e6 * (time.perf_counter() - started) / max(n, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=25_000)
    parser.add_argument("--machines", type=int, default=2_000)
    parser.add_argument("--model-dir", type=Path, default=Path("model_store"))
    args = parser.parse_args()

    torch.set_num_threads(1)  # as a worker runs its models (stream_app/worker.py)
    values = [v for field, v, _ in simulate("maintenance", args.readings, args.machines) if field == "sensor_readings"]
    single = [json.dumps(v).encode() for v in values]
    gateway = [json.dumps(values[i : i + 100]).encode() for i in range(0, len(values), 100)]
    limits, now = Limits(), datetime.now(timezone.utc)
    print(f"{len(values):,} simulated readings of {args.machines:,} machines")
    # As in a worker (agents/shared_scorer.py): what is loaded is frozen, so the collector's full
    # passes do not rescan it (without, they tripled the decoding figures here).
    started = time.perf_counter()
    gc.collect()
    print(f"a full garbage collection over the {len(gc.get_objects()):,} objects loaded: "
          f"{1000 * (time.perf_counter() - started):.0f} ms (frozen from here on, as in a worker)")
    gc.freeze()
    for label, messages in (("single-reading messages", single), ("gateway messages of 100", gateway)):
        checked = _us_per(len(values), lambda: [decode_checked(m, SensorReading, limits, now) for m in messages])
        fast = _us_per(len(values), lambda: [decode_message(m, SensorReading, limits, now) for m in messages])
        print(f"decode, {label}: {fast:.1f} us a reading (checked path alone: {checked:.1f})")

    version = ModelRegistry(args.model_dir).current(MODEL_NAME)
    if version is None:
        raise SystemExit(f"no {MODEL_NAME} model in {args.model_dir}: run `stream-app train maintenance` first")
    scorer = _Capturing.from_version(version, MaintenanceSettings())
    scorer.bursts = []
    readings = [SensorReading.model_validate(v) for v in values]
    drift_tracker = DriftTracker("maintenance", Settings().drift, drift_values, ("failure_probability", "confidence"))
    drift_tracker.ensure({0})
    one_partition = [RawMessage("sensor-readings", 0, None, None, None)] * BATCH
    scoring = drift = 0.0
    for i in range(0, len(readings), BATCH):
        batch = readings[i : i + BATCH]
        started = time.perf_counter()
        results = scorer.score_batch(batch)
        fed = time.perf_counter()
        drift_tracker.observe(batch, results, one_partition)
        scoring, drift = scoring + fed - started, drift + time.perf_counter() - fed
    print(f"score (with explanations): {1e6 * scoring / len(readings):.1f} us a reading; "
          f"drift: {1e6 * drift / len(readings):.1f} us a reading")
    for label, messages in (("gateway messages of 100", gateway), ("single-reading messages", single)):
        print(f"the agent's whole pipeline, {label}: {whole_pipeline(version, values, messages):.1f} us a reading "
              "(best of 3)")

    loaded = scorer._model
    assert loaded is not None
    model = loaded.model if loaded.calibration.identity else CalibratedModel(loaded.model, loaded.calibration).eval()
    alerts = sum(map(len, scorer.bursts))
    if not alerts:
        print("no model alerts in these readings: nothing to explain")
        return

    def explain(groups: list[list[ReplayedAlert]]) -> None:
        for group in groups:
            explain_model_alerts(model, loaded.features, loaded.horizon_hours, group)

    together = _us_per(alerts, lambda: explain(scorer.bursts)) / 1000
    alone = _us_per(alerts, lambda: explain([[a] for burst in scorer.bursts for a in burst])) / 1000
    print(f"explanations, {alerts} model alerts in {len(scorer.bursts)} batches of {BATCH}: {together:.2f} ms an alert "
          f"explained with its batch's others, {alone:.2f} ms one by one")
    ks_tests()


class _Acknowledging:
    """A producer that acknowledges every send at once: the pipeline's own cost, without Kafka."""

    async def send(self, *_: Any) -> "asyncio.Future[None]":
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def whole_pipeline(version: Any, values: list[Any], messages: list[bytes], rounds: int = 3) -> float:
    """us a reading through the maintenance agent's pipeline (agents/pipeline.py: decode,
    dead-letter check, score in the inference thread, drift, outputs, serialization, sends), in
    batches of about BATCH readings, each round with a fresh scorer; the best round."""
    from agents.maintenance import pipeline
    from agents.publish import Outbox

    settings = Settings()
    per_batch = max(1, BATCH * len(messages) // len(values))
    raw = [RawMessage("sensor-readings", 0, i, None, m) for i, m in enumerate(messages)]
    best = float("inf")
    with ThreadPoolExecutor(1) as executor:
        for _ in range(rounds):
            scorer = MaintenanceScorer.from_version(version, settings.maintenance)
            run = pipeline(settings, scorer.score_batch, Outbox(_Acknowledging()), executor)

            async def all_batches() -> None:
                for i in range(0, len(raw), per_batch):
                    await run.process(raw[i : i + per_batch])

            started = time.perf_counter()
            asyncio.run(all_batches())
            best = min(best, time.perf_counter() - started)
    return 1e6 * best / len(values)


def ks_tests(n: int = 2000) -> None:
    """Drift's distribution test (stream_app/drift.py, 50 against 50 values) against scipy's
    ks_2samp, which River's KSWIN calls, on the same samples."""
    from scipy import stats

    from stream_app.drift import ks_two_sample

    rng = np.random.default_rng(0)
    pairs = [(rng.normal(0, 1, 50).tolist(), rng.normal(0.3, 1, 50).tolist()) for _ in range(n)]
    ks_two_sample(*pairs[0])  # its p-value table is built once, on first use
    table = _us_per(n, lambda: [ks_two_sample(a, b) for a, b in pairs])
    scipy_us = _us_per(n, lambda: [stats.ks_2samp(a, b, method="auto") for a, b in pairs])
    print(f"drift's distribution test: {table:.1f} us a test (scipy's ks_2samp: {scipy_us:.1f})")


if __name__ == "__main__":
    main()
