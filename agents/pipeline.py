"""The one micro-batch path every stream's agent runs: decode -> dead-letter the bad ->
score the good in the stream's inference thread -> publish -> wait for the broker's acks.

A stream supplies its input model, a `score` function (list of events -> list of results, run
in the inference thread) and an `outputs` function (result -> messages to publish). The agent's
batch offsets are acknowledged by Faust only after `process` returns, i.e. after every output
of the batch was acknowledged: at-least-once, never at-most-once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, Iterator, Mapping, Optional, Sequence, TypeVar

from agents.drift import DriftTracker
from stream_app.intake import RawMessage
from agents.publish import Message, Outbox, Outgoing, take_in
from schemas import Alert, DriftEvent, Explanation
from schemas.outputs import InputRef, digest
from schemas.common import InputEvent
from stream_app import metrics
from stream_app.audit.chain import AlertChain
from stream_app.deadletter import build_dead_letter
from stream_app.decoding import DecodeFailure
from stream_app.settings import Settings

log = logging.getLogger(__name__)

E = TypeVar("E", bound=InputEvent)
R = TypeVar("R")
SCORING_FAILED = "scoring_failed"
PROCESSING_FAILED = "processing_failed"
SCORE_CHUNK = 1000  # events scored, and their outputs sent, at a time


@dataclass(frozen=True)
class Output:
    topic: str
    key: Optional[str]
    message: Message
    # The event's own answer (its prediction or score): one array answers a gateway message
    # where the input topic's TOPIC_CONFIG__<TOPIC>__ANSWER_ARRAYS is on.
    answer: bool = False


def answers_in_arrays(settings: Settings, input_topic_field: str) -> bool:
    own = settings.topic_config.get(input_topic_field)
    return bool(own and own.answer_arrays)


_ARRAY_START = re.compile(rb"\s*\[")


def is_gateway(message: RawMessage) -> bool:
    """A JSON array (asked per answer: a match at the start, no copy of the value)."""
    return message.value is not None and _ARRAY_START.match(message.value) is not None


def chunks(origin: Sequence[RawMessage], size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of about `size` events each, never splitting one message's events."""
    start = 0
    while start < len(origin):
        end = min(start + size, len(origin))
        while end < len(origin) and origin[end] is origin[end - 1]:
            end += 1
        yield start, end
        start = end


def with_inputs(alert: Alert, sources: Mapping[Optional[str], RawMessage]) -> Alert:
    """The alert naming where its input messages lie and their digests (audit trail)."""
    refs = [InputRef(topic=m.topic, partition=m.partition, offset=m.offset, sha256=digest(m.value or b""))
            for m in (sources.get(event_id) for event_id in alert.event_ids) if m is not None]
    return alert.model_copy(update={"inputs": refs}) if refs else alert


class StreamPipeline(Generic[E, R]):
    def __init__(
        self,
        stream: str,
        event_model: type[E],
        settings: Settings,
        score: Callable[[list[E]], list[R]],
        outputs: Callable[[R], Iterable[Output]],
        outbox: Outbox,
        executor: Executor,
        drift: Optional[DriftTracker[E, R]] = None,
        fallback: Optional[Callable[[Exception], Callable[[list[E]], list[R]]]] = None,
        answer_arrays: bool = False,
        audit: Optional[AlertChain] = None,
        decisions: Optional[Callable[[Sequence[R]], tuple[Sequence[str], Sequence[float]]]] = None,
    ) -> None:
        """`fallback(exc)`: when scoring raises, the scoring function to use from then on (the
        stream's rules without its model); without one, or if it fails too, the batch's input
        becomes dead letters. Either way the agent carries on. `audit`: the stream's alert
        chains; each alert and its explanation get their link, published in the same batch.
        `decisions`: the decision source and confidence of each result's prediction, for the
        metrics, counted once per batch rather than once per event (the hot path)."""
        self.stream = stream
        self.event_model = event_model
        self.settings = settings
        self.answer_arrays = answer_arrays
        self.dead_letters_topic = settings.topics.dead_letters
        self.drift_topic = settings.topics.drift_events
        self.drift = drift
        self.fallback = fallback
        self.score = score
        self.outputs = outputs
        self.outbox = outbox
        self.executor = executor
        self.audit = audit
        self.audit_topic = settings.topics.alert_audit
        self.latency = metrics.LATENCY_SECONDS.labels(stream)
        self.decisions = decisions
        self.decided = {source: metrics.DECISIONS.labels(stream, source) for source in ("model", "rule")}
        self.confidence = metrics.CONFIDENCE.labels(stream)
        metrics.SCORER_FALLBACKS.labels(stream)  # a series at 0 from the start: no fallback yet

    async def process(self, messages: Sequence[RawMessage]) -> None:
        """Never raises for what a batch holds. An unexpected failure (a bug, an output the
        broker refuses) turns each of the batch's messages into a `processing_failed` dead
        letter, kept for replay: an agent that raised would have its events committed by
        Faust, unanswered. Only when even those cannot be sent does the exception go on."""
        try:
            await self._process(messages)
        except Exception as exc:
            log.exception("%s failed to process a batch of %d messages; dead-lettering them", self.stream, len(messages))
            self.outbox.discard()
            if self.audit is not None:  # which links reached the topic is unknown: read the heads again
                self.audit.forget({m.partition for m in messages})
            await self._dead_letter_messages(messages, PROCESSING_FAILED, f"processing raised {type(exc).__name__}: {exc}")
            await self.outbox.flush()

    async def _process(self, messages: Sequence[RawMessage]) -> None:
        metrics.MESSAGES.labels(self.stream).inc(len(messages))
        intake = await take_in(messages, self.event_model, self.settings, self.outbox, self.stream)
        if intake.dead_letters:
            metrics.EVENTS.labels(self.stream, "dead_letter").inc(len(intake.dead_letters))

        if intake.events and self.drift is not None:
            await self.drift.restore({m.partition for m in intake.origin})
        # A batch of gateway messages can hold tens of thousands of events: score them a chunk
        # at a time, so the first outputs are on their way while the rest is scored.
        sources = {getattr(e, "event_id", None): m for e, m in zip(intake.events, intake.origin)}
        for start, end in chunks(intake.origin, SCORE_CHUNK):
            await self._score_and_send(intake.events[start:end], intake.origin[start:end], sources)

        await self.outbox.flush()
        if self.drift is not None and self.drift.snapshot_due():
            # After the outputs went out: a failure here must not dead-letter answered events.
            try:
                loop = asyncio.get_running_loop()
                await self.drift.store(await loop.run_in_executor(self.executor, self.drift.snapshots))
            except Exception:
                log.exception("%s drift snapshot failed; the next one is due in %.0f s", self.stream,
                              self.drift.snapshot_interval)
        now, latency = time.time(), self.latency
        for message in messages:
            if message.timestamp:
                latency.observe(max(0.0, now - message.timestamp))

    async def _score_and_send(
        self, events: list[E], origin: list[RawMessage], sources: Mapping[Optional[str], RawMessage]
    ) -> None:
        results, drifts = await self._score(events, origin)
        if self.decisions is not None and results:
            self._count_decisions(results)
        outgoing: list[Outgoing] = [(self.drift_topic, f"{d.stream}:{d.feature}", d) for d in drifts]
        # every alert names its input messages (audit trail), linked into its chain or not
        produced = [[dataclasses.replace(out, message=with_inputs(out.message, sources))
                     if isinstance(out.message, Alert) else out for out in self.outputs(result)] for result in results]
        if self.audit is not None:
            outgoing += await self._link_alerts(produced, origin, sources)
        # per gateway message answered by one array: (topic, its key, the answers in order)
        arrays: dict[tuple[Optional[int], Optional[int]], tuple[str, Optional[bytes], list[Message]]] = {}
        for outs in produced:
            for out in outs:
                message = out.message
                if isinstance(message, Alert):
                    metrics.ALERTS.labels(message.kind, message.severity, message.decision_source).inc()
                if out.answer and self.answer_arrays:
                    source = sources.get(getattr(message, "event_id", None))
                    if source is not None and is_gateway(source):
                        arrays.setdefault((source.partition, source.offset), (out.topic, source.key, []))[2].append(message)
                        continue
                outgoing.append((out.topic, out.key, message))
        outgoing.extend(arrays.values())
        await self.outbox.send_many(outgoing)

    def _count_decisions(self, results: Sequence[R]) -> None:
        assert self.decisions is not None
        sources, confidences = self.decisions(results)
        for source, n in Counter(sources).items():
            (self.decided.get(source) or metrics.DECISIONS.labels(self.stream, source)).inc(n)
        metrics.observe_many(self.confidence, confidences)

    async def _link_alerts(self, produced: list[list[Output]], origin: Sequence[RawMessage],
                           sources: Mapping[Optional[str], RawMessage]) -> list[Outgoing]:
        """Give each alert (with its input references) and its explanation the next link of the
        chain of the input partition that raised it; returns the links' audit records."""
        aligned = len(produced) == len(origin)  # one result per event (not when a keeper skipped some)
        todo: list[tuple[int, int, Optional[int]]] = []
        for i, outs in enumerate(produced):
            for j, out in enumerate(outs):
                if isinstance(out.message, Alert):
                    inputs = out.message.inputs  # (with_inputs): the last is the alert's newest input
                    partition = inputs[-1].partition if inputs else (origin[i].partition if aligned else None)
                    todo.append((i, j, partition))
        if not todo:
            return []
        assert self.audit is not None
        await self.audit.ensure({p for _, _, p in todo})
        records: list[Outgoing] = []
        for i, j, partition in todo:
            outs = produced[i]
            alert = outs[j].message
            assert isinstance(alert, Alert)
            k = next((n for n, o in enumerate(outs) if isinstance(o.message, Explanation)
                      and o.message.alert_id == alert.alert_id), None)
            linked, explained, record = self.audit.link(partition, alert, outs[k].message if k is not None else None)
            outs[j] = dataclasses.replace(outs[j], message=linked)
            if k is not None and explained is not None:
                outs[k] = dataclasses.replace(outs[k], message=explained)
            records.append((self.audit_topic, record.chain, record))
        return records

    def _score_and_observe(self, events: list[E], origin: list[RawMessage]) -> tuple[list[R], list[DriftEvent]]:
        """In the inference thread: score, then feed the drift detectors (never failing the batch)."""
        started = time.perf_counter()
        results = self.score(events)
        metrics.INFERENCE_SECONDS.labels(self.stream).observe(time.perf_counter() - started)
        drifts: list[DriftEvent] = []
        if self.drift is not None:
            try:
                drifts = self.drift.observe(events, results, origin)
            except Exception:
                log.exception("%s drift monitoring failed for a batch; predictions unaffected", self.stream)
        return results, drifts

    async def _score(self, events: list[E], origin: list[RawMessage]) -> tuple[list[R], list[DriftEvent]]:
        loop = asyncio.get_running_loop()
        try:
            results, drifts = await loop.run_in_executor(self.executor, self._score_and_observe, events, origin)
        except Exception as exc:  # a model fault must not kill the agent or lose the input
            log.exception("%s scoring failed for a batch of %d events", self.stream, len(events))
            if self.fallback is not None:
                self.score, self.fallback = self.fallback(exc), None
                metrics.SCORER_FALLBACKS.labels(self.stream).inc()
                log.error("%s now scores with its rules only, until the worker restarts", self.stream)
                return await self._score(events, origin)
            await self._dead_letter_messages(origin, SCORING_FAILED, f"scoring raised {type(exc).__name__}: {exc}")
            metrics.EVENTS.labels(self.stream, "dead_letter").inc(len(events))
            return [], []
        metrics.BATCH_SIZE.labels(self.stream).observe(len(events))
        metrics.EVENTS.labels(self.stream, "scored").inc(len(results))
        return results, drifts

    async def _dead_letter_messages(self, messages: Sequence[RawMessage], code: str, why: str) -> None:
        """One dead letter per source message (a gateway message once), so it can be replayed."""
        failure = DecodeFailure(code, why[:2000])
        for message in {(m.partition, m.offset): m for m in messages}.values():
            letter = build_dead_letter(
                failure, topic=message.topic, partition=message.partition, offset=message.offset,
                key=message.key, raw=message.value,
            )
            await self.outbox.send(self.dead_letters_topic, letter.key, letter)
            metrics.DEAD_LETTERS.labels(self.stream, code).inc()
