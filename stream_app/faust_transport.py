"""Faust's Kafka transport, with two changes:

* The consumer's fetch wait is a setting. Faust fixes `fetch_max_wait_ms` at 1500 ms. Apache
  Kafka answers a fetch as soon as one byte is there (fetch.min.bytes=1), so there the wait
  only bounds polls of idle partitions. The embedded broker holds every fetch for the full
  wait, so on it the wait *is* the end-to-end latency of every event. The product's wait is
  BROKER_FETCH_MAX_WAIT_MS (20 ms by default).
* Only messages an agent took count as done. faust-streaming's stream skips a message fetched
  before a rebalance, or read while a rebalance has flow control suspended, and acks it all
  the same; the commit during the rebalance then moves the partition's offset past messages no
  agent ever saw (the fault suite lost runs of a few hundred events this way). A message an
  agent takes is tracked first, so an untracked one is refused here: the partition's next
  owner (or this worker, after the rebalance) reads it again from the committed offset. Agents
  that leave some of their messages to another owner disown them (`disown`) the same way.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from stream_app import metrics
from stream_app.intake import RawMessage

log = logging.getLogger(__name__)


def transport_class(fetch_max_wait_ms: int) -> type[driver.Transport]:
    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: driver.Transport) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by AIOKafkaConsumer.start()
            return consumer

    class Consumer(driver.Consumer):
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Per partition: offsets of messages refused while it was held here. The committed
            # offset stays below the lowest until Faust seeks back (the next assignment does),
            # so a commit -- even the one during a revocation, when Faust no longer checks for
            # holes -- never passes a message no agent took.
            self.holes: dict[TP, set[int]] = {}

        def ack(self, message: Any) -> bool:
            if not message.tracked and self.app.topics.acks_enabled_for(message.topic):
                message.acked = True  # done with here (so wait_empty does not wait), never committed
                self._unacked_messages.discard(message)
                self._hold(message)
                return False
            holes = self.holes.get(message.tp) if self.holes else None  # per message: cheap when none
            if holes and message.offset in holes:
                holes.discard(message.offset)  # taken after all (delivered again)
                self._count_holes()
            return super().ack(message)

        def _hold(self, message: Any) -> None:
            tp, offset = message.tp, message.offset
            committed = self._committed_offset[tp]
            if tp not in self.assignment() or (committed is not None and offset < committed):
                return
            held = self.holes.setdefault(tp, set())
            if not held:
                log.warning("%s[%d] offset %d was not processed here: commits of the partition stay below "
                            "it until it is read again (next rebalance)", tp.topic, tp.partition, offset)
            held.add(offset)
            self._count_holes()

        def _count_holes(self) -> None:
            metrics.SKIPPED_UNCOMMITTED.set(sum(len(offsets) for offsets in self.holes.values()))

        def _new_offset(self, tp: Any) -> Optional[int]:
            offset = super()._new_offset(tp)
            held = self.holes.get(tp)
            if offset is not None and held:
                offset = min(offset, min(held))
            return offset

        async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
            self.holes.clear()  # every assigned partition is read again from its committed offset
            self._count_holes()
            await super().on_partitions_assigned(assigned, generation_id)

        def holds(self, topic: str, partition: int) -> bool:
            """Whether a message of the partition was refused here and not read again yet."""
            return bool(self.holes.get(TP(topic, partition)))

    class Transport(driver.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


def disown(events: Sequence[Any]) -> None:
    """Events an agent leaves to another owner (their partition was revoked): their acks, which
    Faust's batching sends anyway, must not commit them."""
    for event in events:
        event.message.tracked = False


class StreamApp(faust.App):
    """A Faust app whose Kafka consumer fetches with the product's fetch wait and never commits
    past a message no agent took."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self._transport_class = transport_class(fetch_max_wait_ms)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return self._transport_class(self.conf.broker_consumer, self)


def held_messages(app: Any, events: Sequence[Any]) -> list[RawMessage]:
    """The events' messages, less those of partitions this consumer no longer holds. During a
    rebalance Faust can hand an agent events of partitions already revoked: processing them
    would rebuild state the new owner is building too (and, for a stateful stream, leave a
    stale copy here if the partition comes back). They are disowned, so the owner gets them."""
    held = {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
    kept, gone = [], []
    for event in events:
        message = event.message
        if message.partition is None or (message.topic, message.partition) in held:
            kept.append(RawMessage.from_faust(event))
        else:
            gone.append(event)
    disown(gone)
    return kept
