"""The supply-chain scorer with a quick-trained model: outputs for every transaction, attacks
flagged on a scenario the model never saw, cold start, rules when the model is unsure or
unavailable, and the ensemble's decision rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from schemas import SupplyChainScore, SupplyChainTransaction, SupplyChainVerdict
from stream_app.registry import ModelRegistry
from stream_app.scoring import supply_chain_rules as rules
from stream_app.scoring.supply_chain import MODEL_NAME, Assessment, SupplyChainScorer, decide
from stream_app.settings import SupplyChainSettings
from tests.integration.supply_chain_fixtures import (  # noqa: F401
    attack_kinds, live_scenario, one_torch_thread, supply_chain_model_dir,
)
from tests.unit.test_supply_chain_graph import chain, tx

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def scorer(supply_chain_model_dir: Path) -> SupplyChainScorer:
    s = SupplyChainScorer.load(ModelRegistry(supply_chain_model_dir), SupplyChainSettings(), background_refresh=False)
    assert s.model_version == "v1"
    yield s
    s.close()


def _score(scorer: SupplyChainScorer, events: list[dict], batch: int = 256):
    txs = [SupplyChainTransaction.model_validate(e) for e in events]
    out = []
    for i in range(0, len(txs), batch):
        out += scorer.score_batch(txs[i:i + batch])
    return txs, out


def test_scores_every_transaction_and_flags_the_attacks_of_an_unseen_scenario(scorer: SupplyChainScorer) -> None:
    events, verdicts = live_scenario(2500, seed=33)
    kinds = attack_kinds(verdicts)
    txs, results = _score(scorer, events)
    assert [r.score.event_id for r in results] == [t.event_id for t in txs]
    flagged = {r.score.shipment_id for r in results if r.score.flagged}
    attacks = set(kinds) & {t.shipment_id for t in txs}
    normal = {t.shipment_id for t in txs} - attacks
    assert len(attacks) > 30
    assert len(flagged & attacks) >= 0.85 * len(attacks), {k for s, k in kinds.items() if s in attacks - flagged}
    assert len(flagged & normal) <= 0.04 * len(normal)
    for r in results:
        assert 0 <= r.score.score <= 1 and 0 <= r.score.confidence <= 1
        assert set(r.score.detector_scores) == {"gnn", "vae", "hst", "robust", "custody", "lanes", "evidence"}
        if r.score.flagged:
            assert r.alert is not None and r.explanation is not None
            assert r.alert.alert_id == r.explanation.alert_id and r.alert.event_ids == [r.score.event_id]
            assert r.explanation.rules and r.explanation.text
            if r.alert.decision_source == "model":
                assert any(f.name.startswith("detector:") for f in r.explanation.features)
                assert any(f.name.startswith("feature:") for f in r.explanation.features)
        else:
            assert r.alert is None


def test_output_ids_are_deterministic_and_duplicates_are_not_applied_twice(supply_chain_model_dir: Path) -> None:
    events, _ = live_scenario(300, seed=34)
    a = SupplyChainScorer.load(ModelRegistry(supply_chain_model_dir), SupplyChainSettings(), background_refresh=False)
    b = SupplyChainScorer.load(ModelRegistry(supply_chain_model_dir), SupplyChainSettings(), background_refresh=False)
    _, first = _score(a, events)
    applied = a.graph.applied
    _, again = _score(a, events)  # at-least-once redelivery
    assert a.graph.applied == applied
    _, other = _score(b, events)
    assert [r.score.score_id for r in first] == [r.score.score_id for r in again] == [r.score.score_id for r in other]
    assert [r.alert.alert_id for r in first if r.alert] == [r.alert.alert_id for r in other if r.alert]


def test_brand_new_nodes_and_products_are_scored_not_errors(scorer: SupplyChainScorer) -> None:
    events, _ = live_scenario(200, seed=35)
    _score(scorer, events)
    base = events[-1]
    newcomer = {**base, "event_id": "new-1", "shipment_id": "new-s1", "source_id": "trd-0000001", "source_type": "other",
                "lot_id": "L-NEVER", "product_id": "ndc-never-seen", "carrier_id": None, "features": {"controlled": 1.0}}
    _, (result,) = _score(scorer, [newcomer])
    assert result.score.flagged
    assert result.score.confidence < 1.0  # the GNN cannot place the node; no amount reference
    text = result.explanation.text
    assert "trd-0000001 has no established flow yet" in text and "was never seen before" in text


def test_a_lot_at_two_places_fires_its_rule_and_is_explained(scorer: SupplyChainScorer) -> None:
    events, _ = live_scenario(1500, seed=36)
    txs, _ = _score(scorer, events)
    lots = scorer.graph.lots
    # a lot made and shipped down the chain during the scenario
    shipped = next(t for t in txs if t.source_type == "wholesaler" and lots[t.lot_id].origin_type == "manufacturer")
    lot = lots[shipped.lot_id]
    cloner = next(t.source_id for t in txs if t.source_type == "wholesaler" and t.source_id not in lot.holders)
    clone = {**json.loads(shipped.model_dump_json()), "event_id": "clone-1", "shipment_id": "clone-s1", "source_id": cloner}
    _, (result,) = _score(scorer, [clone])
    assert "lot_two_places" in result.score.rules_fired and result.score.flagged  # a new lane, too
    check = next(c for c in result.explanation.rules if c.rule == "lot_two_places")
    assert check.fired and "at two places at once" in result.explanation.text


def test_without_a_model_the_rules_decide_and_say_why(tmp_path: Path) -> None:
    scorer = SupplyChainScorer.load(ModelRegistry(tmp_path), SupplyChainSettings())
    assert scorer.model is None
    clone = tx(99, 30, "W9", "P7", "L1")
    results = scorer.score_batch(chain() + [clone])
    last = results[-1].score
    assert last.decision_source == "rule" and last.flagged and last.model_version is None
    assert "model unavailable" in last.reason and "two places" in last.reason
    assert last.score == 1.0 and last.confidence == 1.0
    calm = results[5].score
    assert not calm.flagged and calm.score == 0.0 and calm.confidence == 0.0
    alert = results[-1].alert
    assert alert.decision_source == "rule" and alert.severity == "critical" and alert.model_version is None


def test_a_broken_model_falls_back_to_rules_with_the_reason(supply_chain_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "store"
    shutil.copytree(supply_chain_model_dir, broken)
    (broken / MODEL_NAME / "v1" / "gnn.pt").write_bytes(b"not a model")
    scorer = SupplyChainScorer.load(ModelRegistry(broken), SupplyChainSettings())
    assert scorer.model is None
    (result,) = scorer.score_batch([tx(1, 0, "W", "P")])
    assert "supply-chain v1 cannot be used" in result.score.reason
    fallback = SupplyChainScorer.load(ModelRegistry(supply_chain_model_dir), SupplyChainSettings(), background_refresh=False)
    rules_only = fallback.rules_only("model unavailable: failed at inference (test)")
    (again,) = rules_only.score_batch([tx(2, 1, "W", "P")])
    assert again.score.decision_source == "rule" and "failed at inference" in again.score.reason


def test_only_a_model_out_of_its_depth_hands_the_decision_to_the_rules(scorer: SupplyChainScorer) -> None:
    ensemble = scorer.model.ensemble
    thr = ensemble.threshold
    # far above; just above (unsure, fully competent); just above, two views missing (out of its
    # depth), no rule; the same with a rule fired
    stats = {d: np.zeros(4) for d in ("gnn", "vae", "hst", "robust")}
    fired = rules.RuleResult([], ["lot_two_places"], ["a lot at two places"])
    quiet = rules.RuleResult([], [], [])
    blind = 0.85 * 0.9  # no embedding for an endpoint, no amount reference
    a = Assessment(x=np.zeros((4, 1)), statistics=stats, coverage=np.array([1.0, 1.0, blind, blind]),
                   rules=[quiet, quiet, quiet, fired])
    # craft surprises through the detector calibration: push the VAE statistic to the wanted evidence
    vae = ensemble.detectors["vae"]
    grid = np.linspace(0, 200, 200001)
    s = vae.surprise(grid)

    def stat_for(evidence: float) -> float:
        return float(grid[np.searchsorted(s, evidence)])

    stats["vae"][:] = [stat_for(thr + 6.0), stat_for(thr + 0.02), stat_for(thr + 0.02), stat_for(thr + 0.02)]
    d = decide(a, ensemble, SupplyChainSettings(min_confidence=0.8))
    assert d.model_flag.tolist() == [True, True, True, True]
    # a moderate margin is an answer: the model decides and flags, at a low confidence
    assert d.model_decides.tolist() == [True, True, False, False]
    assert d.flagged.tolist() == [True, True, False, True]
    assert d.confidence[0] > 0.99 and d.confidence[1] < 0.6


def test_verdicts_join_to_decisions(scorer: SupplyChainScorer) -> None:
    events, verdicts = live_scenario(800, seed=37)
    _, results = _score(scorer, events)
    joined = [scorer.join_verdict(SupplyChainVerdict.model_validate(v)) for v in verdicts]
    assert joined and all(j in ("confirmed_flagged", "confirmed_missed", "cleared_flagged", "cleared_unflagged") for j in joined)
    assert joined.count("confirmed_flagged") >= joined.count("confirmed_missed")
    unknown = SupplyChainVerdict.model_validate({"event_id": "v", "ts": "2025-03-04T00:00:00Z", "shipment_id": "nope",
                                                 "verdict": "confirmed"})
    assert scorer.join_verdict(unknown) is None


def test_score_messages_validate_against_the_contract(scorer: SupplyChainScorer) -> None:
    events, _ = live_scenario(50, seed=38)
    _, results = _score(scorer, events)
    for r in results:
        SupplyChainScore.model_validate_json(r.score.model_dump_json())
