"""Predictive maintenance: `sensor-readings` -> `maintenance-predictions`, `alerts`,
`explanations`, and `dead-letters` for bad input; `maintenance-outcomes` (failures, repairs)
start a machine's new life.

The agent only wires the generic pipeline (agents/pipeline.py) to the maintenance scorer; the
model and its per-machine state live in `stream_app.scoring.maintenance`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from agents.drift import DriftSnapshots, DriftTracker
from stream_app.intake import RawMessage
from agents.maintenance_state import MachineStateKeeper
from agents.pipeline import Output, StreamPipeline, answers_in_arrays
from stream_app.audit.chain import AlertChain
from agents.publish import Outbox, take_in
from agents.shared_scorer import SharedScorer
from agents.stream_agent import StreamWiring
from schemas import MaintenanceOutcome, SensorReading
from stream_app import metrics
from stream_app.encoded import EncodedMessage, encode_fields
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer, ScoredReading
from stream_app.settings import Settings
from stream_app.streams.maintenance import MAINTENANCE, drift_values

log = logging.getLogger(__name__)

STREAM = MAINTENANCE.name


class ScorerHandle(SharedScorer[MaintenanceScorer]):
    """Shared by the readings and outcomes agents (their partitions are co-assigned: both
    topics are keyed by machine)."""

    supports_shadow = True

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        super().__init__(MAINTENANCE, settings, lambda: MaintenanceScorer.load(registry, settings.maintenance), registry)
        self.keeper = MachineStateKeeper(settings, self.run)

    def score_shadow(self, shadow: MaintenanceScorer, events: list[SensorReading]) -> list[ScoredReading]:
        # A shadow's alerts are never published: explained only when it serves a share (A/B).
        return shadow.score_batch(events, explain=self.share > 0)


def outputs(settings: Settings) -> Callable[[ScoredReading], Iterator[Output]]:
    topics = settings.topics

    def publish(result: ScoredReading) -> Iterator[Output]:
        fields = result.fields
        prediction = EncodedMessage(encode_fields(fields), fields["event_id"])
        yield Output(topics.maintenance_predictions, fields["machine_id"], prediction, answer=True)
        if result.alert is not None:
            yield Output(topics.alerts, result.alert.entity_id, result.alert)
        if result.explanation is not None:
            yield Output(topics.explanations, result.explanation.alert_id, result.explanation)
        if result.shadow is not None:
            shadow = result.shadow.fields
            yield Output(topics.maintenance_shadow_predictions, shadow["machine_id"],
                         EncodedMessage(encode_fields(shadow, shadow=True), shadow["event_id"]))

    return publish


def decisions(results: Sequence[ScoredReading]) -> tuple[list[str], list[float]]:
    return [r.fields["decision_source"] for r in results], [r.fields["confidence"] for r in results]


class _StatefulPipeline(StreamPipeline[SensorReading, ScoredReading]):
    """Tells the state keeper what each batch changes, and leaves out readings a restored
    machine state already includes."""

    def __init__(self, keeper: MachineStateKeeper, *args: Any) -> None:
        super().__init__(*args)
        self.keeper = keeper

    async def _score(self, events: list[SensorReading], origin: list[RawMessage]) -> Any:
        events, origin = self.keeper.admit(events, origin)
        if not events:
            return [], []
        return await super()._score(events, origin)


def pipeline(
    settings: Settings,
    score: Callable[[list[SensorReading]], list[ScoredReading]],
    outbox: Outbox,
    executor: Any,
    drift_snapshots: Optional[DriftSnapshots] = None,
    fallback: Optional[Callable[[Exception], Callable[[list[SensorReading]], list[ScoredReading]]]] = None,
    keeper: Optional[MachineStateKeeper] = None,
    audit: Optional[AlertChain] = None,
) -> StreamPipeline[SensorReading, ScoredReading]:
    drift = None
    if settings.drift.enabled:
        # With the state hand-over, the detectors move with the machines (exact); else the snapshots topic.
        handed_over = keeper is not None and settings.maintenance.restore_on_assign
        drift = DriftTracker(STREAM, settings.drift, drift_values, MAINTENANCE.distribution,
                             None if handed_over else drift_snapshots)
        if keeper is not None:
            keeper.drift = drift
    args = (STREAM, MAINTENANCE.event_model, settings, score, outputs(settings), outbox, executor, drift, fallback,
            answers_in_arrays(settings, MAINTENANCE.input_topic), audit, decisions)
    return StreamPipeline(*args) if keeper is None else _StatefulPipeline(keeper, *args)


def _apply_outcome(handle: ScorerHandle, outcome: MaintenanceOutcome) -> bool:
    """In the inference thread: the outcome is ground truth for the served and any shadow
    version (`learn`: a failure joined to the machine's last alert, for live accuracy; the
    machine's new life begun). Returns whether the served scorer took it in."""
    taken = False
    for scorer in (handle.serving, handle.shadow):
        if scorer is None:
            continue
        served = scorer is handle.serving
        lead = scorer.alert_lead_hours(outcome.machine_id, outcome.ts) if served else None
        joined = scorer.learn([outcome])[0]
        if joined in ("alerted", "missed"):
            handle.count_incident(scorer.model_version, joined == "alerted")
            if served:
                metrics.OUTCOMES.labels(STREAM, joined).inc()
                if joined == "alerted" and lead is not None:
                    metrics.ALERT_LEAD_HOURS.labels(STREAM).observe(lead)
        taken = joined is not None if served else taken
    return taken


async def apply_outcomes(handle: ScorerHandle, outbox: Outbox, messages: Sequence[RawMessage]) -> int:
    """Failures and repairs start a machine's new life (as in training) and are joined back to
    the alerts before them. Bad outcome messages are dead-lettered like any bad input. Returns
    the number of machines reset."""
    intake = await take_in(messages, MAINTENANCE.truth_model, handle.settings, outbox, STREAM)
    await handle.get()
    reset = 0
    for outcome in intake.events:
        if await handle.run(_apply_outcome, handle, outcome):
            handle.keeper.changed(outcome.machine_id)
            reset += 1
    await outbox.flush()
    return reset


def wiring(settings: Settings, registry: ModelRegistry, drift_snapshots: Optional[DriftSnapshots] = None) -> StreamWiring:
    """What the maintenance stream brings to the generic agent (agents/stream_agent.py): the
    state hand-over of agents/maintenance_state.py around each batch, outcomes as truth."""
    handle = ScorerHandle(registry, settings)
    keeper = handle.keeper
    # Series exist from the start (at zero), so dashboards show 0 rather than "no data".
    for result in ("alerted", "missed"):
        metrics.OUTCOMES.labels(STREAM, result)
    metrics.ALERT_LEAD_HOURS.labels(STREAM)

    def build(outbox: Outbox, audit: Optional[AlertChain]) -> StreamPipeline[SensorReading, ScoredReading]:
        return pipeline(settings, handle.score_batch, outbox, handle.executor, drift_snapshots, handle.fall_back,
                        keeper, audit)

    async def warm(messages: Sequence[RawMessage], assigned: Mapping[int, int]) -> None:
        await keeper.ensure_warm(await handle.get(), messages, assigned)

    async def between(producer: Any) -> None:
        if keeper.snapshot_due():  # between batches: everything applied so far is published
            try:
                await keeper.snapshot(await handle.get(), producer)
            except Exception:  # the state is written next turn; scoring goes on
                log.exception("maintenance: state snapshot failed")

    async def revoked(partitions: set[int]) -> None:
        await keeper.revoked([handle.serving, handle.shadow], partitions)

    async def truths(outbox: Outbox, messages: Sequence[RawMessage]) -> int:
        return await apply_outcomes(handle, outbox, messages)

    return StreamWiring(MAINTENANCE, handle, build, truths=truths, warm=warm, between=between, revoked=revoked)
