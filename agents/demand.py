"""Demand forecasting: `sales-events` (key sku/market) -> `demand-forecasts` (one per SKU x market
per closed day), `alerts` and `explanations`, `dead-letters` for bad input; the known future
covariates come from `demand-calendar` (and DEMAND__CALENDAR_FILE).

The agent wires the generic pipeline (agents/pipeline.py) to the demand scorer
(stream_app.scoring.demand), which keeps each input partition's daily totals. Around it:

* Calendar: small, and every worker needs all of it, whatever sales partitions it owns. Each
  worker reads every partition of `demand-calendar` from the beginning with its own group-less
  consumer (a Faust GlobalTable would add a changelog and its recovery gap on the embedded
  broker, for data that already lives in a topic), and keeps following it. The sales agent
  waits up to DEMAND__CALENDAR_WAIT_S for the first pass (until a poll comes back empty), so
  the first forecasts see the calendar. Bad entries become dead letters; since every worker
  reads them, each may send one, with the same deterministic dead_letter_id.
* State on (re)assignment: the first batch from a partition this process does not hold (at
  start, or after a rebalance moved it here) triggers a replay of that partition's retained
  sales up to the batch's first offset, i.e. up to what the previous owner committed: the
  scorer rebuilds daily totals, duplicate set and watermark without publishing (those
  forecasts were published before the offsets were committed). A revoked partition's state
  is dropped (Faust rebalances eagerly: every rebalance revokes and replays what a worker
  holds). Exact on Apache Kafka and on the embedded broker (it reads by fetch, never by the
  end offsets the embedded broker gets wrong), as long as retention keeps the history window.
  Not rebuilt: the recent forecasts, so live accuracy, interval and shift alerts of the
  rebuilt series resume one day (7-day checks: a week) after the replay, and alert cooldowns
  start afresh.
* Per event the scorer returns what happened to it; a day's forecasts ride on the event whose
  time closed the day, so they are published, and acknowledged by the broker, before that
  event's offset is committed (at-least-once; ids are deterministic).
* Shadow: when the registry names a CANDIDATE, it forecasts beside the served version at every
  day close, on the same daily histories (shared, not copied: the candidate keeps only its own
  forecast memory), and its forecasts go to `demand-shadow-forecasts` tagged `"shadow": true`,
  never as forecasts or alerts. Each realised day checks both versions' forecasts of it, on the
  points both made, into live counters per version (wape, pinball, coverage over `evaluated`
  forecast days) that the promotion gate compares. Promoting the candidate hands its model and
  forecast memory to the served scorer in place (`DemandScorer.adopt`): warm, histories kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from stream_app.kafka_io import read_range, side_consumer
from stream_app.intake import RawMessage, decode_batch, limits_from_settings
from agents.drift import DriftSnapshots, DriftTracker
from agents.pipeline import Output, StreamPipeline
from stream_app.audit.chain import AlertChain
from agents.publish import Outbox, take_in
from agents.shared_scorer import LiveCounts, SharedScorer
from agents.stream_agent import StreamWiring
from schemas import CalendarEntry, SalesEvent
from stream_app import metrics
from stream_app.deadletter import build_dead_letter
from stream_app.decoding import DecodeFailure
from stream_app.lifecycle.live import LiveStats
from stream_app.registry import ModelRegistry
from stream_app.scoring.demand import Accuracy, DemandScorer, EventResult
from stream_app.settings import Settings
from stream_app.streams.demand import DEMAND
from stream_app.training.demand_metrics import HORIZON_BUCKETS

log = logging.getLogger(__name__)

STREAM = DEMAND.name
REPLAY_BATCH = 2000
REPLAY_STALL_S = 60.0  # no record for this long while replaying: give up on the rest
Scored = tuple[EventResult, RawMessage]


@dataclasses.dataclass
class DemandLiveCounts(LiveCounts):
    """A version's live counters: forecasts made (`scored`), alerts raised (or, in shadow, that
    would have been), and its forecast days checked against realised units."""

    evaluated: int = 0  # forecast days (one horizon day of one forecast) whose units are known
    covered: float = 0.0  # of those, P10 <= units <= P90
    abs_error: float = 0.0  # sum |units - P50|
    pinball: float = 0.0  # sum of the three quantiles' pinball losses
    units: float = 0.0  # realised units

    def add(self, acc: Accuracy) -> None:
        self.evaluated += int(acc.forecasts.sum())
        self.covered += float(acc.covered.sum())
        self.abs_error += float(acc.abs_error.sum())
        self.pinball += float(acc.pinball.sum())
        self.units += float(acc.units.sum())

    def metrics(self) -> dict[str, float]:
        """As training measures them (stream_app.training.demand_metrics): WAPE and weighted
        pinball per realised unit, coverage of P10-P90."""
        out: dict[str, float] = {}
        if self.units > 0:
            out["wape"] = self.abs_error / self.units
            out["pinball"] = self.pinball / (3 * self.units)
        if self.evaluated:
            out["coverage"] = self.covered / self.evaluated
        return out


class DemandHandle(SharedScorer[DemandScorer]):
    """The stream's scorer (loaded once, used only in its inference thread, following the
    registry: a promoted version takes over the daily histories in place), the partitions
    whose state it holds, the calendar's readiness and the live-accuracy totals."""

    # A candidate forecasts beside the served version at each day close, on its histories.
    supports_shadow = True

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        super().__init__(DEMAND, settings, self._load, registry)
        self.warm: set[int] = set()
        self.calendar_read = asyncio.Event()
        # since start, per horizon day: checked, covered, |error|, pinball, realised units
        self.accuracy = np.zeros((5, 0))

    # --- shadow and live accuracy (inference thread, unless said otherwise) -------------------
    def score_batch(self, events: list[SalesEvent], clocks: Optional[list[int]] = None) -> list[EventResult]:
        return self.score_with(self.serving, events, clocks)

    def score_with(self, scorer: Optional[DemandScorer], events: list[SalesEvent],
                   clocks: Optional[list[int]] = None) -> list[EventResult]:
        """Score with the served scorer and, beside it inside each day close, the shadow (the
        scorer catches the shadow's failures: the served results never depend on it); count
        both versions' live figures. `clocks`: each event's input partition."""
        assert scorer is not None
        scorer.candidate = shadow = self.shadow
        results = scorer.score_batch(events, clocks)
        self._count(scorer.model_version, results)
        if shadow is not None:
            self._count(shadow.model_version, [r.shadow for r in results if r.shadow is not None])
        return results

    def score_shadow(self, shadow: DemandScorer, events: list[Any]) -> list[Any]:
        raise NotImplementedError("a demand shadow forecasts inside the served scorer's day close (score_with)")

    def _count(self, version: Optional[str], results: list[Any]) -> None:
        """Each forecast to the version that made it (a model dropped mid-batch leaves the rest
        to the rules), each check of a realised day to the version whose forecasts it checked."""
        for r in results:
            for fr in r.forecasts:
                counts = self._counts(fr.forecast.model_version)
                counts.scored += 1
                counts.alerts += len(fr.alerts) + len(fr.would_alert)
            for acc in r.live:
                self._counts(acc.version).add(acc)

    def _counts(self, version: Optional[str]) -> DemandLiveCounts:
        counts = self.live.get(version)
        if not isinstance(counts, DemandLiveCounts):
            counts = DemandLiveCounts(**dataclasses.asdict(counts)) if counts is not None else DemandLiveCounts()
            self.live[version] = counts
        return counts

    def take_over_shadow(self, old: DemandScorer) -> DemandScorer:
        """The served scorer adopts the promoted shadow's model and forecast memory in place
        (the daily histories were shared all along), so the pipeline, the calendar reader and
        replays keep the one scorer."""
        shadow = self.shadow
        assert shadow is not None
        old.adopt(shadow)
        self.shadow, self.share = None, 0.0
        return old

    def live_stats(self, version: str, counts: LiveCounts, since: str) -> LiveStats:
        """A version's counters over the current window: forecasts checked (`evaluated`) and
        the metrics the gate compares for demand (wape, pinball; coverage to read)."""
        counts = self._counts(version)
        return LiveStats(version=version, since=since, scored=counts.scored, alerts=counts.alerts,
                         evaluated=counts.evaluated, metrics=counts.metrics())

    def _load(self) -> DemandScorer:
        scorer = DemandScorer.load(self.registry, self.settings.demand)
        path = self.settings.demand.calendar_file
        if path is not None:
            from stream_app.training.demand_data import load_calendar

            try:
                loaded = load_calendar(path)
                scorer.update_calendar(loaded.records)
                log.info("demand calendar file: %s", loaded.summary())
            except Exception as exc:  # a bad file must not stop the stream: the topic may have it
                log.error("demand calendar file %s not loaded: %s", path, exc)
        return scorer

    # --- calendar -----------------------------------------------------------------------------
    async def follow_calendar(self, outbox: Outbox, retry_s: float = 5.0) -> None:
        """Read every partition of the calendar topic from the beginning, then keep following;
        on a failure start over (entries replace themselves by event_id, so re-reading is safe)."""
        while True:
            try:
                await self._read_calendar(outbox)
            except asyncio.CancelledError:
                raise
            except Exception:  # the stream goes on with the calendar it has
                log.exception("demand calendar reader failed; starting over in %.0f s", retry_s)
                self.calendar_read.set()
                await asyncio.sleep(retry_s)

    async def _read_calendar(self, outbox: Outbox) -> None:
        s = self.settings
        scorer = await self.get()
        consumer = side_consumer(s, s.topics.demand_calendar, auto_offset_reset="earliest")
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                if not batches:
                    self.calendar_read.set()
                    continue
                messages = [RawMessage(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp / 1000 if r.timestamp else None)
                            for records in batches.values() for r in records]
                intake = await take_in(messages, CalendarEntry, s, outbox, STREAM)
                await outbox.flush()
                if intake.events:
                    n = await self.run(scorer.update_calendar, intake.events)
                    log.info("demand calendar: %d entries applied (%d in all)", n, len(scorer.calendar))
        finally:
            await consumer.stop()

    async def calendar_ready(self) -> None:
        try:
            await asyncio.wait_for(self.calendar_read.wait(), self.settings.demand.calendar_wait_s)
        except asyncio.TimeoutError:
            log.warning("demand: calendar not read within %.0f s; forecasting without waiting", self.settings.demand.calendar_wait_s)

    # --- partition state ----------------------------------------------------------------------
    async def ensure_warm(self, messages: Sequence[RawMessage], assigned: Optional[Mapping[int, int]] = None) -> None:
        """Replay each partition this process does not hold yet, up to its first offset here:
        those of `messages`, and every one in `assigned` (partition -> the offset its records
        will start at), all at once."""
        first = {p: offset for p, offset in (assigned or {}).items() if p not in self.warm}
        for m in messages:
            if m.partition is not None and m.partition not in self.warm and m.offset is not None:
                first[m.partition] = min(first.get(m.partition, m.offset), m.offset)
        self.warm.update(first)
        if self.settings.demand.replay_on_assign:
            topic = self.settings.topics.sales_events
            await asyncio.gather(*(self._replay_logged(topic, p, end) for p, end in sorted(first.items()) if end > 0))

    async def _replay_logged(self, topic: str, partition: int, end: int) -> None:
        try:
            counted = await self._replay(topic, partition, end)
            log.info("demand: partition %d state rebuilt from %d retained sales events", partition, counted)
        except Exception:  # forecasts go on from what the partition brings from now on
            log.exception("demand: replay of partition %d failed; its series start with a partial history", partition)

    async def _replay(self, topic: str, partition: int, end: int) -> int:
        """Apply the partition's retained sales below `end`, in order (when the range ends
        short: stream_app.kafka_io.read_range)."""
        scorer = await self.get()
        limits = limits_from_settings(self.settings)
        counted = 0
        async for records in read_range(self.settings, topic, partition, None, end, STREAM, REPLAY_STALL_S, REPLAY_BATCH):
            raw = [RawMessage(r.topic, r.partition, r.offset, r.key, r.value) for r in records]
            events = decode_batch(raw, SalesEvent, limits).events  # bad ones were dead-lettered the first time
            counted += await self.run(scorer.replay, events, [partition] * len(events))
        return counted

    async def revoked(self, partitions: set[int]) -> None:
        scorer = await self.get()
        for p in partitions & self.warm:
            self.warm.discard(p)
            await self.run(self._drop_partition, scorer, p)

    def _drop_partition(self, scorer: DemandScorer, partition: int) -> None:
        scorer.candidate = self.shadow  # the shadow's forecast memory of it goes too
        scorer.drop_clock(partition)

    # --- live accuracy ------------------------------------------------------------------------
    def record_accuracy(self, acc: Accuracy) -> None:
        stack = np.stack([acc.forecasts, acc.covered, acc.abs_error, acc.pinball, acc.units]).astype(np.float64)
        if self.accuracy.shape != stack.shape:
            self.accuracy = np.zeros_like(stack)
        self.accuracy += stack
        for h in np.flatnonzero(acc.forecasts):
            label = str(h + 1)
            metrics.DEMAND_CHECKED.labels(label).inc(float(acc.forecasts[h]))
            metrics.DEMAND_COVERED.labels(label).inc(float(acc.covered[h]))
            metrics.DEMAND_ABS_ERROR.labels(label).inc(float(acc.abs_error[h]))
            metrics.DEMAND_PINBALL.labels(label).inc(float(acc.pinball[h]))
            metrics.DEMAND_REALIZED.labels(label).inc(float(acc.units[h]))
        for lo, hi in HORIZON_BUCKETS:
            n, covered, err, _, units = self.accuracy[:, lo - 1 : hi].sum(axis=1)
            if n:
                metrics.DEMAND_COVERAGE.labels(f"{lo}-{hi}").set(covered / n)
            if units:
                metrics.DEMAND_WAPE.labels(f"{lo}-{hi}").set(err / units)


class _PartitionedPipeline(StreamPipeline[Any, Scored]):
    """Hands the scorer each event with the message it came from: the scorer keeps state per
    input partition, and an event it rejects becomes a dead letter of that message."""

    async def _score(self, events: list[Any], origin: list[RawMessage]) -> Any:
        return await super()._score(list(zip(events, origin)), origin)


def _item_index(message: RawMessage, event_id: str) -> Optional[int]:
    """Position of the event in a gateway array message (None for a single-event message)."""
    try:
        value = json.loads(message.value or b"")
    except ValueError:
        return None
    if isinstance(value, list):
        return next((i for i, v in enumerate(value) if isinstance(v, dict) and v.get("event_id") == event_id), None)
    return None


def outputs(settings: Settings, handle: DemandHandle) -> Any:
    topics = settings.topics

    def publish(scored: Scored) -> Iterator[Output]:
        result, message = scored
        metrics.DEMAND_SALES.labels(result.outcome).inc()
        if result.rejection is not None:
            failure = DecodeFailure(result.rejection.code, result.rejection.message, _item_index(message, result.event_id))
            letter = build_dead_letter(failure, topic=message.topic, partition=message.partition, offset=message.offset,
                                       key=message.key, raw=message.value)
            metrics.DEAD_LETTERS.labels(STREAM, result.rejection.code).inc()
            yield Output(topics.dead_letters, letter.key, letter)
        for acc in result.accuracy:
            handle.record_accuracy(acc)
        if result.failed_days:
            metrics.DEMAND_FAILED_CLOSES.inc(len(result.failed_days))
        for fr in result.forecasts:
            f = fr.forecast
            metrics.DECISIONS.labels(STREAM, f.decision_source).inc()
            metrics.CONFIDENCE.labels(STREAM).observe(f.confidence)
            yield Output(topics.demand_forecasts, f.series_id, f)
            for alert in fr.alerts:
                yield Output(topics.alerts, alert.entity_id, alert)
            for explanation in fr.explanations:
                yield Output(topics.explanations, explanation.alert_id, explanation)
        if result.shadow is not None:  # a candidate's forecasts: tagged, never alerts
            for fr in result.shadow.forecasts:
                shadow = fr.forecast.model_copy(update={"shadow": True})
                yield Output(topics.demand_shadow_forecasts, shadow.series_id, shadow)

    return publish


def drift_values(pairs: Sequence[tuple[SalesEvent, RawMessage]], results: Sequence[Scored]) -> dict[str, list[float]]:
    """The declaration's drift values (stream_app/streams/demand.py), here on the pipeline's
    (event, message) pairs."""
    return DEMAND.drift_values([event for event, _ in pairs], [result for result, _ in results])


def pipeline(
    settings: Settings, scorer: DemandScorer, handle: DemandHandle, outbox: Outbox, drift_snapshots: Optional[DriftSnapshots] = None,
    audit: Optional[AlertChain] = None,
) -> StreamPipeline[Any, Scored]:
    def score(pairs: list[tuple[SalesEvent, RawMessage]]) -> list[Scored]:
        # The served scorer stays one object across switches (use_model, adopt); `scorer` is it,
        # or a scorer of its own where the handle was never started (tests).
        served = handle.serving or scorer
        results = handle.score_with(served, [event for event, _ in pairs], [message.partition or 0 for _, message in pairs])
        metrics.DEMAND_SERIES.set(served.series_count())
        return [(result, message) for result, (_, message) in zip(results, pairs)]

    drift = None
    if settings.drift.enabled:
        drift = DriftTracker(STREAM, settings.drift, drift_values, DEMAND.distribution, drift_snapshots)
    return _PartitionedPipeline(STREAM, DEMAND.event_model, settings, score, outputs(settings, handle), outbox, handle.executor, drift,
                                audit=audit)


def wiring(settings: Settings, registry: ModelRegistry, drift_snapshots: Optional[DriftSnapshots] = None) -> StreamWiring:
    """What the demand stream brings to the generic agent (agents/stream_agent.py): the
    calendar reader, waited for before the first batch; each partition's replay before its
    first batch here; its state dropped when it moves away. No truth topic: sales are the truth."""
    handle = DemandHandle(registry, settings)

    def build(outbox: Outbox, audit: Optional[AlertChain]) -> StreamPipeline[Any, Scored]:
        assert handle.serving is not None  # the generic agent loads the scorer first
        return pipeline(settings, handle.serving, handle, outbox, drift_snapshots, audit)

    async def follow_calendar(producer: Any) -> None:
        await handle.follow_calendar(Outbox(producer))

    return StreamWiring(DEMAND, handle, build, ready=handle.calendar_ready, warm=handle.ensure_warm,
                        revoked=handle.revoked, tasks={"follow_demand_calendar": follow_calendar})
