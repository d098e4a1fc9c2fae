"""Transaction features: robust amount statistics, timing, novelty and lot evidence, cold start."""

from __future__ import annotations

import math

import numpy as np

from stream_app.features.supply_chain import FEATURES, INDEX, FeatureConfig, RobustStats, encode
from stream_app.graph.state import TransactionGraph
from tests.unit.test_supply_chain_graph import chain, tx


def _encode(history, target, stats=None, config=None):
    graph = TransactionGraph()
    stats = stats or RobustStats()
    for t in history + [target]:
        if graph.apply(t):
            stats.update(t)
    row = np.zeros(len(FEATURES))
    encode(target, graph, stats, config or FeatureConfig(provenance_days=1.0), row)
    return dict(zip(FEATURES, row.tolist()))


def _route(n: int, qty: float = 10.0, price: float = 5.0):
    return [tx(i, 24 * i + 10, "W", "P", qty=qty * (1 + 0.05 * (i % 3)), price=price) for i in range(n)]


def test_amounts_against_the_route_then_the_product_baseline() -> None:
    history = _route(8)
    big = _encode(history, tx(50, 24 * 9 + 10, "W", "P", qty=300.0))
    assert big["stats_level"] == 1.0 and big["qty_z"] > 5
    cheap = _encode(history, tx(51, 24 * 9 + 10, "W", "P", price=2.0))
    assert cheap["price_z"] < -10
    # a route with too few shipments falls back to the product's fitted baseline
    stats = RobustStats.fit(history)
    new_route = _encode([], tx(52, 0, "W2", "P9", qty=300.0), stats=stats)
    assert new_route["stats_level"] == 0.5 and new_route["qty_z_product"] > 5
    # a product nobody has seen: no reference, no crash
    unknown = _encode([], tx(53, 0, "W2", "P9", product="brand-new"))
    assert unknown["stats_level"] == 0.0 and unknown["qty_z"] == 0.0 and unknown["product_familiarity"] == 0.0


def test_small_quantities_and_small_counts_are_not_alarming() -> None:
    history = _route(8, qty=2.0)
    assert _encode(history, tx(60, 24 * 9 + 10, "W", "P", qty=5.0))["qty_z"] < 3  # half-Poisson floor
    assert _encode(_route(8, qty=100.0), tx(61, 24 * 9 + 10, "W", "P", qty=1.0))["qty_z"] == -4.0  # clipped


def test_timing_of_the_edge() -> None:
    history = _route(10)  # always at 10:00
    usual = _encode(history, tx(70, 24 * 11 + 10, "W", "P"))
    night = _encode(history, tx(71, 24 * 11 + 2, "W", "P"))
    assert night["night"] == 1.0 and usual["night"] == 0.0
    assert night["edge_hour_share"] == math.log10(0.01) / 2 < usual["edge_hour_share"]


def test_cold_start_is_a_signal_not_an_error() -> None:
    f = _encode(chain(), tx(80, 500, "X-new", "P1", "FAKE", src_type="other", carrier="c-unknown"))
    assert f["src_familiarity"] == 0 and f["src_age"] == 0 and f["edge_familiarity"] == 0
    assert f["carrier_familiarity"] == 0 and f["carrier_on_edge"] == 0 and f["src_other"] == 1.0
    assert f["lot_unproven"] == 1.0 and f["lot_known"] == 0.0  # lots watched > provenance_days: a lot from nowhere
    known = _encode(chain(), tx(81, 24 * 15, "W", "P0"))
    assert known["edge_familiarity"] > 0.5 and known["src_familiarity"] > 0.5 and known["carrier_on_edge"] == 1.0


def test_lot_evidence() -> None:
    clone = _encode(chain(), tx(90, 300, "W9", "P7", "L1"))
    assert clone["lot_two_places"] == 1.0 and clone["lot_unproven"] == 0.0
    normal = _encode(chain(), tx(91, 24 * 13, "W", "P1", "L1"))
    assert normal["lot_two_places"] == 0.0 and normal["lot_dwell"] > 0 and normal["lot_movements"] == 13 / 16
    # lots not watched long enough: no verdict on a lot without provenance, neutral values instead
    late_entry = [tx(0, 0, "W", "P0", "OLD")]
    unwatched = _encode(late_entry, tx(92, 5, "W", "P1", "OLD"), config=FeatureConfig(provenance_days=21.0))
    assert unwatched["lot_unproven"] == 0.0 and unwatched["lot_known"] == 1.0


def test_controlled_products_from_the_transaction_or_the_trained_list() -> None:
    flagged = _encode([], tx(95, 0, "W", "P", features={"controlled": 1.0}))
    listed = _encode([], tx(96, 0, "W", "P", product="opioid"), config=FeatureConfig(controlled=frozenset({"opioid"})))
    assert flagged["controlled"] == listed["controlled"] == 1.0
    assert INDEX["controlled"] == len(FEATURES) - 1
