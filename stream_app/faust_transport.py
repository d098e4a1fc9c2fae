"""Faust's Kafka transport, with two changes:

* The consumer's fetch wait is a setting. Faust fixes `fetch_max_wait_ms` at 1500 ms. Apache
  Kafka answers a fetch as soon as one byte is there (fetch.min.bytes=1), so there the wait
  only bounds polls of idle partitions. The embedded broker holds every fetch for the full
  wait, so on it the wait *is* the end-to-end latency of every event. The product's wait is
  BROKER_FETCH_MAX_WAIT_MS (20 ms by default).
* Topics with an inbox (stream_app/fetched.py) get each fetch whole: a partition's records go
  to the inbox in one piece, and the partition commits up to its last batch done.
* Only messages an agent took count as done. faust-streaming's stream skips a message fetched
  before a rebalance, or read while a rebalance has flow control suspended, and acks it all
  the same; the commit during the rebalance then moves the partition's offset past messages no
  agent ever saw (the fault suite lost runs of a few hundred events this way). A message an
  agent takes is tracked first, so an untracked one is refused here: the partition's next
  owner (or this worker, after the rebalance) reads it again from the committed offset. (The
  product's agents read inboxes; this guards any topic read the Faust way.)
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from stream_app import metrics
from stream_app.fetched import Fetched, Inbox
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
            # Topics read a whole fetch at a time, and per partition the end of its last batch done.
            self.inboxes: dict[str, Inbox] = getattr(self.app, "inboxes", {})
            for inbox in self.inboxes.values():
                inbox.consumer = self
            self._batches_done: dict[TP, int] = {}

        # --- whole fetches for inbox topics ---------------------------------------------------
        async def getmany(self, timeout: float) -> Any:
            """Faust's, except that records of inbox topics go to their inbox a partition's fetch
            at a time (and the rest, one by one, the Faust way)."""
            if not self.inboxes:
                async for item in super().getmany(timeout):
                    yield item
                return
            records, active = await self._wait_next_records(timeout)
            if records is None or self.should_stop:
                return
            if not self.flow_active:
                # As Faust does: read again from the committed offsets. A partition revoked
                # meanwhile makes the seek raise; that must not crash the fetcher (and with it
                # the worker): the next assignment seeks again.
                try:
                    await self.perform_seek()
                except Exception as exc:
                    self.log.warning("seek to committed offsets while flow is paused failed: %r", exc)
                return
            generation = self.app.consumer_generation_id
            rest = {}
            for tp, batch in records.items():
                if active is not None and tp not in active and tp not in self._buffered_partitions:
                    continue
                inbox = self.inboxes.get(tp.topic)
                if inbox is None:
                    rest[tp] = batch
                elif batch and self.flow_active and generation == self.app.consumer_generation_id:
                    await inbox.put(Fetched(tp, generation, [
                        RawMessage(r.topic, r.partition, r.offset, r.key, r.value,
                                   r.timestamp / 1000.0 if r.timestamp is not None else None) for r in batch]))
                    self._read_offset[tp] = batch[-1].offset
            to_message = self._to_message
            for tp, record in self.scheduler.iterate(rest):
                if not self.flow_active or generation != self.app.consumer_generation_id:
                    break
                yield tp, to_message(tp, record)

        def generation(self) -> int:
            return self.app.consumer_generation_id

        def committed(self, tp: TP) -> Optional[int]:
            return self._committed_offset.get(tp)

        def batch_done(self, tp: TP, end: int) -> None:
            if tp in self.assignment():
                self._batches_done[tp] = max(end, self._batches_done.get(tp, end))

        def _filter_tps_with_pending_acks(self, topics: Any = None) -> Any:
            yield from super()._filter_tps_with_pending_acks(topics)
            for tp in list(self._batches_done):
                if topics is None or tp in topics or tp.topic in topics:
                    yield tp

        async def wait_empty(self) -> None:
            for inbox in self.inboxes.values():  # a batch taken before the rebalance: finished first
                await inbox.idle()
            await super().wait_empty()

        async def on_partitions_revoked(self, revoked: set[Any]) -> None:
            for inbox in self.inboxes.values():
                inbox.clear()
            for tp in revoked:
                self._batches_done.pop(tp, None)
            await super().on_partitions_revoked(revoked)

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
            if tp.topic in self.inboxes:
                return self._batches_done.get(tp)
            offset = super()._new_offset(tp)
            held = self.holes.get(tp)
            if offset is not None and held:
                offset = min(offset, min(held))
            return offset

        async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
            self.holes.clear()  # every assigned partition is read again from its committed offset
            self._count_holes()
            await super().on_partitions_assigned(assigned, generation_id)

    class Transport(driver.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


class StreamApp(faust.App):
    """A Faust app whose Kafka consumer fetches with the product's fetch wait and never commits
    past a message no agent took."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self._transport_class = transport_class(fetch_max_wait_ms)
        self.inboxes: dict[str, Inbox] = {}
        super().__init__(*args, **kwargs)

    def inbox(self, topic: str) -> Inbox:
        """The topic's records, a fetch at a time (declare before the worker starts)."""
        return self.inboxes.setdefault(topic, Inbox(topic))

    def _new_transport(self) -> Any:
        return self._transport_class(self.conf.broker_consumer, self)
