"""Runs one case against the shared broker.

Every case goes the same way: start its processes (workers or the bare agent), produce a
warm-up of single-event messages, wait until the group is stable with every process in it and
has committed past the warm-up (processes started and joined, models loaded, every partition
seen once: start-up is over), then drive the measured messages (a burst as fast as the producer
goes, i.e. a backlog, or a paced rate), wait until every input is processed, stop the processes
and turn what was collected into a CaseResult.
"""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from aiokafka.admin import AIOKafkaAdminClient

from load_tests.cluster import Process
from load_tests.loadgen import Feed, Message, Producer, produce_backlog, produce_paced
from load_tests.measure import (
    Answer, CaseResult, Monitor, OutputCollector, Positions, lag_series, match_by_event_id, match_day_close,
    percentiles_ms, process_figures, progress, throughput,
)
from stream_app.settings import Settings

# After the last input is processed, outputs still in flight get this long to arrive.
_SETTLE_S = 1.0


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    pid: Optional[int]
    partitions: int


@dataclass(frozen=True)
class Drive:
    warm_up: Sequence[Message]  # single events, before measuring
    messages: Sequence[Message]  # measured
    rate: Optional[float] = None  # scored events per second; None: as fast as possible (a backlog)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # worker | bare-faust | quix
    feed: Feed  # empty: the case produces into it
    output_topic: str
    group: str  # the processes' consumer group (Faust: the app id)
    start: Callable[[], list[Process]]
    drive: Drive
    timeout_s: float = 300.0

    @property
    def mode(self) -> str:
        if self.drive.rate is not None:
            return "paced"
        return "gateway" if any(len(m.event_ids) > 1 for m in self.drive.messages) else "backlog"


async def run_case(broker: Broker, case: Case) -> CaseResult:
    collector = OutputCollector(broker.bootstrap, case.output_topic)
    await collector.start()
    processes = case.start()
    t0 = time.time()
    names = {p.name: p.pid for p in processes} | {"harness": os.getpid()}
    if broker.pid is not None:
        names["broker"] = broker.pid
    monitor = Monitor(broker.bootstrap, names, case.group, case.feed.input_topic, broker.partitions)
    await monitor.start()
    notes: list[str] = []
    ready = t0
    try:
        async with Producer(broker.bootstrap) as producer:
            await produce_backlog(producer, case.feed, case.drive.warm_up, warm_up=True)
            await _until_ready(broker, case, monitor, processes, notes)
            ready = time.time()
            if case.drive.rate is None:
                seconds = await produce_backlog(producer, case.feed, case.drive.messages)
                notes.append(f"backlog produced in {seconds:.1f} s, while the case ran")
            else:
                seconds = await produce_paced(producer, case.feed, case.drive.messages, case.drive.rate)
                sent = sum(len(m.event_ids) for m in case.drive.messages if m.scored)
                notes.append(f"paced producer: {sent / seconds:,.0f} events/s of {case.drive.rate:,.0f} asked")
        await _until_processed(case, collector, monitor, processes, notes)
    finally:
        await monitor.stop()
        for p in processes:
            p.stop()
        await collector.stop()
    result = _result(case, collector, monitor, processes, ready, notes)
    result.extra["ready_after_s"] = round(ready - t0, 1)  # start, join, model load, warm-up
    return result


async def _until_ready(
    broker: Broker, case: Case, monitor: Monitor, processes: list[Process], notes: list[str]
) -> None:
    warm = case.feed.scored_messages()
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    deadline = time.monotonic() + case.timeout_s
    try:
        while True:
            state, members = await _group(admin, case.group)
            if monitor.committed_total() >= warm and state == "Stable" and members == len(processes):
                return
            if time.monotonic() > deadline or not all(p.alive() for p in processes):
                notes.append(f"not ready after the warm-up (group {state}, {members} members); measured anyway")
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _group(admin: AIOKafkaAdminClient, group: str) -> tuple[str, int]:
    (response,) = await admin.describe_consumer_groups([group])
    _, _, state, _, _, members = response.groups[0][:6]
    return state, len(members)


async def _until_processed(
    case: Case, collector: OutputCollector, monitor: Monitor, processes: list[Process], notes: list[str]
) -> None:
    """Until every input has its output (per-event outputs) or the group committed past every
    input; then until no output came for _SETTLE_S."""
    per_event = _per_event(case)
    events, messages = case.feed.events(), case.feed.scored_messages()
    deadline = time.monotonic() + case.timeout_s
    while not ((per_event and collector.count >= events) or monitor.committed_total() >= messages):
        if not all(p.alive() for p in processes):
            notes.append("a process exited early: " + "; ".join(p.log_tail(3) for p in processes if not p.alive()))
            return
        if time.monotonic() > deadline:
            notes.append(f"timed out after {case.timeout_s:.0f} s")
            return
        await asyncio.sleep(0.25)
    count = -1
    while count != collector.count:
        count = collector.count
        await asyncio.sleep(_SETTLE_S)


def _per_event(case: Case) -> bool:
    """One output per input event, naming it (the forwarders send the input itself)."""
    return case.kind in ("bare-faust", "quix") or case.feed.spec.per_event_output


def _answers(case: Case, collector: OutputCollector) -> list[Answer]:
    if _per_event(case):
        return match_by_event_id(case.feed, collector.records)
    return match_day_close(case.feed, collector.records, Settings().demand.allowed_lateness_s)


def _result(
    case: Case, collector: OutputCollector, monitor: Monitor, processes: list[Process], ready: float, notes: list[str]
) -> CaseResult:
    answers = _answers(case, collector)
    measured = [a for a in answers if not a.sent.warm_up]
    positions = Positions(case.feed)
    rate = throughput(measured, positions)
    # Backlog cases: the time an event waited in the backlog, not a latency to report.
    latency = percentiles_ms([a.in_hand - a.sent.send_time for a in measured])
    to_output = percentiles_ms([a.output_ts - a.sent.send_time for a in measured])
    t_end = max([ready] + [t for t, _, _ in collector.records] + [s.t for s in monitor.samples])
    answered = len({a.event for a in measured})
    events = case.feed.events(include_warm_up=False)
    distinct = len({e for s in case.feed.scored(include_warm_up=False) for e in s.message.event_ids})
    result = CaseResult(
        stream=case.feed.spec.name, case=case.name, kind=case.kind, mode=case.mode, workers=len(processes),
        messages=len(case.feed.scored(include_warm_up=False)), events=events, answered=answered,
        outputs=collector.count, events_per_s=rate.events_per_s if rate else None,
        sustained_per_s=rate.sustained_per_s if rate else None, rate_target=case.drive.rate,
        latency_ms=latency, latency_to_output_ms=to_output,
        processes=process_figures(monitor.samples, (rate.first_output, rate.last_output) if rate else None),
        lag=lag_series(case.feed, progress(answers, positions), monitor.samples, positions, ready, t_end), notes=notes,
    )
    if _per_event(case) and answered < distinct:
        notes.append(f"only {answered:,} of {distinct:,} events answered")
    if rate:
        result.extra["events_in_window"] = rate.events_in_window
        # A stall (a snapshot, a rebalance, a fetch wait) shows as a long gap between outputs.
        arrivals = sorted({a.in_hand for a in measured})
        result.extra["longest_output_gap_s"] = round(max(b - a for a, b in zip(arrivals, arrivals[1:])), 2)
    if case.mode == "paced" and measured:
        result.extra["latency_timeline"] = latency_timeline(measured)
    return result


def latency_timeline(answers: list[Answer], bucket_s: float = 0.5) -> list[list[float]]:
    """[seconds since the first send, p50 ms, max ms, events] per `bucket_s` of send time: whether
    the slow events of a paced case are spread out or bunched in pauses (and how often those come)."""
    sent = np.array([a.sent.send_time for a in answers])
    waits = np.array([a.in_hand - a.sent.send_time for a in answers]) * 1000.0
    which = ((sent - sent.min()) // bucket_s).astype(int)
    rows = []
    for k in np.unique(which):
        w = waits[which == k]
        rows.append([round(k * bucket_s, 2), round(float(np.median(w)), 1), round(float(w.max()), 1), int(w.size)])
    return rows
