"""The shared graph snapshot's records (stream_app/graph/snapshot.py): cut into chunks, head
last, two slots so a snapshot cut short leaves the previous one readable, and anything damaged,
incomplete or forged refused rather than loaded."""

from __future__ import annotations

import json

import pytest

from schemas import SupplyChainVerdict
from stream_app.features.supply_chain import RobustStats
from stream_app.graph import snapshot
from stream_app.graph.snapshot import HEAD_KEY, BadSnapshot, GraphSnapshot
from stream_app.graph.state import TransactionGraph
from tests.unit.test_supply_chain_graph import chain, tx


def _graph() -> tuple[TransactionGraph, RobustStats]:
    graph, stats = TransactionGraph(), RobustStats()
    for t in chain():
        graph.apply(t)
        stats.update(t)
    return graph, stats


def _snap(graph: TransactionGraph, stats: RobustStats, offset: int = 40) -> GraphSnapshot:
    return GraphSnapshot("v3", {"supply-chain-transactions": {0: offset, 1: 7}, "supply-chain-verdicts": {0: 2}},
                         graph.to_state(), stats.to_state(), 1_700_000_000.0)


def _written(*snaps: tuple[GraphSnapshot, int], chunk_bytes: int = 300) -> dict[bytes, bytes]:
    """The latest record per key after writing these snapshots in order (as compaction keeps)."""
    topic: dict[bytes, bytes] = {}
    for snap, slot in snaps:
        topic.update(snapshot.encode(snap, slot, chunk_bytes))
    return topic


def test_a_snapshot_comes_back_whole_from_its_chunks() -> None:
    graph, stats = _graph()
    snap = _snap(graph, stats)
    records = snapshot.encode(snap, 0, chunk_bytes=300)
    assert len(records) > 3 and records[-1][0] == HEAD_KEY  # several chunks, the head last
    back = snapshot.decode(dict(records))
    assert back is not None
    assert back.offsets == snap.offsets and back.model_version == "v3" and back.written_at == snap.written_at
    assert back.graph == json.loads(json.dumps(snap.graph)) and back.stats == json.loads(json.dumps(snap.stats))
    rebuilt = TransactionGraph.from_state(back.graph)
    assert (rebuilt.nodes, rebuilt.edges, rebuilt.applied) == (graph.nodes, graph.edges, graph.applied)


def test_no_snapshot_yet_is_none_and_the_first_goes_to_slot_0() -> None:
    assert snapshot.decode({}) is None
    assert snapshot.next_slot({}) == 0


def test_a_snapshot_cut_short_leaves_the_previous_one() -> None:
    graph, stats = _graph()
    first, second = _snap(graph, stats, 40), _snap(graph, stats, 90)
    topic = _written((first, 0))
    assert snapshot.next_slot(topic) == 1
    # the second's chunks reached the topic, its head did not
    topic.update(snapshot.encode(second, 1, 300)[:-1])
    back = snapshot.decode(topic)
    assert back is not None and back.offsets == first.offsets
    # and once its head is there, it is the snapshot
    topic.update(snapshot.encode(second, 1, 300)[-1:])
    back = snapshot.decode(topic)
    assert back is not None and back.offsets == second.offsets
    assert snapshot.next_slot(topic) == 0


@pytest.mark.parametrize("damage", ["forged chunk", "missing chunk", "garbage head", "other format", "bad slot"])
def test_a_damaged_snapshot_is_refused(damage: str) -> None:
    graph, stats = _graph()
    topic = _written((_snap(graph, stats), 0))
    head = json.loads(topic[HEAD_KEY])
    if damage == "forged chunk":
        topic[snapshot.chunk_key(0, 1)] = b"x" * 300
    elif damage == "missing chunk":
        del topic[snapshot.chunk_key(0, head["chunks"] - 1)]
    elif damage == "garbage head":
        topic[HEAD_KEY] = b"\x00not json"
    elif damage == "other format":
        topic[HEAD_KEY] = json.dumps({**head, "format": 99}).encode()
    else:
        topic[HEAD_KEY] = json.dumps({**head, "slot": 7}).encode()
    with pytest.raises(BadSnapshot):
        snapshot.decode(topic)
    assert snapshot.next_slot(topic) in (0, 1)


def test_a_consistent_forgery_with_a_bad_body_is_refused() -> None:
    """Chunks that hash to their head but are not a snapshot (someone wrote both)."""
    import hashlib
    import zlib

    blob = zlib.compress(b'{"model_version": "v3", "offsets": {"t": {"0": -5}}, "graph": {}, "stats": {}}')
    head = {"format": 1, "slot": 0, "chunks": 1, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
            "model_version": "v3", "written_at": 0.0}
    with pytest.raises(BadSnapshot, match="negative offset"):
        snapshot.decode({HEAD_KEY: json.dumps(head).encode(), snapshot.chunk_key(0, 0): blob})


def test_verdicts_waiting_for_their_shipment_travel_with_the_graph() -> None:
    graph, _ = _graph()
    verdict = SupplyChainVerdict.model_validate({"event_id": "v1", "ts": "2025-03-04T00:00:00Z",
                                                 "shipment_id": "s-late", "verdict": "confirmed"})
    assert not graph.apply_verdict(verdict)  # its shipment is not seen yet: it waits
    rebuilt = TransactionGraph.from_state(json.loads(json.dumps(graph.to_state())), anchor=False)
    rebuilt.apply(tx(999, 200.0, "X", "W", "L9", src_type="distributor", dst_type="wholesaler").model_copy(
        update={"shipment_id": "s-late"}))
    assert rebuilt.implicated.get("X") == "s-late"  # a new node with few shipments: implicated
