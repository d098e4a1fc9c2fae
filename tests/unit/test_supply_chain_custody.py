"""Chain of custody: the lot ledger's facts as of each transaction's event time (a lot shipped by
a node that never received it, a delivery recorded twice, more shipped than received, a lot
passed on too fast, a lot nobody produced), independent of arrival order, kept through a
snapshot and across a quiet weekend; their calibration; and a worker started right after
`train supply-chain --data` (unlabelled history of an independent network) flagging custody
attacks on lots of that history, with the explanation."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas import SupplyChainTransaction
from stream_app.graph import custody
from stream_app.graph.state import TransactionGraph, replay
from stream_app.registry import ModelRegistry
from stream_app.scoring.supply_chain import MODEL_NAME, SupplyChainScorer
from stream_app.scoring.supply_chain_ensemble import MAX_SURPRISE, SignalCalibration
from stream_app.settings import SupplyChainSettings
from tests.integration.supply_chain_fixtures import one_torch_thread  # noqa: F401
from tests.unit.supply_chain_user_data import train_on_user_data, user_history
from tests.unit.test_supply_chain_graph import tx

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WATCH_S = 21 * 86400.0
DAY_H = 24.0


def _network() -> list[SupplyChainTransaction]:
    """M makes L1 (500) for D; D passes 200 to W; W ships 10 a day to three pharmacies. W and W2
    hold lot L0 from before the data (W ships it on day 0, W2 on day 1)."""
    out = [tx(0, 0, "M", "D", src_type="manufacturer", dst_type="distributor", qty=500.0),
           tx(1, 24, "D", "W", src_type="distributor", dst_type="wholesaler", qty=200.0),
           tx(2, 1, "W", "P0", "L0", qty=5.0), tx(3, 25, "W2", "P1", "L0", qty=5.0)]
    for k in range(12):
        out.append(tx(10 + k, 48 + 24 * k, "W", f"P{k % 3}"))
    return out


def _facts(graph: TransactionGraph, t: SupplyChainTransaction, turnaround_s: float = 0.0) -> tuple[str, ...]:
    return custody.check(t, graph, WATCH_S, turnaround_s).fired


def test_a_node_shipping_a_lot_it_never_received_is_at_two_places() -> None:
    graph = TransactionGraph()
    events = _network()
    clone = tx(90, 60, "W9", "P7", "L1")  # L1's whole path is known: provenance
    replay(graph, events + [clone])
    found = custody.check(clone, graph, WATCH_S)
    assert found.fired == ("never_received",)
    assert "was never delivered to W9" in found.reasons[0] and "at two places at once" in found.reasons[0]
    assert all(_facts(graph, e) == () for e in events)


def test_an_older_lot_from_before_the_data_counts_once_lots_were_watched() -> None:
    graph = TransactionGraph()
    late = tx(92, 23 * DAY_H, "W9", "P7", "L0")  # 23 days in: nobody delivered L0 to W9
    holder = tx(93, 23 * DAY_H + 1, "W2", "P1", "L0", qty=2.0)  # W2 shipped L0 before watching began: its stock
    replay(graph, _network() + [late, holder])
    assert _facts(graph, late) == ("never_received",)
    assert _facts(graph, holder) == ()
    # shipping it while lots were not yet watched, W9 may hold it from before the data: then it does
    warm = TransactionGraph()
    early = tx(91, 48, "W9", "P7", "L0")
    replay(warm, _network() + [early, late])
    assert _facts(warm, early) == () and _facts(warm, late) == ()


def test_a_delivery_recorded_twice_and_shipping_beyond_receipts() -> None:
    graph = TransactionGraph()
    events = _network()
    original = events[-1]  # W -> P2, 10 units, day 13
    copy = SupplyChainTransaction.model_validate({**json.loads(original.model_dump_json()), "event_id": "copy",
                                                  "ts": (original.ts + timedelta(hours=5)).isoformat()})
    same_time = SupplyChainTransaction.model_validate({**json.loads(original.model_dump_json()), "event_id": "line-2",
                                                       "quantity": 3.0})
    over = tx(95, 15 * DAY_H, "W", "P0", qty=80.0)  # 120 + 3 shipped, 200 received: this one tips it over
    after = tx(96, 16 * DAY_H, "W", "P1", qty=5.0)  # already over: not news
    replay(graph, events + [copy, same_time, over, after])
    twice = custody.check(copy, graph, WATCH_S)
    assert twice.fired == ("received_twice",) and "recorded twice" in twice.reasons[0]
    assert _facts(graph, same_time) == ()  # two lines of one shipment at one time: one delivery
    found = custody.check(over, graph, WATCH_S)
    assert found.fired == ("overshipped",) and "W has shipped 203 of lot L1 but received 200" in found.reasons[0]
    assert found.values["overshipped"] == pytest.approx(3.0)  # the delivery recorded twice counts once
    assert _facts(graph, after) == ()


def test_a_lot_passed_on_too_fast_and_a_lot_nobody_produced() -> None:
    graph = TransactionGraph()
    events = _network()
    inbound = tx(97, 30 * DAY_H, "D", "W", "L5", src_type="distributor", dst_type="wholesaler", qty=50.0)
    fast = tx(98, 30 * DAY_H + 0.2, "W", "P0", "L5", qty=5.0)
    slow = tx(99, 30 * DAY_H + 6, "W", "P1", "L5", qty=5.0)
    fake = tx(100, 31 * DAY_H, "X", "P2", "FAKE-1", src_type="wholesaler")
    made = tx(101, 31 * DAY_H, "M", "D", "L6", src_type="manufacturer", dst_type="distributor")
    replay(graph, events + [inbound, fast, slow, fake, made])
    assert _facts(graph, fast, 2 * 3600.0) == ("fast_turnaround",)
    assert _facts(graph, slow, 2 * 3600.0) == ()
    assert _facts(graph, fake) == ("unproven",)
    assert _facts(graph, made) == ()


def test_custody_answers_do_not_depend_on_arrival_order_and_survive_a_snapshot() -> None:
    events = _network() + [tx(90, 60, "W9", "P7", "L1"), tx(95, 15 * DAY_H, "W", "P0", qty=85.0),
                           tx(92, 23 * DAY_H, "W9", "P7", "L0")]
    ordered, shuffled = TransactionGraph(), TransactionGraph()
    replay(ordered, events)
    mixed = events[:]
    random.Random(5).shuffle(mixed)
    replay(shuffled, mixed)
    expected = [_facts(ordered, e) for e in events]
    assert [_facts(shuffled, e) for e in events] == expected
    assert sum(bool(f) for f in expected) == 3
    loaded = TransactionGraph.from_state(ordered.to_state(), anchor=False)
    assert [_facts(loaded, e) for e in events] == expected
    # a snapshot of the first layout (no quantities) still loads: lots without a ledger
    old = ordered.to_state()
    old["version"], old["lots"] = 1, [row[:8] for row in old["lots"]]
    legacy = TransactionGraph.from_state(old, anchor=False)
    assert not legacy.lots["L1"].ledger and _facts(legacy, events[-3]) == ("never_received",)


def test_a_stream_that_continues_the_history_keeps_lots_watched(tmp_path: Path) -> None:
    graph = TransactionGraph()
    replay(graph, _network() + [tx(94, 25 * DAY_H, "W", "P0", qty=1.0)])
    graph.quiet_s = 40 * 3600.0  # its longest quiet spell: a weekend
    state = graph.to_state()
    monday = TransactionGraph.from_state(state)
    after_weekend = tx(120, 25 * DAY_H + 36, "W9", "P7", "L0")  # an older lot W9 never received
    monday.apply(after_weekend)
    assert monday.time_shift == 0.0 and monday.lots_since == graph.lots_since
    assert _facts(monday, after_weekend) == ("never_received",)
    later = TransactionGraph.from_state(state)
    far = tx(121, 400 * DAY_H, "W9", "P7", "L0")
    later.apply(far)
    assert later.time_shift > 0 and later.lots_since == far.ts.timestamp()  # re-anchored, lots watched afresh
    assert _facts(later, far) == ()  # receipts in the gap were not seen: not judged yet


def test_signal_calibration_is_the_rarity_of_the_rarest_fired_fact() -> None:
    names = custody.SIGNALS
    normal = np.zeros(1000)
    normal[:10] = custody.BIT["received_twice"]  # 1 % of normal transactions
    cal = SignalCalibration.fit(names, normal, 1000)
    bits = np.array([0, custody.BIT["received_twice"], custody.BIT["overshipped"],
                     custody.BIT["received_twice"] | custody.BIT["overshipped"]], dtype=float)
    assert cal.surprise(bits) == pytest.approx([0.0, 2.0, MAX_SURPRISE, MAX_SURPRISE])
    assert SignalCalibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(ValueError):
        SignalCalibration.from_dict({**cal.to_dict(), "counts": [1]})


# --- a worker started right after `train supply-chain --data` on a user's unlabelled history --------

@pytest.fixture(scope="module")
def user_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("user_store")
    output = train_on_user_data(root / "registry", root)
    assert "supply-chain v1 promoted" in output
    return root / "registry"


def _attacks(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Custody attacks right after the history, on lots of it: an older lot shipped by a dealer
    that never received it, a delivery recorded again, a dealer shipping more than it received."""
    t = (datetime.fromisoformat(history[-1]["ts"].replace("Z", "+00:00")) + timedelta(hours=1)).isoformat()
    stockists = {r["source_id"] for r in history if r["source_type"] == "wholesaler"}
    received: dict[tuple[str, str], float] = {}
    shipped: dict[tuple[str, str], float] = {}
    for r in history:
        received[r["target_id"], r["lot_id"]] = received.get((r["target_id"], r["lot_id"]), 0.0) + r["quantity"]
        shipped[r["source_id"], r["lot_id"]] = shipped.get((r["source_id"], r["lot_id"]), 0.0) + r["quantity"]
    # a dealer's usual shipment, and a lot of that product another dealer received in the first weeks
    usual, old = next((u, o) for u in reversed(history) if u["source_id"] in stockists
                      for o in history[: len(history) // 3]
                      if o["target_id"] in stockists and o["product_id"] == u["product_id"]
                      and (u["source_id"], o["lot_id"]) not in received)
    dup = next(r for r in reversed(history[: len(history) // 2]) if r["source_id"] in stockists)
    over = next(r for r in reversed(history) if r["source_id"] in stockists and received.get((r["source_id"], r["lot_id"]), 0) > 0)
    balance = received[over["source_id"], over["lot_id"]] - shipped[over["source_id"], over["lot_id"]]
    return [
        {**usual, "event_id": "atk-clone", "shipment_id": "atk-clone", "ts": t, "lot_id": old["lot_id"]},
        {**dup, "event_id": "atk-copy", "ts": t},
        {**over, "event_id": "atk-over", "shipment_id": "atk-over", "ts": t, "quantity": balance + 50.0},
    ]


def test_a_worker_started_after_train_data_has_the_custody_state_of_the_history(user_model: Path) -> None:
    registry = ModelRegistry(user_model)
    version = registry.current(MODEL_NAME)
    manifest = version.manifest
    assert manifest["ensemble"]["score"] == {"method": "normal_rank"}  # no verdicts: normal-tail rank
    assert manifest["ensemble"]["detectors"]["custody"]["kind"] == "signals"
    assert manifest["data_fingerprint"]["verdicts"] == 0
    scorer = SupplyChainScorer.load(registry, SupplyChainSettings(), background_refresh=False)  # as a worker does
    try:
        attacks = [SupplyChainTransaction.model_validate(a) for a in _attacks(user_history())]
        results = scorer.score_batch(attacks)
    finally:
        scorer.close()
    assert scorer.graph.time_shift == 0.0  # the stream continues the history: nothing was moved
    expected = ["lot_two_places", "lot_received_twice", "lot_overshipped"]
    for rule, result in zip(expected, results):
        assert result.score.flagged, (rule, result.score.reason)
        assert rule in result.score.rules_fired
        assert result.explanation is not None and any(c.rule == rule and c.fired for c in result.explanation.rules)
        assert result.score.detector_scores["custody"] >= 3.0
    assert "was never delivered to" in results[0].explanation.text
    assert "recorded twice" in results[1].explanation.text
    assert "but received" in results[2].explanation.text
