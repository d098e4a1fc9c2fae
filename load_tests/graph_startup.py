"""Start-up of a supply-chain worker's graph against the length of the transactions topic, from
the shared snapshot (agents/graph_snapshots.py) and by replaying the topic, in the same run.

    python -m load_tests.graph_startup [--lengths 20000 80000] [--tail 2000] [--model-dir model_store]

For each length L, on a fresh embedded broker: L transactions of the product's simulator (the
network the default model trained on) go to `supply-chain-transactions` (4 partitions); a
follower reads them and writes a snapshot; `--tail` more transactions follow. Then a follower
starts from the snapshot and another replays the topic from the beginning; each is timed from
its start until it has applied every transaction in the topic. Also times making the node
embeddings from the graph once (each worker does that itself). Prints one row per length.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from agents.graph_snapshots import GraphSnapshots
from agents.supply_chain import GraphFollower, ScorerHandle
from stream_app.broker import EmbeddedBroker
from stream_app.kafka_io import FaustStyleSender, encode_json, ensure_topics, json_producer, read_partition_latest
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings, SupplyChainSettings
from stream_app.simulation.supply_chain import supply_chain_events
from load_tests.cluster import free_port

PARTITIONS = 4


def transactions(n: int) -> list[dict[str, Any]]:
    settings = Settings()
    out: list[dict[str, Any]] = []
    for topic, event in supply_chain_events(settings, seed=7):
        if topic == settings.topics.supply_chain_transactions:
            out.append(event.value)
            if len(out) == n:
                return out
    return out


async def _until(check: Callable[[], bool], timeout: float = 900.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError("the follower did not catch up")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def _produce(bootstrap: str, txs: list[dict[str, Any]]) -> None:
    producer = json_producer(bootstrap)
    await producer.start()
    try:
        pending = [await producer.send("supply-chain-transactions", encode_json(t), key=t["shipment_id"].encode())
                   for t in txs]
        for fut in pending:
            await fut
    finally:
        await producer.stop()


async def _start(settings: Settings, model_dir: Path, producer: Any = None, writer: bool = False,
                 from_snapshot: bool = True) -> tuple[GraphFollower, GraphSnapshots, asyncio.Task[None], float]:
    """A follower like a worker's; returns it with the time its scorer took to load."""
    conf = settings.supply_chain.model_copy(update={"graph_from_snapshot": from_snapshot})
    settings = settings.model_copy(update={"supply_chain": conf})
    started = time.monotonic()
    handle = ScorerHandle(ModelRegistry(model_dir), settings)
    await handle.get()
    loaded = time.monotonic() - started
    shared = GraphSnapshots(settings)
    shared.writer = writer
    follower = GraphFollower(settings, handle, snapshots=shared)
    return follower, shared, asyncio.create_task(follower.run(producer)), loaded


def one_length(length: int, tail: int, model_dir: Path) -> dict[str, Any]:
    txs = transactions(length + tail)
    with tempfile.TemporaryDirectory(prefix="graph-startup-") as tmp, \
            EmbeddedBroker(f"127.0.0.1:{free_port()}", log_file=Path(tmp) / "broker.log") as broker:
        return asyncio.run(_measure(broker.bootstrap, txs, length, tail, model_dir))


async def _measure(bootstrap: str, txs: list[dict[str, Any]], length: int, tail: int, model_dir: Path) -> dict[str, Any]:
    settings = Settings(kafka_bootstrap_servers=bootstrap, model_dir=model_dir,
                        supply_chain=SupplyChainSettings(graph_snapshot_interval_s=3600.0))
    await ensure_topics(bootstrap, ["supply-chain-transactions", "supply-chain-verdicts"], PARTITIONS)
    await ensure_topics(bootstrap, ["supply-chain-graph"], 1, compacted=["supply-chain-graph"])
    await _produce(bootstrap, txs[:length])
    aio = json_producer(bootstrap)
    await aio.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        writer, shared, task, _ = await _start(settings, model_dir, FaustStyleSender(aio), writer=True)
        tasks.append(task)
        await _until(lambda: writer.applied >= length)
        shared._last = 0.0  # a snapshot now
        await _until(lambda: shared._writing is not None)
        await shared.written()
        shared.writer = False
        size = sum(len(v) for v in (await read_partition_latest(settings, "supply-chain-graph", 0, 10.0)).values())
        await _produce(bootstrap, txs[length:])
        await _until(lambda: writer.applied >= length + tail)

        row: dict[str, Any] = {"length": length, "tail": tail, "snapshot_bytes": size}
        # what each worker does itself instead of loading shared embeddings: make them from its graph
        scorer = writer.handle.serving
        assert scorer is not None and scorer.refresher is not None
        started = time.perf_counter()
        await writer.handle.run(scorer.refresher.refresh_now, scorer.graph)
        row["embeddings_ms"], row["nodes"] = 1000 * (time.perf_counter() - started), scorer.graph.nodes
        for name, from_snapshot, expected in (("snapshot", True, tail), ("replay", False, length + tail)):
            started = time.monotonic()
            follower, _, task, loaded = await _start(settings, model_dir, from_snapshot=from_snapshot)
            tasks.append(task)
            await _until(lambda: follower.applied >= expected)
            row[f"{name}_s"] = time.monotonic() - started
            row[f"{name}_model_s"] = loaded
            row[f"{name}_read"] = follower.applied
            task.cancel()
        return row
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await aio.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[20_000, 80_000])
    parser.add_argument("--tail", type=int, default=2_000)
    parser.add_argument("--model-dir", type=Path, default=Path("model_store"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [one_length(n, args.tail, args.model_dir) for n in args.lengths]
    print("| transactions in the topic | snapshot | start-up from the snapshot | records read | "
          "start-up by replay | records read | embeddings of the graph |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['length'] + r['tail']:,} | {r['snapshot_bytes'] / 1e6:.2f} MB | {r['snapshot_s']:.1f} s "
              f"(model {r['snapshot_model_s']:.1f} s) | {r['snapshot_read']:,} | {r['replay_s']:.1f} s "
              f"(model {r['replay_model_s']:.1f} s) | {r['replay_read']:,} | "
              f"{r['embeddings_ms']:.0f} ms ({r['nodes']:,} nodes) |")


if __name__ == "__main__":
    main()
