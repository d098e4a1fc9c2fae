"""The supply-chain agent's paths without a broker: one batch through the pipeline (scores,
alerts, explanations, dead letters), verdicts joined and dead-lettered, the follower's barrier."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from stream_app.intake import RawMessage
from agents.publish import Outbox
from agents.supply_chain import GraphFollower, ScorerHandle, apply_verdicts, pipeline
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings
from tests.integration.supply_chain_fixtures import live_scenario, one_torch_thread, supply_chain_model_dir  # noqa: F401
from tests.model_store import register_copy
from tests.unit.agent_fixtures import RecordingProducer
from tests.unit.test_supply_chain_graph import chain, tx

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _message(offset: int, value: bytes, topic: str = "supply-chain-transactions") -> RawMessage:
    return RawMessage(topic, 0, offset, b"k", value, None)


def test_a_batch_with_good_and_bad_messages(tmp_path: Path) -> None:
    settings = Settings(model_dir=tmp_path)
    handle = ScorerHandle(ModelRegistry(tmp_path), settings)
    events = chain() + [tx(99, 30, "W9", "P7", "L1")]
    messages = [_message(i, e.model_dump_json().encode()) for i, e in enumerate(events)]
    messages.insert(3, _message(100, b"{oops"))
    messages.insert(5, _message(101, json.dumps({**json.loads(events[0].model_dump_json()), "quantity": "ten"}).encode()))
    producer = RecordingProducer()

    async def run() -> None:
        scorer = await handle.get()
        await pipeline(settings, scorer.score_batch, Outbox(producer), handle.executor).process(messages)

    asyncio.run(run())
    scores = producer.on("supply-chain-scores")
    assert [s["event_id"] for s in scores] == [e.event_id for e in events]
    assert [(d["offset"], d["error_code"]) for d in producer.on("dead-letters")] == [(100, "not_json"), (101, "invalid_fields")]
    alerts = producer.on("alerts")
    assert [a["event_ids"] for a in alerts] == [["e99"]] and alerts[0]["decision_source"] == "rule"
    assert [e["alert_id"] for e in producer.on("explanations")] == [alerts[0]["alert_id"]]
    handle.executor.shutdown()


def test_verdicts_are_joined_and_bad_ones_dead_lettered(supply_chain_model_dir: Path) -> None:
    settings = Settings(model_dir=supply_chain_model_dir)
    handle = ScorerHandle(ModelRegistry(supply_chain_model_dir), settings)
    events, verdicts = live_scenario(400, seed=41)
    producer = RecordingProducer()

    async def run() -> int:
        scorer = await handle.get()
        run = pipeline(settings, scorer.score_batch, Outbox(producer), handle.executor)
        await run.process([_message(i, json.dumps(e).encode()) for i, e in enumerate(events)])
        raw = [_message(i, json.dumps(v).encode(), "supply-chain-verdicts") for i, v in enumerate(verdicts)]
        raw.append(_message(999, b'{"event_id": "v", "shipment_id": "s", "verdict": "maybe", "ts": "2025-03-04T00:00:00Z"}',
                            "supply-chain-verdicts"))
        return await apply_verdicts(handle, Outbox(producer), raw, follower=False)

    joined = asyncio.run(run())
    assert joined == len(verdicts) > 0
    (letter,) = producer.on("dead-letters")
    assert letter["offset"] == 999 and letter["error_code"] == "invalid_fields"
    handle.executor.shutdown()


def test_the_follower_barrier_times_out_instead_of_blocking() -> None:
    follower = GraphFollower(Settings(), handle=None)  # type: ignore[arg-type]

    async def run() -> tuple[bool, bool]:
        timed_out = await follower.sync(0.05)
        waiter = asyncio.ensure_future(follower.sync(5.0))
        await asyncio.sleep(0.01)
        for _, event in follower._waiters:  # what the follower does after a poll that reached the end
            event.set()
        return timed_out, await waiter

    assert asyncio.run(run()) == (False, True)
    assert asyncio.run(follower.sync(0.0)) is False


class _Fetched:
    """What the follower reads of its consumer: per partition the last fetch's time and
    high-water mark, and the position."""

    def __init__(self, at_ms: float, highwater: int, position: int) -> None:
        self.at_ms, self.hw, self.pos = at_ms, highwater, position

    def last_poll_timestamp(self, tp: Any) -> float:
        return self.at_ms

    def highwater(self, tp: Any) -> int:
        return self.hw

    async def position(self, tp: Any) -> int:
        return self.pos


def test_the_follower_releases_a_batch_only_after_a_fetch_made_since_it_asked_was_read() -> None:
    follower = GraphFollower(Settings(supply_chain={"graph_sync_lag_ms": 100}), handle=None)  # type: ignore[arg-type]
    partitions = [TopicPartition("t", p) for p in range(3)]

    async def run() -> list[bool]:
        early, late = asyncio.Event(), asyncio.Event()
        follower._waiters = [(1_000.0, early), (2_000.0, late)]
        seen = []
        # fetched at 1,500 ms: with the 100 ms lag allowed, only the batch that asked at 1,000 is covered
        for consumer in (_Fetched(1_500, 10, 9), _Fetched(1_500, 10, 10), _Fetched(1_950, 12, 12)):
            await follower._release(consumer, partitions)  # type: ignore[arg-type]
            seen += [early.is_set(), late.is_set()]
        return seen

    # behind the high-water mark: nobody; read up: only the batch that asked before that fetch
    assert asyncio.run(run()) == [False, False, True, False, True, True]
    assert follower._waiters == []


def test_a_candidate_scores_in_shadow_on_the_shared_graph_and_takes_over_warm(supply_chain_model_dir: Path, tmp_path: Path) -> None:
    """v2 (v1's artifact registered again) shadows v1: every score has its v2 twin on the shadow
    topic, equal but for the version (same model, same live graph: applying a transaction twice
    changes nothing), verdicts count for both versions, and promoting v2 serves the shadow."""
    import shutil

    root = tmp_path / "store"
    shutil.copytree(supply_chain_model_dir, root)
    registry = ModelRegistry(root)
    registry.set_candidate("supply-chain", register_copy(registry, "supply-chain"), actor="test")
    settings = Settings(model_dir=root)
    handle = ScorerHandle(registry, settings)
    events, verdicts = live_scenario(300, seed=43)
    producer = RecordingProducer()

    async def run() -> tuple[object, object]:
        await handle.get()
        await handle.sync()
        shadow = handle.shadow
        await pipeline(settings, handle.score_batch, Outbox(producer), handle.executor).process(
            [_message(i, json.dumps(e).encode()) for i, e in enumerate(events)])
        raw = [_message(i, json.dumps(v).encode(), "supply-chain-verdicts") for i, v in enumerate(verdicts)]
        await apply_verdicts(handle, Outbox(producer), raw, follower=False)
        registry.promote("supply-chain", "v2", actor="test")
        await handle.sync()
        return shadow, handle.serving

    shadow, serving = asyncio.run(run())
    served, shadowed = producer.on("supply-chain-scores"), producer.on("supply-chain-shadow-scores")
    assert [s["event_id"] for s in shadowed] == [s["event_id"] for s in served] == [e["event_id"] for e in events]
    assert {s["model_version"] for s in served} == {"v1"} and {s["model_version"] for s in shadowed} == {"v2"}
    assert all(s["shadow"] for s in shadowed) and not any(s["shadow"] for s in served)
    for a, b in zip(served, shadowed):
        assert (a["score"], a["flagged"], a["decision_source"]) == (b["score"], b["flagged"], b["decision_source"])
    assert {a["model_version"] for a in producer.on("alerts")} <= {"v1"}, "a shadow never alerts"
    live = {v: (c.outcomes_alerted, c.outcomes_missed) for v, c in handle.live.items()}
    assert live["v1"] == live["v2"] and sum(live["v1"]) > 0
    assert serving is shadow, "the promoted candidate took over with the graph it shared"
    handle.executor.shutdown()


def test_a_candidate_with_a_share_serves_those_shipments_and_alerts_on_them(supply_chain_model_dir: Path, tmp_path: Path) -> None:
    """A/B: with share 0.5 the candidate's scores (and alerts) are the published ones for the
    shipments its hash picks; the current version's go to the shadow topic there."""
    import shutil
    import zlib

    root = tmp_path / "store"
    shutil.copytree(supply_chain_model_dir, root)
    registry = ModelRegistry(root)
    registry.set_candidate("supply-chain", register_copy(registry, "supply-chain"), share=0.5, actor="test")
    settings = Settings(model_dir=root)
    handle = ScorerHandle(registry, settings)
    events, _ = live_scenario(300, seed=43)
    producer = RecordingProducer()

    async def run() -> None:
        await handle.get()
        await handle.sync()
        await pipeline(settings, handle.score_batch, Outbox(producer), handle.executor).process(
            [_message(i, json.dumps(e).encode()) for i, e in enumerate(events)])

    asyncio.run(run())
    treated = lambda shipment: zlib.crc32(shipment.encode()) < 0.5 * 2**32  # noqa: E731
    served, shadowed = producer.on("supply-chain-scores"), producer.on("supply-chain-shadow-scores")
    assert {s["model_version"] for s in served} == {"v1", "v2"}
    for a, b in zip(served, shadowed):
        assert a["event_id"] == b["event_id"] and not a["shadow"] and b["shadow"]
        assert (a["model_version"], b["model_version"]) == (("v2", "v1") if treated(a["shipment_id"]) else ("v1", "v2"))
    alerts = producer.on("alerts")
    assert alerts and all(a["model_version"] == ("v2" if treated(a["entity_id"]) else "v1") for a in alerts)
    handle.executor.shutdown()
