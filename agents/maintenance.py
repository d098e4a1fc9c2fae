"""Predictive maintenance: `sensor-readings` -> `maintenance-predictions`, `alerts`,
`explanations`, and `dead-letters` for bad input.

The agent only decodes, batches, calls the scorer off the event loop and publishes; the model
and its state live in `stream_app.scoring.maintenance`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence

from agents.intake import RawMessage, decode_batch, limits_from_settings
from agents.publish import Outbox
from schemas import MaintenanceOutcome, SensorReading
from stream_app import metrics
from stream_app.decoding import DecodeFailure
from stream_app.deadletter import build_dead_letter
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer, ScoredReading
from stream_app.settings import Settings

log = logging.getLogger(__name__)

STREAM = "maintenance"
SCORING_FAILED = "scoring_failed"


class MaintenancePipeline:
    """One micro-batch at a time: decode, score in the inference thread, publish, wait for the
    broker's acknowledgements. Holds no Kafka client of its own (the outbox is injected)."""

    def __init__(self, settings: Settings, scorer: MaintenanceScorer, outbox: Outbox, executor: ThreadPoolExecutor) -> None:
        self.topics = settings.topics
        self.limits = limits_from_settings(settings)
        self.scorer = scorer
        self.outbox = outbox
        self.executor = executor
        metrics.MODEL_INFO.labels(STREAM, "maintenance", scorer.model_version or "none").set(1)

    async def process(self, messages: Sequence[RawMessage]) -> None:
        metrics.MESSAGES.labels(STREAM).inc(len(messages))
        intake = decode_batch(messages, SensorReading, self.limits)
        for letter in intake.dead_letters:
            await self.outbox.send(self.topics.dead_letters, letter.key, letter)
            metrics.DEAD_LETTERS.labels(STREAM, letter.error_code).inc()
        if intake.dead_letters:
            metrics.EVENTS.labels(STREAM, "dead_letter").inc(len(intake.dead_letters))

        if intake.events:
            results = await self._score(intake.events, intake.origin)
            for result in results:
                await self._publish(result)
            metrics.EVENTS.labels(STREAM, "scored").inc(len(results))

        await self.outbox.flush()
        now = time.time()
        for message in messages:
            if message.timestamp:
                metrics.LATENCY_SECONDS.labels(STREAM).observe(max(0.0, now - message.timestamp))

    async def _score(self, readings: list[SensorReading], origin: list[RawMessage]) -> list[ScoredReading]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self.executor, self.scorer.score_batch, readings)
        except Exception as exc:  # a scorer bug must not kill the agent or lose the input
            log.exception("maintenance scoring failed for a batch of %d readings", len(readings))
            await self._dead_letter_unscored(readings, origin, exc)
            return []
        metrics.INFERENCE_SECONDS.labels(STREAM).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(STREAM).observe(len(readings))
        return results

    async def _dead_letter_unscored(self, readings: list[SensorReading], origin: list[RawMessage], exc: Exception) -> None:
        seen: set[tuple[Optional[int], Optional[int]]] = set()
        for message in origin:
            if (message.partition, message.offset) in seen:
                continue
            seen.add((message.partition, message.offset))
            failure = DecodeFailure(SCORING_FAILED, f"scoring raised {type(exc).__name__}: {exc}")
            letter = build_dead_letter(
                failure, topic=message.topic, partition=message.partition, offset=message.offset,
                key=message.key, raw=message.value,
            )
            await self.outbox.send(self.topics.dead_letters, letter.key, letter)
            metrics.DEAD_LETTERS.labels(STREAM, SCORING_FAILED).inc()
        metrics.EVENTS.labels(STREAM, "dead_letter").inc(len(readings))

    async def _publish(self, result: ScoredReading) -> None:
        prediction = result.prediction
        await self.outbox.send(self.topics.maintenance_predictions, prediction.machine_id, prediction)
        metrics.DECISIONS.labels(STREAM, prediction.decision_source).inc()
        metrics.CONFIDENCE.labels(STREAM).observe(prediction.confidence)
        if result.alert is not None:
            alert = result.alert
            await self.outbox.send(self.topics.alerts, alert.entity_id, alert)
            metrics.ALERTS.labels(alert.kind, alert.severity, alert.decision_source).inc()
        if result.explanation is not None:
            await self.outbox.send(self.topics.explanations, result.explanation.alert_id, result.explanation)


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
            log.info("maintenance scorer ready: model version %s", scorer.model_version or "none (rules only)")
        return await self._scorer


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
        pipeline = MaintenancePipeline(settings, await handle.get(), Outbox(app.producer), handle.executor)
        async for events in stream.take_events(conf.batch_max, within=conf.batch_within_s):
            await pipeline.process([RawMessage.from_faust(e) for e in events])

    @app.agent(outcomes, name="maintenance-outcomes", concurrency=1)
    async def reset_on_outcomes(stream: Any) -> None:
        outbox = Outbox(app.producer)
        async for events in stream.take_events(100, within=0.1):
            await apply_outcomes(handle, outbox, [RawMessage.from_faust(e) for e in events])

    return handle
