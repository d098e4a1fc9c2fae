"""`stream-app retrain STREAM`: retrain a stream's model from its history topics and promote the
new version only through the promotion gate.

One run: read the stream's input topic and its ground-truth topic (maintenance: readings and
outcomes; supply-chain: transactions and verdicts; demand: sales and calendar) from the
beginning to their current end (stream_app.training.history_topics), optionally keep the last
`--since-hours` of event time, train as `stream-app train` does, evaluate the current version on
the new run's most recent (held-out) period, register the version with that comparison and
promote it through the gate. The history records every step with the actor "retrain".

Repeated runs: `--every-hours H` (the first at start), `--on-drift` (a drift event of the stream
on `drift-events`, detected after the model's last retraining or, if it never was, after the
job started; at most one run per `--min-interval-hours`, a drift inside the interval runs when it
ends). One run per model at a time: a second one, from any process sharing the model store,
does not start while the first holds the model's retraining lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Optional, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from stream_app import progress
from stream_app.intake import limits_from_settings
from stream_app.kafka_security import aiokafka_options
from schemas import DriftEvent
from schemas.common import InputEvent
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings
from stream_app.simulation.streams import STREAMS
from stream_app.training.cli import TRAINERS, summary
from stream_app.training.history_topics import TopicEvents, read_history
from stream_app.training.release import Release, describe

log = logging.getLogger(__name__)

ACTOR = "retrain"
_LOCK = ".retrain.lock"
_MAX_WAIT_S = 60.0  # the loop looks at the clock at least this often


@dataclass(frozen=True)
class RetrainJob:
    stream: str
    since_hours: Optional[float] = None  # None: the whole retained history
    quick: bool = False


@dataclass(frozen=True)
class RetrainResult:
    version: Optional[str]  # the version registered, None when the run did not get that far
    text: str


# -- one run ---------------------------------------------------------------------------------


def retrain_once(settings: Settings, job: RetrainJob, reason: str = "manual run") -> RetrainResult:
    registry = ModelRegistry(settings.model_dir)
    with _exclusive(registry, job.stream) as mine:
        if not mine:
            return RetrainResult(None, f"a retraining run of {job.stream} is already in progress; not starting another")
        return _run(settings, registry, job, reason)


def _run(settings: Settings, registry: ModelRegistry, job: RetrainJob, reason: str) -> RetrainResult:
    trainer = TRAINERS[job.stream]()
    first_topic, second_topic = STREAMS[job.stream].topics(settings)
    try:
        first, second = read_history(
            settings.bootstrap_servers, (first_topic, second_topic), trainer.events, limits_from_settings(settings)
        )
    except KafkaError as exc:
        return RetrainResult(None, f"cannot read the history of {job.stream} from {settings.bootstrap_servers}: {exc}")
    events = recent(first.events, job.since_hours)
    source = _source(first, second, events, job.since_hours)
    if not events:
        return RetrainResult(None, f"{job.stream}: {first.summary()}: nothing to train on")
    try:
        version = trainer.train(
            registry, events, second.events, trainer.config(job.quick), progress.enabled(),
            source=source, promote=Release("gate", ACTOR, f"retraining: {reason}"),
        )
    except ValueError as exc:  # the trainers' word for a history they cannot learn from
        return RetrainResult(None, f"retraining {job.stream} failed: {exc}")
    lines = [*source.values(), summary(job.stream, version), describe(registry, job.stream, version.version)]
    return RetrainResult(version.version, "\n".join(lines))


def recent(events: Sequence[InputEvent], since_hours: Optional[float]) -> list[InputEvent]:
    """The events of the last `since_hours` of event time, up to the newest event (not the wall
    clock: a replayed or delayed history keeps its window)."""
    if since_hours is None or not events:
        return list(events)
    start = max(e.ts for e in events) - timedelta(hours=since_hours)
    return [e for e in events if e.ts >= start]


def _source(first: TopicEvents[Any], second: TopicEvents[Any], kept: Sequence[InputEvent], since_hours: Optional[float]) -> dict[str, str]:
    """Per topic, one line for the console and the training report."""
    text = first.summary()
    if since_hours is not None:
        text += f"; {len(kept)} in the last {since_hours:g} h of event time trained on"
    return {first.topic: text, second.topic: second.summary()}


@contextmanager
def _exclusive(registry: ModelRegistry, name: str) -> Iterator[bool]:
    """Whether this process holds the model's retraining lock (flock: released when the process
    dies, so a crashed run never blocks the next)."""
    base = registry.directory(name)
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


# -- repeated runs ---------------------------------------------------------------------------


@dataclass
class Schedule:
    """When the next run is due: every `every_s` seconds (the first at once), and for a drift
    event at most once per `min_interval_s`. Times are epoch seconds."""

    every_s: Optional[float]
    min_interval_s: float
    last_run: Optional[float] = None  # the start of the last run
    drift_since: float = 0.0  # drift detected before this is already answered
    next_scheduled: Optional[float] = None
    pending: Optional[str] = None  # why a drift run is wanted

    def __post_init__(self) -> None:
        if self.every_s is not None and self.next_scheduled is None:
            self.next_scheduled = -float("inf")  # the first scheduled run starts at once

    def drift(self, event: DriftEvent, stream: str) -> bool:
        """Note a drift event; whether it asks for a run (of this stream, not yet answered)."""
        if _stream_of(event) != stream or event.detected_at.timestamp() <= self.drift_since:
            return False
        self.pending = (f"drift in {event.feature} ({event.detector}, partition {event.partition}, "
                        f"effect {event.effect:.1f}) detected at {event.detected_at.isoformat(timespec='seconds')}")
        return True

    def drift_run_at(self) -> float:
        """When a pending drift may start a run (epoch seconds)."""
        return -float("inf") if self.last_run is None else self.last_run + self.min_interval_s

    def due(self, now: float) -> Optional[str]:
        """Why a run should start now, or None."""
        if self.next_scheduled is not None and now >= self.next_scheduled:
            return f"scheduled, every {self.every_s / 3600:g} h"  # type: ignore[operator]
        if self.pending is not None and now >= self.drift_run_at():
            return self.pending
        return None

    def started(self, now: float) -> None:
        self.last_run, self.drift_since, self.pending = now, now, None
        if self.every_s is not None:
            self.next_scheduled = now + self.every_s

    def wait_s(self, now: float) -> float:
        """How long nothing can become due, short of a drift event arriving."""
        times = [t for t in (self.next_scheduled, self.drift_run_at() if self.pending else None) if t is not None]
        return max(0.0, min([*(t - now for t in times), _MAX_WAIT_S]))


def _stream_of(event: DriftEvent) -> str:
    """Drift events name the supply-chain stream "supply_chain"; models and the CLI "supply-chain"."""
    return event.stream.replace("_", "-")


def last_retrained(registry: ModelRegistry, name: str) -> Optional[float]:
    """When retraining last registered a version of `name` (epoch seconds), from the history:
    the drift interval holds across restarts of the job."""
    times = [e.time for e in registry.history(name) if e.actor == ACTOR and e.action == "registered"]
    return datetime.fromisoformat(times[-1]).timestamp() if times else None


class DriftFeed:
    """The drift-events topic, all partitions, from the beginning, outside any consumer group.
    The topic may not exist yet: its partitions are looked up again until it does."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(**aiokafka_options(bootstrap), group_id=None, enable_auto_commit=False,
                                         auto_offset_reset="earliest")
        self.assigned = False

    async def start(self) -> None:
        try:
            await self.consumer.start()
        except BaseException:
            await self.consumer.stop()  # a consumer that failed to start still holds its client
            raise

    async def stop(self) -> None:
        await self.consumer.stop()

    async def poll(self, timeout_s: float) -> list[DriftEvent]:
        if not self.assigned and not await self._assign():
            await asyncio.sleep(timeout_s)
            return []
        batches = await self.consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=1000)
        return [event for records in batches.values() for r in records if (event := _drift_event(r.value)) is not None]

    async def _assign(self) -> bool:
        await self.consumer.topics()  # refreshes metadata
        partitions = [TopicPartition(self.topic, p) for p in sorted(self.consumer.partitions_for_topic(self.topic) or ())]
        if partitions:
            self.consumer.assign(partitions)
            await self.consumer.seek_to_beginning(*partitions)
            self.assigned = True
        return self.assigned


def _drift_event(raw: Optional[bytes]) -> Optional[DriftEvent]:
    try:
        return DriftEvent.model_validate_json(raw or b"")
    except ValidationError:
        log.warning("retrain: skipped a drift-events message that is not a drift event")
        return None


@dataclass
class Watch:
    """The repeated-runs loop's parts, replaceable in tests."""

    settings: Settings
    job: RetrainJob
    schedule: Schedule
    run: Callable[[Settings, RetrainJob, str], RetrainResult] = retrain_once
    clock: Callable[[], float] = time.time
    results: list[RetrainResult] = field(default_factory=list)


async def watch(w: Watch, on_drift: bool, max_runs: Optional[int] = None) -> None:
    """Run retraining whenever the schedule says so, until cancelled (or after `max_runs`)."""
    feed = DriftFeed(w.settings.bootstrap_servers, w.settings.topics.drift_events) if on_drift else None
    if feed is not None:
        await feed.start()
    try:
        while max_runs is None or len(w.results) < max_runs:
            reason = w.schedule.due(w.clock())
            if reason is not None:
                w.schedule.started(w.clock())
                log.info("retraining %s: %s", w.job.stream, reason)
                try:
                    # In a thread: training takes minutes, and the drift feed keeps fetching meanwhile.
                    result = await asyncio.to_thread(w.run, w.settings, w.job, reason)
                except Exception as exc:  # the job outlives a failed run: the next one may succeed
                    log.exception("retraining %s failed", w.job.stream)
                    result = RetrainResult(None, f"retraining {w.job.stream} failed: {exc}")
                w.results.append(result)
                log.log(logging.INFO if result.version is not None else logging.WARNING, "%s", result.text)
                continue
            wait = w.schedule.wait_s(w.clock())
            for event in (await feed.poll(wait)) if feed is not None else []:
                if w.schedule.drift(event, w.job.stream) and w.schedule.drift_run_at() > w.clock():
                    at = datetime.fromtimestamp(w.schedule.drift_run_at(), tz=timezone.utc).isoformat(sep=" ", timespec="minutes")
                    log.info("%s: %s; retraining at %s (at most one run per %g h)", w.job.stream, w.schedule.pending, at,
                             w.schedule.min_interval_s / 3600)
            if feed is None:
                await asyncio.sleep(wait)
    finally:
        if feed is not None:
            await feed.stop()


def retrain_command(
    settings: Settings,
    job: RetrainJob,
    *,
    every_hours: Optional[float] = None,
    on_drift: bool = False,
    min_interval_hours: float = 6.0,
) -> int:
    """The `retrain` sub-command: one run, or the loop. Exit status 1 when a single run did not
    register a version."""
    if every_hours is None and not on_drift:
        print(f"retraining {job.stream} from its topics at {settings.bootstrap_servers}", flush=True)
        result = retrain_once(settings, job)
        print(result.text, flush=True)
        return 0 if result.version is not None else 1
    started = time.time()
    last = last_retrained(ModelRegistry(settings.model_dir), job.stream)
    schedule = Schedule(
        every_hours * 3600 if every_hours is not None else None, min_interval_hours * 3600,
        last_run=last, drift_since=last if last is not None else started,
    )
    what = [f"every {every_hours:g} h" if every_hours is not None else "",
            f"on drift (at most once per {min_interval_hours:g} h)" if on_drift else ""]
    print(f"retraining {job.stream} {' and '.join(filter(None, what))}; Ctrl-C stops (after a run in progress)", flush=True)
    try:
        asyncio.run(_until_stopped(Watch(settings, job, schedule), on_drift))
    except KafkaError as exc:
        print(f"cannot follow {settings.topics.drift_events} at {settings.bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    return 0


async def _until_stopped(w: Watch, on_drift: bool) -> None:
    """The loop, stopped by SIGTERM as by Ctrl-C (service managers send SIGTERM). A run in
    progress finishes first: asyncio.run waits for its thread."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await watch(w, on_drift)
