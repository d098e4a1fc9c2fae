"""Graph upkeep: as-of-event-time answers that do not depend on arrival order, lots, verdicts,
snapshots re-anchored in time, the torch-geometric conversion and the embedding refresher."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
import torch

from schemas import SupplyChainTransaction, SupplyChainVerdict
from stream_app.graph import pyg
from stream_app.graph.embeddings import EmbeddingRefresher, compute_table
from stream_app.graph.state import TransactionGraph, age_hours, count_before, replay
from stream_app.models.supply_chain_gnn import SupplyChainGNN
from tests.integration.supply_chain_fixtures import one_torch_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T0 = datetime(2025, 1, 6, tzinfo=timezone.utc)


def tx(i: int, hours: float, src: str, dst: str, lot: str = "L1", *, src_type: str = "wholesaler",
       dst_type: str = "pharmacy", product: str = "p1", qty: float = 10.0, price: float = 5.0,
       carrier: str | None = "c1", **extra: Any) -> SupplyChainTransaction:
    return SupplyChainTransaction.model_validate({
        "event_id": f"e{i}", "ts": (T0 + timedelta(hours=hours)).isoformat(), "shipment_id": f"s{i}",
        "product_id": product, "lot_id": lot, "source_id": src, "source_type": src_type, "target_id": dst,
        "target_type": dst_type, "quantity": qty, "unit_price": price, "carrier_id": carrier, **extra,
    })


def chain() -> list[SupplyChainTransaction]:
    """Manufacturer M makes lot L1 and ships it to D, D to W, W to three pharmacies, daily (10
    units each: W passes on 120 of the 200 it received)."""
    out = [tx(0, 0, "M", "D", src_type="manufacturer", dst_type="distributor", qty=500.0),
           tx(1, 24, "D", "W", src_type="distributor", dst_type="wholesaler", qty=200.0)]
    for k in range(12):
        out.append(tx(2 + k, 48 + 24 * k, "W", f"P{k % 3}"))
    return out


def test_answers_as_of_event_time_do_not_depend_on_arrival_order() -> None:
    events = chain()
    ordered, shuffled = TransactionGraph(), TransactionGraph()
    replay(ordered, events)
    mixed = events[:]
    random.Random(3).shuffle(mixed)
    replay(shuffled, mixed)
    for graph in (ordered, shuffled):
        e = graph.edge("W", "P0")
        at = events[-3].ts.timestamp()  # the 4th shipment W -> P0 (k = 9)
        assert count_before(e["ts"], at) == 3
        assert age_hours(e["ts"], at) == 9 * 24
        assert graph.edge("W", "P0")["n"] == 4 and graph.node("W")["n_out"] == 12
        # a transaction never counts itself
        assert count_before(graph.node("M")["ts"], events[0].ts.timestamp()) == 0


def test_duplicates_are_applied_once() -> None:
    graph = TransactionGraph()
    events = chain()
    assert replay(graph, events + events[:5]) == len(events)
    assert graph.applied == len(events) and graph.edge("M", "D")["n"] == 1


def test_lot_view_knows_provenance_holders_and_a_lot_at_two_places() -> None:
    graph = TransactionGraph()
    events = chain()
    clone = tx(99, 30, "W9", "P7", "L1")  # W9 never received L1
    replay(graph, events + [clone])
    w_ships = events[2]
    view = graph.lot_view(w_ships, w_ships.ts.timestamp())
    assert view.known and view.provenance and view.source_received is not None and not view.source_is_origin
    cv = graph.lot_view(clone, clone.ts.timestamp())
    assert cv.provenance and cv.source_received is None and not cv.source_is_origin
    first = graph.lot_view(events[0], events[0].ts.timestamp())
    assert not first.known and first.source_is_origin and first.provenance


def test_confirmed_verdicts_implicate_new_nodes_only_and_wait_for_their_shipment() -> None:
    graph = TransactionGraph()
    replay(graph, chain() + [tx(100 + k, 400 + k, "W", "P0") for k in range(10)])
    established = SupplyChainVerdict.model_validate({"event_id": "v1", "ts": T0.isoformat(), "shipment_id": "s5",
                                                     "verdict": "confirmed", "attack_kind": "off_hours"})
    assert not graph.apply_verdict(established)  # W has 23 shipments: one bad one does not blacklist it
    early = SupplyChainVerdict.model_validate({"event_id": "v2", "ts": T0.isoformat(), "shipment_id": "s50",
                                               "verdict": "confirmed", "attack_kind": "counterfeit_entry"})
    assert not graph.apply_verdict(early)  # not seen yet: waits
    graph.apply(tx(50, 400, "X-new", "P1", "FAKE", src_type="other"))
    assert graph.implicated == {"X-new": "s50"} and graph.edge("X-new", "P1")["implicated"]


def test_snapshot_round_trip_re_anchors_time_and_skips_what_it_holds() -> None:
    graph = TransactionGraph()
    events = chain()
    replay(graph, events)
    state = graph.to_state()
    loaded = TransactionGraph.from_state(state)
    assert loaded.anchor_pending
    assert not loaded.apply(events[3])  # already part of the snapshot
    later = tx(500, 24 * 400, "W", "P0")  # the stream starts 400 days after the history
    assert loaded.apply(later)
    shift = loaded.time_shift
    assert abs(shift - (later.ts.timestamp() - events[-1].ts.timestamp() - 1.0)) < 1e-6
    e = loaded.edge("W", "P0")
    assert count_before(e["ts"], later.ts.timestamp()) == 4  # the history is the recent past
    assert loaded.lots_since == later.ts.timestamp()  # after a gap, lots are watched afresh


def test_pruning_forgets_idle_lots() -> None:
    graph = TransactionGraph()
    replay(graph, chain() + [tx(90, 24 * 100, "W", "P1", "L2")])
    assert graph.prune_lots(30 * 86400.0) == 1 and set(graph.lots) == {"L2"}


def _network_graph() -> TransactionGraph:
    """Two regions, each a distributor with two wholesalers and four pharmacies, shipping often."""
    graph, i = TransactionGraph(), 0
    for r in "AB":
        for w in range(2):
            for rep in range(4):
                graph.apply(tx(i, i, f"D{r}", f"W{r}{w}", src_type="distributor", dst_type="wholesaler"))
                i += 1
            for p in range(4):
                for rep in range(4):
                    graph.apply(tx(i, i, f"W{r}{w}", f"P{r}{w}{p}"))
                    i += 1
    graph.apply(tx(i, i, "WA0", "PB00"))  # one cross-region shipment: not established
    return graph


def test_snapshot_keeps_established_flows_with_positional_features() -> None:
    graph = _network_graph()
    snap = pyg.snapshot(graph, min_edge_count=3)
    index = snap.index
    assert snap.edges.shape[1] == 2 * (2 + 8)  # per region 2 D->W and 8 W->P edges, not WA0->PB00
    anchors = ["DA", "DB"]
    prox = pyg.anchor_proximity(snap, anchors)
    assert prox[index["DA"], 0] == 1.0 and prox[index["WA0"], 0] == 0.5 and prox[index["PA00"], 0] == 0.25
    assert prox[index["PA00"], 1] == 0.0  # the regions are not connected through established flows
    data = pyg.to_data(snap, anchors)
    assert data.x.shape == (len(snap.nodes), pyg.feature_count(anchors))
    assert data.edge_index.shape[1] == 2 * snap.edges.shape[1]  # both directions


def test_embeddings_refresh_every_n_transactions_inline_and_in_the_background() -> None:
    graph = _network_graph()
    torch.manual_seed(0)
    model = SupplyChainGNN(pyg.feature_count(["DA", "DB"]), hidden=16, embedding=8)
    inline = EmbeddingRefresher(model, ["DA", "DB"], every_n=5, every_s=1e9, background=False)
    assert inline.maybe_refresh(graph) and inline.table is not None
    rows = inline.table.rows(["PA00", "nobody"])
    assert rows[0] >= 0 and rows[1] == -1
    assert not inline.maybe_refresh(graph)  # nothing new
    for k in range(5):
        graph.apply(tx(1000 + k, 2000 + k, "WA0", "PA00"))
    assert inline.maybe_refresh(graph) and inline.refreshes == 2

    background = EmbeddingRefresher(model, ["DA", "DB"], every_n=1, background=True)
    assert background.maybe_refresh(graph) and background.table is not None  # the first one inline
    graph.apply(tx(2000, 3000, "WA0", "PA01"))
    assert background.maybe_refresh(graph)  # in its thread; scoring keeps the previous table meanwhile
    background.wait(10)
    assert background.refreshes == 2 and background.table.applied == graph.applied
    fresh = compute_table(model, pyg.snapshot(graph, 3), ["DA", "DB"], graph.applied)
    np.testing.assert_allclose(background.table.z.numpy(), fresh.z.numpy(), atol=1e-6)
    background.close()
