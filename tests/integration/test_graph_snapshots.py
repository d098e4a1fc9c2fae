"""The supply-chain graph shared through `supply-chain-graph` on a real broker: one worker's
follower writes a snapshot; a worker started later loads it and reads only what came after it,
and ends with the same graph, and the same scores, as the worker that read everything. A forged
snapshot is refused, and its reader replays the topics from the beginning."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from agents.graph_snapshots import GraphSnapshots
from agents.supply_chain import GraphFollower, ScorerHandle
from schemas import SupplyChainTransaction
from stream_app import metrics
from stream_app.graph import snapshot
from stream_app.kafka_io import FaustStyleSender, ensure_topics, read_partition_latest
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings, SupplyChainSettings
from tests.integration.kafka_clients import produce
from tests.integration.supply_chain_fixtures import live_scenario, supply_chain_model_dir  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
TX, VERDICTS, GRAPH = "supply-chain-transactions", "supply-chain-verdicts", "supply-chain-graph"


async def _until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _send(bootstrap: str, transactions: list[dict[str, Any]]) -> None:
    produce(bootstrap, TX, ((t["shipment_id"].encode(), json.dumps(t).encode()) for t in transactions))


def _graph_view(state: dict[str, Any]) -> dict[str, Any]:
    """What the graph knows, whatever order the partitions' records were read in (two followers
    interleave the partitions differently): its tables, ledgers and lots as sets, implicated nodes without
    which confirmed shipment named them; not the memory of ids (duplicates, verdict joins)."""
    view = {k: sorted(v, key=str) if isinstance(v, list) else v for k, v in state.items()
            if k not in ("event_ids", "shipments", "lots", "implicated")}
    view["lots"] = sorted(
        [*lot[:8], *({n: sorted(map(tuple, rs)) for n, rs in (ledger or {}).items()} for ledger in lot[8:])]
        for lot in state["lots"])
    view["implicated"] = sorted(node for node, _ in state["implicated"])
    return _rounded(view)


def _stats_view(stats: dict[str, Any]) -> dict[str, Any]:
    """The amount statistics' buffers as sets (each keeps its latest rows by event time)."""
    view = dict(stats, baseline=sorted(stats["baseline"], key=str))
    for key in ("routes", "products", "edges"):
        view[key] = sorted(([*entry[:-1], sorted(map(tuple, entry[-1]))] for entry in stats[key]), key=str)
    return _rounded(view)


def _rounded(value: Any) -> Any:
    """Sums of the same amounts added in another order differ in the last bits."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


async def _follower(settings: Settings, model_dir: Path, producer: Any = None,
                    writer: bool = False) -> tuple[GraphFollower, ScorerHandle, GraphSnapshots, asyncio.Task[None]]:
    handle = ScorerHandle(ModelRegistry(model_dir), settings)
    await handle.get()
    shared = GraphSnapshots(settings)
    shared.writer = writer
    follower = GraphFollower(settings, handle, snapshots=shared)
    return follower, handle, shared, asyncio.create_task(follower.run(producer))


def test_a_starting_worker_loads_the_shared_graph_and_reads_only_what_came_after(
    broker: Any, supply_chain_model_dir: Path
) -> None:
    asyncio.run(_scenario(broker.bootstrap, supply_chain_model_dir))


async def _scenario(bootstrap: str, supply_chain_model_dir: Path) -> None:
    settings = Settings(kafka_bootstrap_servers=bootstrap, model_dir=supply_chain_model_dir,
                        supply_chain=SupplyChainSettings(graph_snapshot_interval_s=3600.0, embedding_refresh_s=3600.0))
    await ensure_topics(bootstrap, [TX, VERDICTS], PARTITIONS)
    await ensure_topics(bootstrap, [GRAPH], 1, compacted=[GRAPH])
    transactions, verdicts = live_scenario(3000, seed=29)
    first, tail, fresh = transactions[:2000], transactions[2000:2600], transactions[2600:]
    _send(bootstrap, first)

    aio = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await aio.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        # the writer: reads everything from the beginning, then writes a snapshot
        a, handle_a, shared_a, task = await _follower(settings, supply_chain_model_dir, FaustStyleSender(aio), writer=True)
        tasks.append(task)
        await _until(lambda: a.applied >= len(first))
        # the verdicts after the shipments they judge (a verdict implicates an edge by how many
        # shipments it had when the verdict was read: one order for both workers)
        produce(bootstrap, VERDICTS, ((v["shipment_id"].encode(), json.dumps(v).encode()) for v in verdicts))
        await _until(lambda: a.verdicts_read >= len(verdicts))
        shared_a._last = 0.0  # due now
        await _until(lambda: shared_a._writing is not None)
        await shared_a.written()
        shared_a.writer = False
        head = snapshot.head_of(await read_partition_latest(settings, GRAPH, 0, 10.0))
        assert head is not None and head["model_version"] == "v1"

        _send(bootstrap, tail)
        await _until(lambda: a.applied >= len(first) + len(tail))

        # a worker started now: the snapshot, then only the tail
        restored = metrics.STATE_RESTORED.labels("supply_chain")._value.get()
        b, handle_b, _, task = await _follower(settings, supply_chain_model_dir)
        tasks.append(task)
        await _until(lambda: b.applied >= len(tail))
        await asyncio.sleep(1.0)  # nothing more comes
        assert b.applied == len(tail)
        assert sum(o for tp, o in b.started_at.items() if tp.topic == TX) == len(first)
        assert metrics.STATE_RESTORED.labels("supply_chain")._value.get() > restored

        scorer_a, scorer_b = handle_a.serving, handle_b.serving
        assert scorer_a is not None and scorer_b is not None
        state_a, stats_a = await handle_a.run(scorer_a.graph_state)
        state_b, stats_b = await handle_b.run(scorer_b.graph_state)
        assert _graph_view(state_b) == _graph_view(state_a)
        assert _stats_view(stats_b) == _stats_view(stats_a)

        # the same graph scores alike: both from fresh embeddings of it
        await handle_a.run(scorer_a.refresher.refresh_now, scorer_a.graph)
        await handle_b.run(scorer_b.refresher.refresh_now, scorer_b.graph)
        events = [SupplyChainTransaction.model_validate(t) for t in fresh]
        scored_a = await handle_a.run(scorer_a.score_batch, events)
        scored_b = await handle_b.run(scorer_b.score_batch, events)
        assert [r.score.flagged for r in scored_b] == [r.score.flagged for r in scored_a]
        np.testing.assert_allclose([r.score.score for r in scored_b], [r.score.score for r in scored_a], rtol=1e-5, atol=1e-6)

        # a forged chunk: refused, and its reader replays everything
        records = await read_partition_latest(settings, GRAPH, 0, 10.0)
        head = snapshot.head_of(records)
        assert head is not None
        await (await aio.send(GRAPH, b"forged", key=snapshot.chunk_key(head["slot"], 0), partition=0))
        refused = metrics.STATE_REFUSED.labels("supply_chain", "graph_snapshot")._value.get()
        c, _, _, task = await _follower(settings, supply_chain_model_dir)
        tasks.append(task)
        await _until(lambda: c.applied >= len(first) + len(tail))
        assert metrics.STATE_REFUSED.labels("supply_chain", "graph_snapshot")._value.get() == refused + 1
        assert all(offset == 0 for offset in c.started_at.values())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await aio.stop()
