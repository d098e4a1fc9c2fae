"""The whole supply-chain path on a real broker: a real producer (librdkafka) sends a simulated
scenario the model never trained on, its verdicts and malformed messages; two real worker
processes share the partitions; the outputs are read back from the topics."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from schemas import Alert, DeadLetter, Explanation, SupplyChainScore
from tests.integration.kafka_clients import OutputReader, produce
from tests.integration.supply_chain_fixtures import attack_kinds, live_scenario, supply_chain_model_dir  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
OUTPUT_TOPICS = ["supply-chain-scores", "alerts", "explanations", "dead-letters"]


def _malformed(good: dict) -> list[tuple[bytes, str]]:
    """(payload, expected error code), one dead letter each."""
    return [
        (b"{not json", "not_json"),
        (json.dumps({**good, "event_id": "bad-1", "quantity": -3.0}).encode(), "invalid_fields"),
        (json.dumps({**good, "event_id": "bad-2", "source_type": "spaceship"}).encode(), "invalid_fields"),
        (json.dumps({**good, "event_id": "bad-3"}).replace('"unit_price": ', '"unit_price": NaN, "x": ').encode(), "non_finite_number"),
        (json.dumps({**good, "event_id": "bad-4", "schema_version": 7}).encode(), "unsupported_schema_version"),
    ]


def test_a_scenario_is_scored_its_attacks_flagged_and_bad_input_dead_lettered(
    broker, start_worker, supply_chain_model_dir: Path
) -> None:
    transactions, verdicts = live_scenario(2500, seed=21)
    kinds = attack_kinds(verdicts)
    # two workers: each scores half the partitions, and keeps the graph of all of them
    workers = [start_worker(supply_chain_model_dir), start_worker(supply_chain_model_dir)]
    malformed = _malformed(transactions[0])
    gateway = [dict(transactions[0], event_id="gw-ok-1", shipment_id="gw-1"), {"event_id": "gw-bad"},
               dict(transactions[0], event_id="gw-ok-2", shipment_id="gw-2")]

    produce(broker.bootstrap, "supply-chain-transactions",
            ((t["shipment_id"].encode(), json.dumps(t).encode()) for t in transactions))
    produce(broker.bootstrap, "supply-chain-verdicts", ((v["shipment_id"].encode(), json.dumps(v).encode()) for v in verdicts))
    produce(broker.bootstrap, "supply-chain-transactions", [(b"bad", payload) for payload, _ in malformed])
    produce(broker.bootstrap, "supply-chain-transactions", [(b"gw", json.dumps(gateway).encode())])

    expected = {t["event_id"] for t in transactions} | {"gw-ok-1", "gw-ok-2"}
    reader = OutputReader(broker.bootstrap, OUTPUT_TOPICS, PARTITIONS)
    alive = lambda: all(w.alive() for w in workers)  # noqa: E731
    try:
        def complete(r: OutputReader) -> bool:
            scored = {s["event_id"] for s in r.messages["supply-chain-scores"]}
            return expected <= scored and len(r.messages["dead-letters"]) >= len(malformed) + 1

        done = reader.until(complete, timeout=75, alive=alive)
        logs = "\n".join(w.log()[-2000:] for w in workers)
        assert done, f"outputs incomplete; worker logs:\n{logs}"
        reader.poll(1.0)
    finally:
        reader.close()
    assert alive(), "a worker died"
    assert all("graph follower reads 8 partitions" in w.log() for w in workers)

    # at-least-once: a rebalance may repeat a score, with the same id
    scores = {s.event_id: s for s in (SupplyChainScore.model_validate(m) for m in reader.messages["supply-chain-scores"])}
    assert set(scores) == expected
    assert {s.model_version for s in scores.values()} == {"v1"}
    by_id = {t["event_id"]: t for t in transactions}
    flagged = Counter((kinds.get(by_id[e]["shipment_id"], "normal"), s.flagged) for e, s in scores.items() if e in by_id)
    attacks = sum(n for (k, _), n in flagged.items() if k != "normal")
    caught = sum(n for (k, f), n in flagged.items() if k != "normal" and f)
    normal = flagged[("normal", False)] + flagged[("normal", True)]
    assert attacks > 30 and caught >= 0.85 * attacks, flagged
    assert flagged[("normal", True)] <= 0.04 * normal, flagged
    # each worker saw only half the shipments, yet no normal shipment looked like a lot at two
    # places: the receipts that went to the other worker were in its graph too
    assert not [s for e, s in scores.items() if "lot_two_places" in s.rules_fired and kinds.get(s.shipment_id) is None]

    alerts = [Alert.model_validate(a) for a in reader.messages["alerts"]]
    explanations = {e["alert_id"]: Explanation.model_validate(e) for e in reader.messages["explanations"]}
    assert {a.alert_id for a in alerts} <= set(explanations)
    assert {a.event_ids[0] for a in alerts} == {e for e, s in scores.items() if s.flagged}
    assert all(a.kind == "supply_chain.anomaly" and a.decision_source in ("model", "rule") and a.reason for a in alerts)

    letters = [DeadLetter.model_validate(d) for d in reader.messages["dead-letters"]]
    assert sorted(d.error_code for d in letters if d.item_index is None) == sorted(code for _, code in malformed)
    assert [(d.item_index, d.error_code) for d in letters if d.item_index is not None] == [(1, "invalid_fields")]
    assert all(d.source_topic == "supply-chain-transactions" for d in letters)


def test_three_workers_share_one_graph_through_its_snapshot(broker, start_worker, supply_chain_model_dir: Path) -> None:
    """The first worker writes the graph to `supply-chain-graph`; two more start from that
    snapshot (reading only what came after it) and the three share the partitions: every
    transaction is scored once more by whoever holds it, as well as by one worker alone."""
    import time

    transactions, verdicts = live_scenario(2400, seed=23)
    kinds = attack_kinds(verdicts)
    first, rest = transactions[:1200], transactions[1200:]
    env = {"SUPPLY_CHAIN__GRAPH_SNAPSHOT_INTERVAL_S": "1"}
    workers = [start_worker(supply_chain_model_dir, **env)]
    produce(broker.bootstrap, "supply-chain-transactions", ((t["shipment_id"].encode(), json.dumps(t).encode()) for t in first))
    reader = OutputReader(broker.bootstrap, ["supply-chain-scores"], PARTITIONS)
    alive = lambda: all(w.alive() for w in workers)  # noqa: E731
    try:
        scored = lambda r: {s["event_id"] for s in r.messages["supply-chain-scores"]}  # noqa: E731
        assert reader.until(lambda r: {t["event_id"] for t in first} <= scored(r), timeout=60, alive=alive), workers[0].log()[-3000:]
        deadline = time.monotonic() + 30
        while "graph snapshot written" not in workers[0].log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "graph snapshot written" in workers[0].log(), workers[0].log()[-3000:]

        workers += [start_worker(supply_chain_model_dir, **env), start_worker(supply_chain_model_dir, **env)]
        deadline = time.monotonic() + 60
        while not all("graph follower reads 8 partitions" in w.log() for w in workers[1:]) and time.monotonic() < deadline:
            time.sleep(0.2)
        produce(broker.bootstrap, "supply-chain-transactions", ((t["shipment_id"].encode(), json.dumps(t).encode()) for t in rest))
        produce(broker.bootstrap, "supply-chain-verdicts", ((v["shipment_id"].encode(), json.dumps(v).encode()) for v in verdicts))
        expected = {t["event_id"] for t in transactions}
        done = reader.until(lambda r: expected <= scored(r), timeout=90, alive=alive)
        logs = "\n".join(w.log()[-2000:] for w in workers)
        assert done, f"outputs incomplete; worker logs:\n{logs}"
    finally:
        reader.close()
    assert alive(), "a worker died"
    for w in workers[1:]:
        assert "graph follower starts from the snapshot of v1" in w.log(), w.log()[-3000:]
        assert "from the graph snapshot's offsets" in w.log()

    scores = {s.event_id: s for s in (SupplyChainScore.model_validate(m) for m in reader.messages["supply-chain-scores"])}
    by_id = {t["event_id"]: t for t in transactions}
    late = [scores[t["event_id"]] for t in rest]
    flagged = Counter((kinds.get(by_id[s.event_id]["shipment_id"], "normal"), s.flagged) for s in late)
    attacks = sum(n for (k, _), n in flagged.items() if k != "normal")
    caught = sum(n for (k, f), n in flagged.items() if k != "normal" and f)
    normal = flagged[("normal", False)] + flagged[("normal", True)]
    assert attacks > 10 and caught >= 0.85 * attacks, flagged
    assert flagged[("normal", True)] <= 0.04 * normal, flagged
    # the workers that started from the snapshot knew the custody of lots received before it:
    # no normal shipment of theirs looked like a lot at two places
    assert not [s for s in late if "lot_two_places" in s.rules_fired and kinds.get(s.shipment_id) is None]
