"""The inbox between the consumer's fetches and an agent: what it hands over, and which offsets
it lets the consumer commit."""

from __future__ import annotations

import asyncio
from typing import Optional

import pytest
from faust.types import TP

from stream_app.fetched import Fetched, Inbox
from stream_app.intake import RawMessage

READINGS = TP("sensor-readings", 0)
OTHER = TP("sensor-readings", 1)


class Consumer:
    """The consumer's side the inbox talks to: assignment, generation, commits and seeks."""

    def __init__(self) -> None:
        self.flow_active = True
        self.gen = 1
        self.assigned = {READINGS, OTHER}
        self.committed_at: dict[TP, int] = {}
        self.done: dict[TP, int] = {}
        self.seeks: list[tuple[TP, int]] = []

    def generation(self) -> int:
        return self.gen

    def assignment(self) -> set[TP]:
        return self.assigned

    def committed(self, tp: TP) -> Optional[int]:
        return self.committed_at.get(tp)

    def batch_done(self, tp: TP, end: int) -> None:
        self.done[tp] = end

    async def seek(self, partition: TP, offset: int) -> None:
        self.seeks.append((partition, offset))


def fetched(tp: TP, first: int, n: int, generation: int = 1) -> Fetched:
    return Fetched(tp, generation, [RawMessage(tp.topic, tp.partition, o, b"k", b"{}") for o in range(first, first + n)])


def inbox_with(consumer: Consumer) -> Inbox:
    inbox = Inbox("sensor-readings")
    inbox.consumer = consumer
    return inbox


def offsets(messages: list[RawMessage]) -> list[tuple[int, int]]:
    return [(m.partition, m.offset) for m in messages]  # type: ignore[misc]


def test_whole_fetches_are_taken_together_and_committed_to_their_end() -> None:
    async def run() -> None:
        consumer = Consumer()
        inbox = inbox_with(consumer)
        await inbox.put(fetched(READINGS, 0, 3))
        await inbox.put(fetched(OTHER, 10, 2))
        await inbox.put(fetched(READINGS, 3, 4))
        async with inbox.batch(6) as messages:
            # the third fetch would make 9 messages: it waits for the next batch, whole
            assert offsets(messages) == [(0, 0), (0, 1), (0, 2), (1, 10), (1, 11)]
            assert consumer.done == {}, "nothing is done before the agent finished the batch"
        assert consumer.done == {READINGS: 3, OTHER: 12}
        async with inbox.batch(6) as messages:
            assert offsets(messages) == [(0, o) for o in range(3, 7)]
        assert consumer.done[READINGS] == 7

    asyncio.run(run())


def test_a_fetch_larger_than_the_batch_is_taken_whole() -> None:
    async def run() -> None:
        inbox = inbox_with(Consumer())
        await inbox.put(fetched(READINGS, 0, 50))
        async with inbox.batch(10) as messages:
            assert len(messages) == 50

    asyncio.run(run())


def test_fetches_from_before_a_rebalance_are_dropped_not_scored() -> None:
    """After a rebalance the consumer reads every partition again from its committed offset."""
    async def run() -> None:
        consumer = Consumer()
        inbox = inbox_with(consumer)
        await inbox.put(fetched(READINGS, 0, 3, generation=1))
        consumer.gen = 2
        await inbox.put(fetched(OTHER, 0, 2, generation=2))
        async with inbox.batch(100) as messages:
            assert offsets(messages) == [(1, 0), (1, 1)]
        assert consumer.done == {OTHER: 2}

        await inbox.put(fetched(OTHER, 2, 2, generation=2))
        consumer.flow_active = False  # a rebalance began after the fetch
        await inbox.put(fetched(OTHER, 4, 1, generation=2))
        consumer.flow_active = True
        consumer.assigned = {READINGS}
        await inbox.put(fetched(READINGS, 0, 1, generation=2))
        async with inbox.batch(100) as messages:
            assert offsets(messages) == [(0, 0)], "revoked partition, and fetches read while flow was stopped"

    asyncio.run(run())


def test_a_failed_batch_is_read_again_and_nothing_after_it_is_done_first() -> None:
    async def run() -> None:
        consumer = Consumer()
        inbox = inbox_with(consumer)
        await inbox.put(fetched(READINGS, 0, 2))
        async with inbox.batch(100):
            pass
        await inbox.put(fetched(READINGS, 2, 3))
        with pytest.raises(RuntimeError):
            async with inbox.batch(100):
                raise RuntimeError("publishing failed")
        assert consumer.done == {READINGS: 2}, "the failed batch is not done"
        assert consumer.seeks == [(READINGS, 2)], "the partition is read again from the failed batch"
        # fetched before the seek took effect: after the failed batch, so it waits for it
        await inbox.put(fetched(READINGS, 5, 2))
        await inbox.put(fetched(READINGS, 2, 5))  # read again from the seek
        async with inbox.batch(100) as messages:
            assert offsets(messages) == [(0, o) for o in range(2, 7)]
        assert consumer.done == {READINGS: 7}

    asyncio.run(run())


def test_records_read_twice_are_handed_over_once() -> None:
    async def run() -> None:
        consumer = Consumer()
        consumer.committed_at[READINGS] = 4
        inbox = inbox_with(consumer)
        await inbox.put(fetched(READINGS, 2, 4))  # two records below the committed offset
        async with inbox.batch(100) as messages:
            assert offsets(messages) == [(0, 4), (0, 5)]
        assert consumer.done == {READINGS: 6}

    asyncio.run(run())


def test_the_fetcher_waits_while_the_agent_is_behind_and_a_rebalance_frees_it() -> None:
    async def run() -> None:
        consumer = Consumer()
        inbox = Inbox("sensor-readings", max_queued=3)
        inbox.consumer = consumer
        await inbox.put(fetched(READINGS, 0, 3))
        blocked = asyncio.ensure_future(inbox.put(fetched(READINGS, 3, 1)))
        await asyncio.sleep(0.01)
        assert not blocked.done(), "three messages queued: the fetcher waits"
        async with inbox.batch(100):
            await asyncio.sleep(0.01)
            assert blocked.done(), "taking them made room"
        await inbox.put(fetched(OTHER, 0, 3))  # with the one from before: four queued
        stuck = asyncio.ensure_future(inbox.put(fetched(OTHER, 3, 1)))
        await asyncio.sleep(0.01)
        assert not stuck.done()
        inbox.clear()  # a rebalance began: what is queued is read again after it
        await asyncio.wait_for(stuck, 1)

    asyncio.run(run())


def test_a_taken_batch_holds_the_revocation_until_it_is_done() -> None:
    async def run() -> None:
        inbox = inbox_with(Consumer())
        await inbox.put(fetched(READINGS, 0, 1))
        release = asyncio.Event()

        async def agent() -> None:
            async with inbox.batch(100):
                await release.wait()

        task = asyncio.ensure_future(agent())
        await asyncio.sleep(0.01)
        idle = asyncio.ensure_future(inbox.idle())
        await asyncio.sleep(0.01)
        assert not idle.done()
        release.set()
        await asyncio.wait_for(idle, 1)
        await task

    asyncio.run(run())


def test_next_offsets_say_where_each_assigned_partition_goes_on() -> None:
    """So an agent can take over every assigned partition at once, before its records come."""
    async def run() -> None:
        consumer = Consumer()
        consumer.committed_at[OTHER] = 40
        consumer.assigned = {READINGS, OTHER, TP("other-topic", 0)}
        inbox = inbox_with(consumer)
        assert inbox.next_offsets() == {0: 0, 1: 40}, "nothing committed: from the start"
        await inbox.put(fetched(READINGS, 0, 5))
        async with inbox.batch(100):
            pass
        assert inbox.next_offsets() == {0: 5, 1: 40}
        consumer.gen = 2  # a rebalance: the committed offsets again until batches come
        consumer.committed_at[READINGS] = 3
        assert inbox.next_offsets() == {0: 3, 1: 40}

    asyncio.run(run())
