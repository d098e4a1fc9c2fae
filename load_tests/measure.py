"""What the harness measures while a case runs, and the figures it derives afterwards.

Live (cheap, so the harness takes little CPU from the workers): an output collector that keeps
each output record with the time it was in hand, and a monitor that samples the processes' CPU
and RSS (psutil) and the group's committed offsets every ~0.5 s. Afterwards: outputs matched to
the events they answer, throughput, latency percentiles and lag over time.

Lag: the embedded broker reports wrong end offsets (ListOffsets) after multi-record batches,
so lag is never computed from them. Two series instead: events produced minus events answered
by outputs (exact, per output), and events produced minus the events before the group's
committed offsets (Faust commits every ~2.8 s, so that one is a staircase).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Optional, Sequence

import numpy as np
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from load_tests.loadgen import Feed, Sent
from stream_app.scoring.demand_aggregation import DAY_S

SAMPLE_INTERVAL_S = 0.5
_EPOCH = date(1970, 1, 1)


# --- live -------------------------------------------------------------------------------------
class OutputCollector:
    """Reads every partition of an output topic from the beginning, without a group."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        # Short fetch waits: the time a record is in hand is the end of end-to-end latency.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.records: list[tuple[float, float, bytes]] = []  # (in hand, output timestamp, value)
        self._task: Optional[asyncio.Task[None]] = None

    @property
    def count(self) -> int:
        return len(self.records)

    async def start(self) -> None:
        await self._consumer.start()
        partitions: set[int] = set()
        while not partitions:
            await self._consumer.topics()  # refreshes metadata
            partitions = self._consumer.partitions_for_topic(self.topic) or set()
            if not partitions:
                await asyncio.sleep(0.2)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.time()
            for records in batches.values():
                self.records.extend((now, r.timestamp / 1000.0, r.value) for r in records)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


@dataclass
class Sample:
    t: float
    cpu_s: dict[str, float]
    rss: dict[str, int]
    committed: dict[int, int]


class Monitor:
    """Samples named processes (CPU seconds, RSS) and a group's committed offsets on one topic."""

    def __init__(self, bootstrap: str, processes: dict[str, int], group: str, topic: str, partitions: int) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in processes.items()}
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        # A consumer with the group's id that never joins: committed() is an OffsetFetch only.
        self._offsets = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        self.samples: list[Sample] = []
        self._task: Optional[asyncio.Task[None]] = None

    async def start(self) -> None:
        await self._offsets.start()
        self._task = asyncio.create_task(self._run())

    def committed_total(self) -> int:
        return sum(self.samples[-1].committed.values()) if self.samples else 0

    async def sample(self) -> Sample:
        cpu, rss = {}, {}
        for name, proc in self._procs.items():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu[name], rss[name] = times.user + times.system, proc.memory_info().rss
            except psutil.Error:  # exited: its last sample stands
                pass
        committed = {}
        for tp in self._tps:
            offset = await self._offsets.committed(tp)
            committed[tp.partition] = offset or 0
        sample = Sample(time.time(), cpu, rss, committed)
        self.samples.append(sample)
        return sample

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.sample()  # the final CPU figures
        await self._offsets.stop()


# --- matching outputs to inputs --------------------------------------------------------------
@dataclass(slots=True)
class Answer:
    in_hand: float  # harness clock when the output was consumed
    output_ts: float  # the output's Kafka timestamp: when the worker produced it
    sent: Sent  # the input message carrying the event answered
    event: str  # the event answered, or (demand) the event that closed the day


class Positions:
    """Per partition of the scored input: its messages in offset order and the running count of
    events they carry, so 'answered up to offset o' turns into events."""

    def __init__(self, feed: Feed) -> None:
        self.by_partition: dict[int, list[Sent]] = {}
        for s in sorted(feed.scored(), key=lambda s: (s.partition, s.offset)):
            self.by_partition.setdefault(s.partition, []).append(s)
        self.offsets = {p: [s.offset for s in sents] for p, sents in self.by_partition.items()}
        self.cum_events = {p: np.cumsum([len(s.message.event_ids) for s in sents]).tolist()
                           for p, sents in self.by_partition.items()}

    def events_through(self, sent: Sent) -> int:
        """Events in the partition up to and including this message."""
        i = bisect.bisect_left(self.offsets[sent.partition], sent.offset)
        return self.cum_events[sent.partition][i]

    def events_before(self, partition: int, offset: int) -> int:
        """Events in messages below `offset` (a committed offset is the next one to read)."""
        i = bisect.bisect_left(self.offsets.get(partition, []), offset)
        return self.cum_events[partition][i - 1] if i > 0 else 0


def match_by_event_id(feed: Feed, records: Sequence[tuple[float, float, bytes]]) -> list[Answer]:
    """Outputs that name the event they answer (predictions, supply-chain scores), one per
    message or an array of them answering a gateway message."""
    carrier = {eid: s for s in feed.scored() for eid in s.message.event_ids}
    answers = []
    for in_hand, output_ts, value in records:
        decoded = json.loads(value)
        for output in decoded if isinstance(decoded, list) else [decoded]:
            sent = carrier.get(output["event_id"])
            if sent is not None:
                answers.append(Answer(in_hand, output_ts, sent, output["event_id"]))
    return answers


def match_day_close(feed: Feed, records: Sequence[tuple[float, float, bytes]], lateness_s: float) -> list[Answer]:
    """Demand forecasts answer no single event: a day's forecasts ride on the event whose time
    closed the day, the first in the series' partition whose time passed the day's end plus the
    allowed lateness (stream_app.scoring.demand_aggregation.PartitionDays.advance)."""
    positions = Positions(feed)
    partition_of = {s.message.key.decode(): s.partition for s in feed.scored()}
    watermarks: dict[int, list[float]] = {}
    for p, sents in positions.by_partition.items():
        times = [max(_epoch_s(ts) for ts in s.message.event_ts) for s in sents]
        watermarks[p] = np.maximum.accumulate(times).tolist()
    answers = []
    for in_hand, output_ts, value in records:
        forecast = json.loads(value)
        p = partition_of.get(forecast["series_id"])
        if p is None:
            continue
        closes_at = ((date.fromisoformat(forecast["day"]) - _EPOCH).days + 1) * DAY_S + lateness_s
        i = bisect.bisect_left(watermarks[p], closes_at)
        if i < len(watermarks[p]):
            sent = positions.by_partition[p][i]
            answers.append(Answer(in_hand, output_ts, sent, sent.message.event_ids[0]))
    return answers


def _epoch_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# --- figures ----------------------------------------------------------------------------------
def percentiles_ms(seconds: Sequence[float]) -> Optional[dict[str, float]]:
    if not len(seconds):
        return None
    ms = np.asarray(seconds) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(ms.max()), "n": int(ms.size)}


@dataclass
class Throughput:
    events_per_s: float  # first output to last
    sustained_per_s: Optional[float]  # while every partition had input waiting: see throughput()
    first_output: float
    last_output: float
    events_in_window: int


def progress(answers: Sequence[Answer], positions: Positions) -> list[tuple[float, int]]:
    """(time, events answered by then): per partition, the events up to the furthest input
    answered (each partition is processed in offset order)."""
    return _progress(answers, positions)[0]


def _progress(answers: Sequence[Answer], positions: Positions) -> tuple[list[tuple[float, int]], Optional[float]]:
    """The progress timeline, and when the first partition had its last input answered."""
    furthest: dict[int, int] = {}
    out = []
    drained = None
    for a in sorted(answers, key=lambda a: a.in_hand):
        p = a.sent.partition
        through = positions.events_through(a.sent)
        if through > furthest.get(p, 0):
            furthest[p] = through
            out.append((a.in_hand, sum(furthest.values())))
            if drained is None and through == positions.cum_events[p][-1]:
                drained = a.in_hand
    return out, drained


def throughput(answers: Sequence[Answer], positions: Positions) -> Optional[Throughput]:
    """Events per second from the first output to the last, and sustained: from the first output
    until the first partition has nothing left. A finite backlog drains unevenly, and a
    consumer whose partitions are caught up waits out its fetch wait on them (Faust: 1.5 s), so
    the tail is not what a worker keeps up under load. The events the first outputs answer
    are left out: they were processed before the window."""
    timeline, drained = _progress(answers, positions)
    if len(timeline) < 2:
        return None
    (t0, n0), (t1, n1) = timeline[0], timeline[-1]
    loaded = [(t, n) for t, n in timeline if drained is not None and t <= drained]
    sustained = (loaded[-1][1] - n0) / (loaded[-1][0] - t0) if len(loaded) > 1 else None
    return Throughput((n1 - n0) / max(t1 - t0, 1e-9), sustained, t0, t1, n1 - n0)


def lag_series(
    feed: Feed, timeline: Sequence[tuple[float, int]], samples: Sequence[Sample], positions: Positions, t0: float, t_end: float
) -> dict[str, list[float]]:
    """Lag in events every SAMPLE_INTERVAL_S: produced minus answered, and produced minus
    committed. Times are seconds since t0, from 2 s before it."""
    sends = sorted((s.send_time, len(s.message.event_ids)) for s in feed.scored())
    send_times = [t for t, _ in sends]
    produced_cum = np.cumsum([n for _, n in sends]).tolist()
    answered_times = [t for t, _ in timeline]
    grid = np.arange(t0 - 2.0, t_end + SAMPLE_INTERVAL_S, SAMPLE_INTERVAL_S)
    out: dict[str, list[float]] = {"t_s": [], "lag_answered": [], "lag_committed": []}
    sample_times = [s.t for s in samples]
    for t in grid:
        i = bisect.bisect_right(send_times, t)
        produced = produced_cum[i - 1] if i else 0
        j = bisect.bisect_right(answered_times, t)
        answered = timeline[j - 1][1] if j else 0
        k = bisect.bisect_right(sample_times, t)
        committed = sum(positions.events_before(p, o) for p, o in samples[k - 1].committed.items()) if k else 0
        out["t_s"].append(round(float(t - t0), 2))
        out["lag_answered"].append(max(0, produced - answered))
        out["lag_committed"].append(max(0, produced - committed))
    return out


@dataclass
class ProcessFigures:
    cpu_s: float  # whole life, start-up included
    cpu_s_window: Optional[float]  # from the first output to the last
    peak_rss_mb: float


def process_figures(samples: Sequence[Sample], window: Optional[tuple[float, float]]) -> dict[str, ProcessFigures]:
    names = {n for s in samples for n in s.cpu_s}
    out = {}
    for name in sorted(names):
        seen = [(s.t, s.cpu_s[name], s.rss[name]) for s in samples if name in s.cpu_s]
        in_window = None
        if window is not None:
            times = [t for t, _, _ in seen]
            lo = max(bisect.bisect_right(times, window[0]) - 1, 0)
            hi = min(bisect.bisect_left(times, window[1]), len(seen) - 1)
            in_window = seen[hi][1] - seen[lo][1]
        out[name] = ProcessFigures(seen[-1][1], in_window, max(r for _, _, r in seen) / 2**20)
    return out


@dataclass
class CaseResult:
    """One measured case; what the report prints, plots and writes."""

    stream: str
    case: str
    kind: str  # worker | bare-faust | plain-consumer | naive | scorer | memory
    mode: str = ""  # backlog | gateway | paced (cases fed through the broker)
    workers: int = 0
    messages: int = 0
    events: int = 0
    answered: int = 0  # distinct events answered (per-event outputs) or outputs (demand)
    outputs: int = 0
    events_per_s: Optional[float] = None  # first output to last
    sustained_per_s: Optional[float] = None  # first output until a partition ran dry
    rate_target: Optional[float] = None  # paced cases: the rate asked for
    latency_ms: Optional[dict[str, float]] = None  # event sent -> output consumed
    latency_to_output_ms: Optional[dict[str, float]] = None  # event sent -> output produced
    processes: dict[str, ProcessFigures] = field(default_factory=dict)
    lag: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
