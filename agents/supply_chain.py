"""Supply-chain anomalies: `supply-chain-transactions` -> `supply-chain-scores`, `alerts`,
`explanations`, and `dead-letters` for bad input; `supply-chain-verdicts` (confirmed attacks,
cleared shipments) are joined to earlier decisions (live accuracy) and implicate attackers in the
graph.

The agent wires the generic pipeline (agents/pipeline.py) to the supply-chain scorer, plus a
graph follower: a group-less consumer assigned every partition of the transactions and verdicts
topics, so this worker's graph reflects the whole stream and not only the shipments its
partitions carry (why, and how scoring stays lookups: stream_app/scoring/supply_chain.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents import graph_snapshots
from agents.drift import DriftSnapshots, DriftTracker
from agents.graph_snapshots import GraphSnapshots
from stream_app.kafka_io import side_consumer
from stream_app.decoding import Limits, decode_message
from stream_app.intake import RawMessage, limits_from_settings
from agents.pipeline import Output, StreamPipeline, answers_in_arrays
from stream_app.audit.chain import AlertChain
from agents.publish import Outbox, take_in
from agents.shared_scorer import SharedScorer
from agents.stream_agent import StreamWiring
from schemas import SupplyChainTransaction, SupplyChainVerdict
from stream_app import metrics
from stream_app.registry import ModelRegistry
from stream_app.scoring.supply_chain import ScoredTransaction, SupplyChainScorer
from stream_app.features.supply_chain import RobustStats
from stream_app.graph.snapshot import BadSnapshot, GraphSnapshot
from stream_app.graph.state import TransactionGraph
from stream_app.settings import Settings
from stream_app.streams.supply_chain import SUPPLY_CHAIN, drift_values

log = logging.getLogger(__name__)

STREAM = SUPPLY_CHAIN.name
VERDICT_RESULTS = ("confirmed_flagged", "confirmed_missed", "cleared_flagged", "cleared_unflagged")
Score = Callable[[list[SupplyChainTransaction]], list[ScoredTransaction]]


class ScorerHandle(SharedScorer[SupplyChainScorer]):
    """Shared by the scoring agent, the verdicts agent and the graph follower, which all use the
    scorer in its inference thread (the graph is not shared across threads)."""

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.limits = limits_from_settings(settings)  # the follower decodes with the scoring agent's limits
        super().__init__(SUPPLY_CHAIN, settings, lambda: SupplyChainScorer.load(registry, settings.supply_chain), registry)

    supports_shadow = True


class GraphFollower:
    """Reads every partition of the transactions and verdicts topics from the beginning and feeds
    them to the scorer's graph (in its inference thread). `sync()` lets the scoring agent wait
    until the follower has read everything that was in the topics when it asked (less
    `graph_sync_lag_ms`): every partition fetched since (the consumer fetches in the background)
    and read to the high-water mark that fetch reported. Every scoring batch waits for this, so
    it is checked each `poll_ms` rather than once per fetch cycle (which cost batches ~50 ms)."""

    def __init__(self, settings: Settings, handle: ScorerHandle, poll_ms: int = 5,
                 snapshots: Optional[GraphSnapshots] = None) -> None:
        self.settings = settings
        self.handle = handle
        self.snapshots = snapshots  # the shared graph snapshots (agents/graph_snapshots.py)
        self.started_at: dict[TopicPartition, int] = {}  # where reading began (a snapshot's offsets, or 0)
        self.poll_ms = poll_ms
        self.lag_ms = settings.supply_chain.graph_sync_lag_ms
        self.applied = 0  # new transactions applied to the graph
        self.verdicts_read = 0
        self._waiters: list[tuple[float, asyncio.Event]] = []  # (asked at, epoch ms; set when caught up)

    async def sync(self, timeout: float) -> bool:
        """True when the follower caught up within `timeout` seconds (scoring goes on either way)."""
        if timeout <= 0:
            return False
        event = asyncio.Event()
        self._waiters.append((time.time() * 1000.0, event))
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            log.debug("graph follower did not catch up within %.2fs; scoring anyway", timeout)
            return False

    async def run(self, producer: Any = None) -> None:
        """Until cancelled; a failure restarts the consumer after a pause (never the worker).
        `producer`: writes the graph snapshots, when this worker is their writer."""
        while True:
            try:
                await self._follow(producer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supply-chain graph follower failed; restarting in 2 s")
                await asyncio.sleep(2.0)

    async def _start_offsets(self, scorer: SupplyChainScorer) -> dict[str, dict[int, int]]:
        """Where to read from: the latest usable snapshot's offsets, its graph loaded into the
        scorers; {} (everything from the beginning) without one."""
        if self.snapshots is None or not self.settings.supply_chain.graph_from_snapshot or scorer.model_version is None:
            return {}
        try:
            snap = await self.snapshots.read()
        except BadSnapshot as exc:
            graph_snapshots.refused(exc)
            return {}
        except Exception:
            log.exception("supply chain: reading the graph snapshot failed; replaying the topics from the beginning")
            return {}
        if snap is None:
            return {}
        if snap.model_version != scorer.model_version:
            log.info("supply chain: the graph snapshot continues model %s, this worker serves %s; replaying the topics",
                     snap.model_version, scorer.model_version)
            return {}
        handle = self.handle

        def adopt() -> int:
            graph, stats = TransactionGraph.from_state(snap.graph), RobustStats.from_state(snap.stats)
            for version_scorer in (handle.serving, handle.shadow):
                if version_scorer is not None:
                    version_scorer.adopt_graph(graph, stats)
            return graph.nodes

        try:
            nodes = await handle.run(adopt)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            graph_snapshots.refused(BadSnapshot(f"its graph cannot be rebuilt: {type(exc).__name__}: {exc}"))
            return {}
        metrics.STATE_RESTORED.labels(STREAM).inc(nodes)
        log.info("supply chain: graph follower starts from the snapshot of %s (%d nodes, written %.0f s ago)",
                 snap.model_version, nodes, time.time() - snap.written_at)
        return snap.offsets

    async def _snapshot(self, producer: Any, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> None:
        """Between two batches: the graph as it stands with the positions it stands at."""
        assert self.snapshots is not None
        scorer = await self.handle.get()
        if scorer.model_version is None:
            return
        offsets: dict[str, dict[int, int]] = {}
        for tp in partitions:
            offsets.setdefault(tp.topic, {})[tp.partition] = await consumer.position(tp)
        if not self.snapshots.changed(scorer.graph.applied, offsets):
            return  # nothing new since the last one
        graph, stats = await self.handle.run(scorer.graph_state)
        self.snapshots.write(producer, GraphSnapshot(scorer.model_version, offsets, graph, stats, time.time()))

    async def _follow(self, producer: Any = None) -> None:
        topics = self.settings.topics
        scorer = await self.handle.get()  # loads the model (and the graph) before reading
        loop = asyncio.get_running_loop()
        consumer = side_consumer(self.settings, auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            wanted = (topics.supply_chain_transactions, topics.supply_chain_verdicts)
            partitions: list[TopicPartition] = []
            while not partitions:
                await consumer.topics()  # refreshes metadata
                partitions = [TopicPartition(t, p) for t in wanted for p in sorted(consumer.partitions_for_topic(t) or ())]
                if len(partitions) < len(wanted):
                    partitions = []
                    await asyncio.sleep(0.5)
            consumer.assign(partitions)
            start = await self._start_offsets(scorer)
            for tp in partitions:
                offset = start.get(tp.topic, {}).get(tp.partition)
                if offset is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, offset)
                self.started_at[tp] = offset or 0
            log.info("graph follower reads %d partitions of %s%s", len(partitions), ", ".join(wanted),
                     " from the graph snapshot's offsets" if start else "")
            while True:
                batches = await consumer.getmany(timeout_ms=self.poll_ms, max_records=5000)
                transactions = [r.value for tp, rs in batches.items() if tp.topic == wanted[0] for r in rs]
                verdicts = [r.value for tp, rs in batches.items() if tp.topic == wanted[1] for r in rs]
                if transactions:
                    self.applied += await loop.run_in_executor(
                        self.handle.executor, _observe_transactions, scorer, transactions, self.handle.limits)
                if verdicts:
                    await loop.run_in_executor(self.handle.executor, _observe_verdicts, scorer, verdicts, self.handle.limits)
                    self.verdicts_read += len(verdicts)
                if self._waiters:
                    await self._release(consumer, partitions)
                if producer is not None and self.snapshots is not None and self.snapshots.due():
                    await self._snapshot(producer, consumer, partitions)
                scorer = await self.handle.get()  # a new one after a fallback to rules (same graph)
        finally:
            await consumer.stop()

    async def _release(self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> None:
        """Wake the waiters that asked before the last fetch of every partition (plus the lag
        allowed), once every partition is read to the high-water mark of its last fetch. The
        embedded broker under-reports high-water marks after multi-record batches (DESIGN.md
        section 4), so there this can say yes a little early."""
        covered = min((consumer.last_poll_timestamp(tp) or 0 for tp in partitions), default=0) + self.lag_ms
        if not any(asked <= covered for asked, _ in self._waiters):
            return
        for tp in partitions:
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                return
        ready = [event for asked, event in self._waiters if asked <= covered]
        self._waiters = [(asked, event) for asked, event in self._waiters if asked > covered]
        for event in ready:
            event.set()


def _observe_transactions(scorer: SupplyChainScorer, values: Sequence[Optional[bytes]], limits: Limits) -> int:
    """In the inference thread: the follower's records into the graph. Bad ones are skipped here
    (the agents reading these partitions dead-letter them)."""
    return scorer.observe([tx for v in values for tx in decode_message(v, SupplyChainTransaction, limits).events])


def _observe_verdicts(scorer: SupplyChainScorer, values: Sequence[Optional[bytes]], limits: Limits) -> int:
    return scorer.observe_verdicts([v for raw in values for v in decode_message(raw, SupplyChainVerdict, limits).events])


def outputs(settings: Settings) -> Callable[[ScoredTransaction], Iterator[Output]]:
    topics = settings.topics

    def publish(result: ScoredTransaction) -> Iterator[Output]:
        score = result.score
        yield Output(topics.supply_chain_scores, score.shipment_id, score, answer=True)
        if result.shadow is not None:
            shadow = result.shadow.score.model_copy(update={"shadow": True})
            yield Output(topics.supply_chain_shadow_scores, shadow.shipment_id, shadow)
        if result.alert is not None:
            yield Output(topics.alerts, result.alert.entity_id, result.alert)
        if result.explanation is not None:
            yield Output(topics.explanations, result.explanation.alert_id, result.explanation)

    return publish


def decisions(results: Sequence[ScoredTransaction]) -> tuple[list[str], list[float]]:
    return [r.score.decision_source for r in results], [r.score.confidence for r in results]


def pipeline(
    settings: Settings,
    score: Score,
    outbox: Outbox,
    executor: Any,
    drift_snapshots: Optional[DriftSnapshots] = None,
    fallback: Optional[Callable[[Exception], Score]] = None,
    audit: Optional[AlertChain] = None,
) -> StreamPipeline[SupplyChainTransaction, ScoredTransaction]:
    drift = None
    if settings.drift.enabled:
        drift = DriftTracker(STREAM, settings.drift, drift_values, SUPPLY_CHAIN.distribution, drift_snapshots)
    return StreamPipeline(
        STREAM, SUPPLY_CHAIN.event_model, settings, score, outputs(settings), outbox, executor, drift, fallback,
        answers_in_arrays(settings, SUPPLY_CHAIN.input_topic), audit, decisions,
    )


async def apply_verdicts(handle: ScorerHandle, outbox: Outbox, messages: Sequence[RawMessage], follower: bool) -> int:
    """Dead-letter bad verdicts, join good ones to this worker's decisions (live accuracy), and,
    when no follower feeds the graph, implicate attackers in it. Returns the verdicts joined."""
    intake = await take_in(messages, SUPPLY_CHAIN.truth_model, handle.settings, outbox, STREAM)
    scorer = await handle.get()
    loop = asyncio.get_running_loop()

    def join() -> int:
        joined = 0
        for verdict in intake.events:
            if not follower:
                scorer.graph.apply_verdict(verdict)
            result = scorer.join_verdict(verdict)
            if result is not None:
                metrics.OUTCOMES.labels(STREAM, result).inc()
                joined += 1
            for version_scorer in (scorer, handle.shadow):  # live accuracy per version, for the gate
                joined_as = version_scorer.join_verdict(verdict) if version_scorer is not None else None
                if joined_as in ("confirmed_flagged", "confirmed_missed"):
                    handle.count_incident(version_scorer.model_version, joined_as == "confirmed_flagged")
        return joined

    try:
        joined = await loop.run_in_executor(handle.executor, join)
    except Exception:  # ground truth is for measuring: a failure here must not stop the agent
        log.exception("joining %d supply-chain verdicts failed", len(intake.events))
        joined = 0
    await outbox.flush()
    return joined


def wiring(settings: Settings, registry: ModelRegistry, drift_snapshots: Optional[DriftSnapshots] = None) -> StreamWiring:
    """What the supply-chain stream brings to the generic agent (agents/stream_agent.py): the
    graph follower, waited for before each batch, and the shared graph snapshots it reads and
    (on the worker holding partition 0) writes; verdicts as truth."""
    handle = ScorerHandle(registry, settings)
    conf = settings.supply_chain
    for result in VERDICT_RESULTS:  # series at zero from the start
        metrics.OUTCOMES.labels(STREAM, result)

    def build(outbox: Outbox, audit: Optional[AlertChain]) -> StreamPipeline[SupplyChainTransaction, ScoredTransaction]:
        return pipeline(settings, handle.score_batch, outbox, handle.executor, drift_snapshots, handle.fall_back, audit)

    async def truths(outbox: Outbox, messages: Sequence[RawMessage]) -> int:
        return await apply_verdicts(handle, outbox, messages, conf.follow_graph)

    if not conf.follow_graph:
        return StreamWiring(SUPPLY_CHAIN, handle, build, truths=truths)
    snapshots = GraphSnapshots(settings)
    follower = GraphFollower(settings, handle, snapshots=snapshots)

    async def warm(_messages: Sequence[RawMessage], assigned: Mapping[int, int]) -> None:
        snapshots.writer = 0 in assigned
        await follower.sync(conf.graph_sync_timeout_s)

    async def revoked(partitions: set[int]) -> None:
        if 0 in partitions:
            snapshots.writer = False

    async def follow_graph(producer: Any) -> None:
        await follower.run(producer)

    return StreamWiring(SUPPLY_CHAIN, handle, build, truths=truths, warm=warm, revoked=revoked,
                        tasks={"follow_transaction_graph": follow_graph})
