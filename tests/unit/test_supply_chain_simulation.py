"""The supply-chain simulator: valid contract messages, labelled attacks of every kind, lots
that move consistently, and a live stream on the same network as the history."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

from schemas import SupplyChainTransaction, SupplyChainVerdict
from stream_app.settings import Settings
from stream_app.simulation.supply_chain import (
    ATTACK_KINDS, SupplyChainConfig, SupplyChainSimulator, supply_chain_events,
)
from tests.integration.supply_chain_fixtures import SMALL, SMALL_NETWORK


def _history(days: float = 30, **overrides):
    config = SupplyChainConfig(network=SMALL_NETWORK, attacks_per_day=6.0, **overrides)
    return SupplyChainSimulator(config).history(days)


def test_history_is_valid_time_ordered_and_reproducible() -> None:
    a, b = _history(seed=1), _history(seed=1)
    assert a.transactions == b.transactions and a.verdicts == b.verdicts
    assert _history(seed=2).transactions != a.transactions
    txs = [SupplyChainTransaction.model_validate(t) for t in a.transactions]
    [SupplyChainVerdict.model_validate(v) for v in a.verdicts]
    assert len({t.event_id for t in txs}) == len(txs)
    # time-ordered up to the second shipment of an order (1 s later) within a day's processing
    assert all((b_.ts - a_.ts).total_seconds() > -86400 for a_, b_ in zip(txs, txs[1:]))
    assert {t.source_type for t in txs} >= {"manufacturer", "distributor", "wholesaler", "pharmacy"}


def test_every_attack_kind_is_labelled_by_a_confirmed_verdict() -> None:
    h = _history(days=40)
    kinds = h.attack_shipments()
    assert set(kinds.values()) == set(ATTACK_KINDS)
    shipments = {t["shipment_id"] for t in h.transactions}
    assert set(kinds) <= shipments
    cleared = [v for v in h.verdicts if v["verdict"] == "cleared"]
    assert cleared and not {v["shipment_id"] for v in cleared} & set(kinds)


def test_normal_lots_move_consistently_and_clones_do_not() -> None:
    """A normal shipper produced the lot (manufacturer) or received it earlier (or held it
    before the data began); a lot clone's shipper never received the lot."""
    h = _history(days=40, seed=4)
    kinds = h.attack_shipments()
    received: dict[str, set[str]] = defaultdict(set)
    first_seen: dict[str, str] = {}
    clones = 0
    for tx in h.transactions:
        lot, src = tx["lot_id"], tx["source_id"]
        kind = kinds.get(tx["shipment_id"])
        if kind == "lot_clone":
            assert src not in received[lot]
            clones += 1
        elif kind is None and tx["source_type"] != "manufacturer" and lot in first_seen and first_seen[lot] == "manufacturer":
            assert src in received[lot], tx
        first_seen.setdefault(lot, tx["source_type"])
        received[lot].add(tx["target_id"])
    assert clones > 0


def test_live_stream_shares_the_network_and_routes_topics() -> None:
    settings = Settings()
    start = datetime(2025, 3, 3, tzinfo=timezone.utc)
    nodes = {n for t in _history(days=5).transactions for n in (t["source_id"], t["target_id"])}
    seen_topics, live_nodes = set(), set()
    for i, (topic, event) in enumerate(supply_chain_events(settings, seed=9, start=start, config=SMALL)):
        seen_topics.add(topic)
        if topic == settings.topics.supply_chain_transactions:
            assert event.key == event.value["shipment_id"]
            live_nodes |= {event.value["source_id"], event.value["target_id"]}
            assert event.value["ts"] >= "2025-03-03"
        if i > 3000:
            break
    assert seen_topics == {settings.topics.supply_chain_transactions, settings.topics.supply_chain_verdicts}
    assert len(live_nodes & nodes) > 0.8 * len(nodes)  # same network; the rest: new pharmacies, attackers


def test_live_days_run_from_midnight_as_in_the_history_the_models_learn_from() -> None:
    """A live stream asked to start mid-day (the demo starts a year before now) is the stream of
    that day from midnight: otherwise every order, shift and delivery moves to other hours, and
    the models flagged 30-55 % of it."""
    from dataclasses import replace
    from itertools import islice

    settings = Settings()
    midnight = datetime(2025, 3, 3, tzinfo=timezone.utc)
    asked = list(islice(supply_chain_events(settings, seed=9, start=midnight.replace(hour=11, minute=35), config=SMALL), 300))
    sim = SupplyChainSimulator(replace(SMALL, seed=9, start=midnight))
    reference = [e.value for e in islice(sim.live(midnight), 300)]
    assert [e.value["ts"] for _, e in asked] == [v["ts"] for v in reference]
