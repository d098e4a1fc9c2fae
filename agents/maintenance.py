"""Predictive maintenance: `sensor-readings` -> `maintenance-predictions`, `alerts`,
`explanations`, and `dead-letters` for bad input; `maintenance-outcomes` (failures, repairs)
start a machine's new life.

The agent only wires the generic pipeline (agents/pipeline.py) to the maintenance scorer; the
model and its per-machine state live in `stream_app.scoring.maintenance`.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Optional, Sequence

from agents.intake import RawMessage, decode_batch, limits_from_settings
from agents.pipeline import Output, StreamPipeline
from agents.publish import Outbox
from schemas import MaintenanceOutcome, SensorReading
from stream_app import metrics
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer, ScoredReading
from stream_app.settings import Settings

log = logging.getLogger(__name__)

STREAM = "maintenance"


class ScorerHandle:
    """The stream's one scorer, loaded once in the inference thread and shared by the readings
    and outcomes agents (their partitions are co-assigned: both topics are keyed by machine)."""

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        # One inference thread: the scorer's per-machine state is not shared between threads,
        # and a single thread keeps each machine's readings in order.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maintenance-scoring")
        self._scorer: Optional[asyncio.Future[MaintenanceScorer]] = None

    async def get(self) -> MaintenanceScorer:
        if self._scorer is None:
            loop = asyncio.get_running_loop()
            self._scorer = loop.run_in_executor(self.executor, MaintenanceScorer.load, self.registry, self.settings.maintenance)
            scorer = await self._scorer
            metrics.MODEL_INFO.labels(STREAM, "maintenance", scorer.model_version or "none").set(1)
            log.info("maintenance scorer ready: model version %s", scorer.model_version or "none (rules only)")
        return await self._scorer


def outputs(settings: Settings) -> Any:
    topics = settings.topics

    def publish(result: ScoredReading) -> Iterator[Output]:
        prediction = result.prediction
        metrics.DECISIONS.labels(STREAM, prediction.decision_source).inc()
        metrics.CONFIDENCE.labels(STREAM).observe(prediction.confidence)
        yield Output(topics.maintenance_predictions, prediction.machine_id, prediction)
        if result.alert is not None:
            yield Output(topics.alerts, result.alert.entity_id, result.alert)
        if result.explanation is not None:
            yield Output(topics.explanations, result.explanation.alert_id, result.explanation)

    return publish


def pipeline(settings: Settings, scorer: MaintenanceScorer, outbox: Outbox, executor: Any) -> StreamPipeline[SensorReading, ScoredReading]:
    return StreamPipeline(STREAM, SensorReading, settings, scorer.score_batch, outputs(settings), outbox, executor)


async def apply_outcomes(handle: ScorerHandle, outbox: Outbox, messages: Sequence[RawMessage]) -> int:
    """Failures and repairs start a machine's new life (as in training). Bad outcome messages
    are dead-lettered like any bad input. Returns the number of machines reset."""
    intake = decode_batch(messages, MaintenanceOutcome, limits_from_settings(handle.settings))
    for letter in intake.dead_letters:
        await outbox.send(handle.settings.topics.dead_letters, letter.key, letter)
        metrics.DEAD_LETTERS.labels(STREAM, letter.error_code).inc()
    scorer = await handle.get()
    loop = asyncio.get_running_loop()
    reset = 0
    for outcome in intake.events:
        reset += await loop.run_in_executor(handle.executor, scorer.reset_machine, outcome.machine_id, outcome.ts)
    await outbox.flush()
    return reset


def register(app: Any, settings: Settings, registry: ModelRegistry) -> ScorerHandle:
    """Declare the maintenance agents on `app`."""
    topics = settings.topics
    readings = app.topic(topics.sensor_readings, key_serializer="raw", value_serializer="raw")
    outcomes = app.topic(topics.maintenance_outcomes, key_serializer="raw", value_serializer="raw")
    handle = ScorerHandle(registry, settings)
    conf = settings.maintenance

    # concurrency=1: more would commit offsets past unprocessed messages (faust-streaming #606).
    @app.agent(readings, name="maintenance-scorer", concurrency=1)
    async def score_sensor_readings(stream: Any) -> None:
        run = pipeline(settings, await handle.get(), Outbox(app.producer), handle.executor)
        async for events in stream.take_events(conf.batch_max, within=conf.batch_within_s):
            await run.process([RawMessage.from_faust(e) for e in events])

    @app.agent(outcomes, name="maintenance-outcomes", concurrency=1)
    async def reset_on_outcomes(stream: Any) -> None:
        outbox = Outbox(app.producer)
        async for events in stream.take_events(100, within=0.1):
            await apply_outcomes(handle, outbox, [RawMessage.from_faust(e) for e in events])

    return handle
