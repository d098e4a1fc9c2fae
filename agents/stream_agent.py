"""The one agent module: registers any declared stream (stream_app/streams/) on the Faust app.

For every stream, the same shape:

* the scoring agent subscribes the input topic; its records come a whole fetch at a time
  through the inbox (stream_app/fetched.py), not through the Faust stream, and each batch runs
  the one pipeline (agents/pipeline.py): decode, dead-letter, score, publish, and only then
  commit. concurrency=1: one batch at a time, in offset order;
* the ground-truth agent (where the stream has a truth topic) applies truths a batch at a time;
* the stream's scorer follows the model registry (`SharedScorer.watch`);
* a revoked input partition is handed to the stream's `revoked` hook, and its alert chain's
  head is forgotten;
* the alert chains of the audit trail (AUDIT_ALERTS) follow the input partitions: the head of
  each assigned partition's chain is read in the background, before its first alert.

What a stream adds is a `StreamWiring`: its declaration, its scorer handle, how its pipeline is
built, and hooks for what only some streams have (a state hand-over before a batch, a snapshot
after one, a calendar to wait for, a graph follower to keep running).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence

from agents.pipeline import StreamPipeline
from agents.publish import Outbox
from agents.shared_scorer import SharedScorer
from stream_app.audit.chain import AlertChain
from stream_app.audit.topic import read_tail
from stream_app.health import Health
from stream_app.intake import RawMessage
from stream_app.settings import Settings
from stream_app.streams import StreamDeclaration

Hook = Callable[[], Awaitable[None]]


@dataclass
class StreamWiring:
    """What one stream brings to the generic agent.

    pipeline(outbox, audit)   the stream's pipeline, built once its scorer is loaded
    truths(outbox, messages)  applies a batch of ground-truth messages (bad ones dead-lettered)
    ready()                   awaited once before the first batch (demand: the calendar)
    warm(messages, next)      before each batch: take over the state of partitions this worker
                              does not hold yet (`next`: every assigned partition's next offset)
    between(producer)         after each batch, its outputs acknowledged (state snapshots)
    revoked(partitions)       the input partitions taken away from this worker
    tasks                     name -> background coroutine kept running beside the agents,
                              given the app's producer
    """

    declaration: StreamDeclaration
    handle: SharedScorer[Any]
    pipeline: Callable[[Outbox, Optional[AlertChain]], StreamPipeline[Any, Any]]
    truths: Optional[Callable[[Outbox, Sequence[RawMessage]], Awaitable[int]]] = None
    ready: Optional[Hook] = None
    warm: Optional[Callable[[Sequence[RawMessage], Mapping[int, int]], Awaitable[None]]] = None
    between: Optional[Callable[[Any], Awaitable[None]]] = None
    revoked: Optional[Callable[[set[int]], Awaitable[None]]] = None
    tasks: dict[str, Callable[[Any], Awaitable[None]]] = field(default_factory=dict)


def _task(app: Any, name: str, run: Callable[[Any], Awaitable[None]]) -> None:
    async def task() -> None:
        await run(app.producer)

    task.__name__ = task.__qualname__ = name  # Faust logs and traces tasks by name
    app.task(task)


def register(app: Any, settings: Settings, wiring: StreamWiring, health: Optional[Health] = None) -> SharedScorer[Any]:
    """Declare the stream's agents and tasks on `app`; returns its scorer handle."""
    d, handle = wiring.declaration, wiring.handle
    input_topic = d.topic(settings)
    inbox = app.inbox(input_topic)
    # The stream's alert chains (AUDIT_ALERTS); a chain's head is read again when its input
    # partition comes back after a revocation (another worker may have linked alerts meanwhile).
    chain = AlertChain(d.name, partial(read_tail, settings)) if settings.audit_alerts else None
    batch_max = d.batch_max(settings)

    for name, run in wiring.tasks.items():
        _task(app, name, run)

    async def score(_stream: Any) -> None:
        await handle.get()
        if wiring.ready is not None:
            await wiring.ready()
        run = wiring.pipeline(Outbox(app.producer), chain)
        while True:
            async with inbox.batch(batch_max) as messages:
                assigned = inbox.next_offsets()
                if chain is not None:
                    chain.prefetch(assigned)
                if wiring.warm is not None:
                    await wiring.warm(messages, assigned)
                await run.process(messages)
            if wiring.between is not None:
                await wiring.between(app.producer)
            if health is not None:
                health.progressed()

    app.agent(app.topic(input_topic, key_serializer="raw", value_serializer="raw"), name=d.scorer_agent,
              concurrency=1)(score)

    async def revoked(_app: Any, tps: set[Any], **_: Any) -> None:
        partitions = {tp.partition for tp in tps if tp.topic == input_topic}
        if chain is not None:
            chain.forget(partitions)
        if wiring.revoked is not None:
            await handle.get()
            await wiring.revoked(partitions)

    app.on_partitions_revoked.connect(revoked)

    truths_topic = d.truths_topic(settings)
    if truths_topic is not None and wiring.truths is not None:
        apply_truths = wiring.truths
        truths_inbox = app.inbox(truths_topic)

        async def learn(_stream: Any) -> None:
            outbox = Outbox(app.producer)
            while True:
                async with truths_inbox.batch(d.truth_batch) as messages:
                    await apply_truths(outbox, messages)

        app.agent(app.topic(truths_topic, key_serializer="raw", value_serializer="raw"), name=d.truth_agent,
                  concurrency=1)(learn)

    async def follow_models(_producer: Any) -> None:
        await handle.watch(settings.model_poll_s)

    _task(app, f"follow_{d.name}_models", follow_models)
    return handle
