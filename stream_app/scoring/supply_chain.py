"""Supply-chain scorer: transactions -> a score per transaction, alerts and explanations for the
flagged ones.

Graph sharing (why scoring is lookups only). Transactions are keyed by shipment, so with several
workers each scores a subset, but a flow another worker scored is not "never seen". Every worker
therefore keeps the graph of the whole stream: the agent runs a follower, a group-less consumer
assigned every partition of the transactions topic (and of the verdicts topic), which decodes
them and feeds `observe()` and `observe_verdicts()` (the scorer sees events, never bytes); the
scorer also applies its own batch before scoring it, and the graph drops what it already has by
event id. A Faust GlobalTable would replicate the same state through a
changelog, but its recovery relies on end offsets the embedded broker reports wrongly (DESIGN.md
section 4) and the graph is a derived structure anyway: replaying the source topic rebuilds it
exactly, on any broker. Before scoring a batch the agent waits (at most graph_sync_timeout_s)
until the follower has read everything that was in the topic graph_sync_lag_ms (20) before the
batch arrived, so an earlier shipment on another partition is in the graph first. All questions are asked as of each
transaction's event time (graph/state.py), so later transactions already applied do not leak.

The registry version holds the starting point: the trained GNN, VAE, HalfSpaceTrees reference,
calibration, and the graph (with every lot's custody ledger: receipts and shipments per node) and
robust statistics at the end of the training history. A worker started on the weeks that follow
the history goes on from that state (a quiet weekend is not a gap); only a stream far from the
history's time is re-anchored, and then lots are watched afresh (graph/state.py). Node embeddings are recomputed from the live graph in a
background thread every `embedding_refresh_every` transactions or `embedding_refresh_s` seconds
(graph/embeddings.py); scoring a transaction only looks up two rows. The hot path per batch is
graph upkeep and features (Python, ~25 us per transaction), one VAE forward and one edge-decoder
forward (torch, batched), and the HalfSpaceTrees walk (~25 us per transaction).

Detectors (scoring/supply_chain_detectors.py): the GNN, VAE, HalfSpaceTrees and robust statistics,
plus two sets of facts, each fact's rarity under normal traffic measured at training: custody
(graph/custody.py: a lot shipped by a node that never received it, a delivery recorded twice, a
lot shipped beyond what was received, a lot passed on before it can have arrived, a lot nobody
produced) and lanes (graph/lanes.py: an unknown carrier, a carrier new on an established edge, a
first trade between two busy parties).

Decision. The evidence E (scoring/supply_chain_ensemble.py) at or above the threshold (set for
the target flag rate) flags the transaction. score = P(attack | E), calibrated on verdicts, or
without enough of them (unlabelled history) the normal-tail rank 1 - P_normal(E >= e).
confidence = decisiveness x coverage:
  decisiveness  how clearly E sits on its side of the threshold, in decades of normal rarity d
                (|surprise(E) - surprise(threshold)|): 1 - 0.5 * 10^-d, so 0.5 at the threshold,
                0.95 one decade away, 0.995 two.
  coverage      the model's competence, what it could not see: an endpoint without an embedding
                (the GNN cannot place a brand-new node) x 0.85, no amount reference (a product
                never seen) x 0.9, lot evidence neutral (lots not yet watched long enough) x 0.95.
Confidence ranks and annotates; it does not hand a transaction over. The model decides while its
coverage >= min_confidence (0.8: at most one of those views missing); out of its depth, the rules
decide (scoring/supply_chain_rules.py): flagged when one fires. Evidence near the threshold is
an answer, not a reason to hand over: on the independent benchmark networks the rules flagged
none of the near-threshold transactions they were handed, so attacks the evidence had flagged
were lost (benchmarks/README.md). Without a usable model the rules decide every transaction
(score and confidence 1 when a rule fired, else 0: no evidence either way).
A prediction always carries the model's score and confidence when there is a model.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch

from schemas.outputs import Alert, Contribution, Counterfactual, Explanation, deterministic_id, digest
from schemas.supply_chain import SupplyChainScore, SupplyChainTransaction, SupplyChainVerdict
from stream_app.features.supply_chain import FEATURES, INDEX, FeatureConfig, RobustStats, encode, encode_batch
from stream_app.graph import custody as custody_facts
from stream_app.graph import lanes as lane_facts
from stream_app.graph.embeddings import EmbeddingRefresher
from stream_app.graph.state import TransactionGraph, count_before
from stream_app.models.supply_chain_gnn import SupplyChainGNN
from stream_app.registry import ModelRegistry, ModelVersion
from stream_app.scoring import supply_chain_rules as rules
from stream_app.state_budget import EntityBudget
from stream_app.scoring.supply_chain_detectors import (
    DETECTORS, FACT_DETECTORS, EdgeDetector, HSTDetector, VAEDetector, plausibility, robust_statistic,
)
from stream_app.scoring.supply_chain_ensemble import Ensemble
from stream_app.settings import SupplyChainSettings

log = logging.getLogger(__name__)

MODEL_NAME = "supply-chain"
ALERT_KIND = "supply_chain.anomaly"
GNN_FILE, VAE_FILE, HST_FILE, GRAPH_FILE = "gnn.pt", "vae.pt", "hst_reference.npy", "graph.pt"
COLD_COVERAGE, NO_REFERENCE_COVERAGE, LOTS_UNWATCHED_COVERAGE = 0.85, 0.9, 0.95
RULE_ALERT_CONFIDENCE = 1.0  # a fired deterministic check is a fact, not an estimate
_PRUNE_EVERY = 20_000
_EVICT_EVERY = 1_000  # new transactions between checks of the node budget
_FLAG_MEMORY = 200_000  # shipments whose decision is kept for verdicts
_TOP_FEATURES = 5
_DAY = 86400.0


@dataclass(slots=True)
class ScoredTransaction:
    score: SupplyChainScore
    alert: Optional[Alert]
    explanation: Optional[Explanation]
    # The candidate version's result for the same transaction, when one scores in shadow.
    shadow: Optional["ScoredTransaction"] = None


def _node_budget(graph: TransactionGraph, settings: SupplyChainSettings) -> EntityBudget:
    """The graph's state budget, knowing the nodes it already holds (a training snapshot),
    least recently active first. Evictions come in chunks of 1 % of the budget: forgetting
    nodes walks the route tables once per chunk."""
    budget = EntityBudget("supply_chain", settings.max_nodes, settings.node_idle_s, slack=settings.max_nodes // 100)
    active = graph.last_active()
    for node in graph.g.nodes:
        active.setdefault(node, graph.newest_ts)
    for node, t in sorted(active.items(), key=lambda kv: kv[1]):
        budget.touch(node, t)
    return budget


# --- the model artifact -------------------------------------------------------------------------
@dataclass
class SupplyChainModel:
    version: str
    features: FeatureConfig
    vae: VAEDetector
    hst: HSTDetector
    edges: EdgeDetector
    anchors: list[str]
    min_edge_count: int
    ensemble: Optional[Ensemble]  # None only while training calibrates it

    @classmethod
    def from_version(cls, version: ModelVersion) -> tuple["SupplyChainModel", TransactionGraph, RobustStats]:
        """The model and its starting graph; raises on any inconsistency."""
        m = version.manifest
        features = FeatureConfig.from_dict(m["features"])
        vae = VAEDetector.from_manifest(m["vae"], _load_weights(version, VAE_FILE))
        reference = np.load(version.file(HST_FILE), allow_pickle=False)
        hst = HSTDetector.from_manifest(m["hst"], reference)
        gnn_conf = m["gnn"]
        gnn = SupplyChainGNN(**gnn_conf["hyperparameters"])
        gnn.load_state_dict(_load_weights(version, GNN_FILE))
        anchors = list(gnn_conf["anchors"])
        if gnn.n_inputs != 9 + len(anchors):
            raise ValueError(f"GNN takes {gnn.n_inputs} node features, {len(anchors)} anchors make {9 + len(anchors)}")
        state = torch.load(version.file(GRAPH_FILE), map_location="cpu", weights_only=True)
        graph = TransactionGraph.from_state(state["graph"])
        stats = RobustStats.from_state(state["stats"])
        model = cls(
            version=version.version, features=features, vae=vae, hst=hst,
            edges=EdgeDetector(gnn.eval(), float(gnn_conf["cold_statistic"])), anchors=anchors,
            min_edge_count=int(gnn_conf["min_edge_count"]), ensemble=Ensemble.from_dict(m["ensemble"]),
        )
        return model, graph, stats


def _load_weights(version: ModelVersion, name: str) -> dict[str, torch.Tensor]:
    path = version.file(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    return torch.load(path, map_location="cpu", weights_only=True)


# --- per-batch working values ----------------------------------------------------------------------
@dataclass
class Assessment:
    """Everything about a batch before the ensemble: what training stores per transaction."""

    x: np.ndarray  # (N, F) features
    statistics: dict[str, np.ndarray] = field(default_factory=dict)  # detector -> (N,)
    vae_terms: Optional[np.ndarray] = None  # (N, F)
    cold: Optional[np.ndarray] = None  # (N,) the GNN could not place an endpoint
    unwatched: Optional[np.ndarray] = None  # (N,) lot evidence neutral: lots not watched long enough
    coverage: Optional[np.ndarray] = None  # (N,)
    rules: list[rules.RuleResult] = field(default_factory=list)
    custody: list[custody_facts.Custody] = field(default_factory=list)
    lanes: list[lane_facts.LaneFacts] = field(default_factory=list)


@dataclass
class Decisions:
    score: np.ndarray
    confidence: np.ndarray
    flagged: np.ndarray
    model_decides: np.ndarray
    model_flag: np.ndarray  # the model's own decision, whoever decided
    evidence: np.ndarray
    surprises: dict[str, np.ndarray]
    decisiveness: np.ndarray


def decide(a: Assessment, ensemble: Optional[Ensemble], settings: SupplyChainSettings) -> Decisions:
    """The decision for every transaction of a batch (also used by training's evaluation)."""
    n = len(a.x)
    fired = np.array([r.any for r in a.rules], dtype=bool) if a.rules else np.zeros(n, dtype=bool)
    if ensemble is None:
        value = fired.astype(np.float64)
        return Decisions(value, value.copy(), fired, np.zeros(n, bool), np.zeros(n, bool), np.zeros(n), {}, np.zeros(n))
    surprises = ensemble.surprises(a.statistics)
    evidence = ensemble.combine(surprises)
    score = ensemble.score(evidence)
    model_flag = evidence >= ensemble.threshold
    margin = np.abs(ensemble.evidence.surprise(evidence) - ensemble.evidence.surprise(np.array([ensemble.threshold])))
    decisiveness = 1.0 - 0.5 * np.power(10.0, -margin)
    coverage = a.coverage if a.coverage is not None else np.ones(n)
    confidence = decisiveness * coverage
    model_decides = coverage >= settings.min_confidence
    flagged = np.where(model_decides, model_flag, fired)
    return Decisions(score, confidence, flagged, model_decides, model_flag, evidence, surprises, decisiveness)


class SupplyChainScorer:
    def __init__(
        self,
        settings: SupplyChainSettings,
        model: Optional[SupplyChainModel],
        graph: Optional[TransactionGraph] = None,
        stats: Optional[RobustStats] = None,
        *,
        unavailable_reason: str = "model unavailable",
        background_refresh: bool = True,
    ) -> None:
        self.settings = settings
        self.model = model
        self.graph = graph if graph is not None else TransactionGraph()
        self.stats = stats if stats is not None else RobustStats()
        self.features = model.features if model else FeatureConfig()
        self.model_version: Optional[str] = model.version if model else None
        self.rule_config = rules.RuleConfig(settings.new_node_days, self.features.provenance_days, self.features.controlled,
                                            self.features.min_turnaround_h)
        self._unavailable = unavailable_reason
        self._lock = threading.RLock()
        self._since_prune = 0
        self._since_evict = 0
        # shipment -> flagged, for joining verdicts (live accuracy); bounded
        self._flags: OrderedDict[str, bool] = OrderedDict()
        if self.graph.budget is None:  # shared by every scorer on this graph (shadow, fallback)
            self.graph.budget = _node_budget(self.graph, settings)
            self.graph.bound_memory(settings.dedupe_events, settings.remembered_shipments)
        self.refresher: Optional[EmbeddingRefresher] = None
        if model is not None:
            self.refresher = EmbeddingRefresher(
                model.edges.model, model.anchors, min_edge_count=model.min_edge_count,
                every_n=settings.embedding_refresh_every, every_s=settings.embedding_refresh_s,
                background=background_refresh,
            )
            self.refresher.maybe_refresh(self.graph)

    # --- loading ------------------------------------------------------------------------------------
    @classmethod
    def load(cls, registry: ModelRegistry, settings: SupplyChainSettings, **kwargs: Any) -> "SupplyChainScorer":
        """The registry's current model; rules only (with a warning) when there is none or it
        cannot be used. Never raises for a model problem."""
        try:
            version = registry.current(MODEL_NAME)
        except Exception as exc:
            return cls._rules_only(settings, f"model unavailable: cannot read {registry.root / MODEL_NAME}: {exc}", **kwargs)
        if version is None:
            return cls._rules_only(settings, f"model unavailable: no trained {MODEL_NAME} model in {registry.root}", **kwargs)
        try:
            model, graph, stats = SupplyChainModel.from_version(version)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            return cls._rules_only(settings, f"model unavailable: {MODEL_NAME} {version.version} cannot be used ({why})", **kwargs)
        log.info("supply-chain scorer serves %s %s (graph: %d nodes, %d edges)", MODEL_NAME, model.version, graph.nodes, graph.edges)
        return cls(settings, model, graph, stats, **kwargs)

    @classmethod
    def from_version(cls, version: ModelVersion, settings: SupplyChainSettings, **kwargs: Any) -> "SupplyChainScorer":
        """A given version; raises when it cannot be used (whoever names a version wants it)."""
        model, graph, stats = SupplyChainModel.from_version(version)
        return cls(settings, model, graph, stats, **kwargs)

    @classmethod
    def _rules_only(cls, settings: SupplyChainSettings, reason: str, **kwargs: Any) -> "SupplyChainScorer":
        log.warning("supply-chain scorer runs on rules only: %s", reason)
        return cls(settings, None, unavailable_reason=reason, **kwargs)

    def rules_only(self, reason: str) -> "SupplyChainScorer":
        """The same graph, without the model (the model failed at inference)."""
        scorer = type(self)(self.settings, None, self.graph, self.stats, unavailable_reason=reason)
        scorer.features, scorer.rule_config, scorer._flags = self.features, self.rule_config, self._flags
        if self.refresher is not None:
            self.refresher.close()
        return scorer

    def beside(self, model: SupplyChainModel) -> "SupplyChainScorer":
        """Another version's model on this scorer's live graph and statistics, shared (the
        version's own graph is its training snapshot; this one followed the topic since).
        Applying a transaction twice is a no-op, so both may score the same batches."""
        return type(self)(self.settings, model, self.graph, self.stats)

    def with_model(self, model: SupplyChainModel) -> "SupplyChainScorer":
        """The scorer that takes over from this one with another version (hot reload)."""
        scorer = self.beside(model)
        scorer._flags = self._flags
        self.close()
        return scorer

    def successor(self, version: ModelVersion) -> "SupplyChainScorer":
        """The scorer that takes over from this one with `version`, on this one's live graph."""
        return self.with_model(SupplyChainModel.from_version(version)[0])

    def beside_version(self, version: ModelVersion) -> "SupplyChainScorer":
        """A candidate `version` to score beside this one, on the same live graph (see beside)."""
        return self.beside(SupplyChainModel.from_version(version)[0])

    def close(self) -> None:
        if self.refresher is not None:
            self.refresher.close()

    # --- keeping the graph --------------------------------------------------------------------------
    def observe(self, transactions: Sequence[SupplyChainTransaction]) -> int:
        """Apply transactions to the graph (any worker's; duplicates are dropped). Returns how many
        were new. Call from the inference thread."""
        with self._lock:
            new = self._apply(transactions)
            self._after_apply(new)
            return new

    def observe_verdicts(self, verdicts: Sequence[SupplyChainVerdict]) -> int:
        """Implicate confirmed attackers in the graph. Returns how many verdicts applied."""
        with self._lock:
            return sum(self.graph.apply_verdict(v) for v in verdicts)

    def _apply(self, transactions: Sequence[SupplyChainTransaction]) -> int:
        graph, stats, new = self.graph, self.stats, 0
        for tx in transactions:
            anchoring = graph.anchor_pending
            if graph.apply(tx):
                if anchoring and graph.time_shift:
                    stats.shift(graph.time_shift)
                stats.update(tx)
                new += 1
        return new

    def _after_apply(self, new: int) -> None:
        self._since_evict += new
        if self._since_evict >= _EVICT_EVERY:
            self._since_evict = 0
            self._evict()
        self._since_prune += new
        if self._since_prune >= _PRUNE_EVERY:
            self._since_prune = 0
            self.graph.prune_lots(self.settings.lot_retention_days * _DAY)
        if self.refresher is not None:
            self.refresher.maybe_refresh(self.graph)

    # --- the shared graph snapshot (agents/graph_snapshots.py) ---------------------------------------
    def graph_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The graph and the amount statistics as plain containers, at one point between
        batches (from the inference thread)."""
        with self._lock:
            return self.graph.to_state(self.settings.lot_retention_days * _DAY), self.stats.to_state()

    def adopt_graph(self, graph: TransactionGraph, stats: RobustStats) -> None:
        """Go on from a shared snapshot's graph and statistics instead of this scorer's own (a
        worker starting up); the embeddings are made from it before the next score. Every scorer
        sharing the old graph (a shadow) must adopt the same objects."""
        with self._lock:
            if graph.budget is None:
                graph.budget = _node_budget(graph, self.settings)
                graph.bound_memory(self.settings.dedupe_events, self.settings.remembered_shipments)
            self.graph, self.stats = graph, stats
            if self.refresher is not None:
                self.refresher.refresh_now(graph)

    # --- entities (graph nodes) ----------------------------------------------------------------------
    def _evict(self) -> None:
        """Hold the state budget: forget the least recently active and the idle nodes."""
        budget = self.graph.budget
        due = budget.due() if budget is not None else []
        if due:
            self._forget(due)

    def _forget(self, nodes: Sequence[str]) -> int:
        gone = set(nodes)
        n = self.graph.forget_nodes(gone)
        self.stats.forget_nodes(gone)
        return n

    def forget(self, nodes: Iterable[str]) -> int:
        """Forget these nodes of the graph (with their edges, routes and statistics); returns
        how many it held. One that trades again is new to the graph."""
        with self._lock:
            return self._forget(list(nodes))

    @property
    def entities(self) -> int:
        return self.graph.nodes

    @property
    def budget(self) -> Optional[EntityBudget]:
        return self.graph.budget

    def knows(self, node: str) -> bool:
        return self.graph.node(node) is not None

    @staticmethod
    def entity_of(tx: SupplyChainTransaction) -> str:
        return tx.source_id

    def learn(self, verdicts: Sequence[SupplyChainVerdict]) -> list[Optional[str]]:
        """Ground truth: each verdict joined to this scorer's decision on its shipment
        (join_verdict), None for a shipment it did not score. Implicating confirmed attackers in
        the graph is the graph follower's (observe_verdicts): every worker's graph needs it."""
        return [self.join_verdict(v) for v in verdicts]

    # --- scoring -----------------------------------------------------------------------------------
    def assess(self, transactions: Sequence[SupplyChainTransaction]) -> Assessment:
        """Features, detector statistics and rules for transactions already applied."""
        x = encode_batch(transactions, self.graph, self.stats, self.features)
        watch_s, fast_s = self.features.provenance_days * _DAY, self.features.min_turnaround_h * 3600.0
        custody = [custody_facts.check(tx, self.graph, watch_s, fast_s) for tx in transactions]
        lanes = [lane_facts.check(tx, self.graph, self.settings.new_node_days * _DAY) for tx in transactions]
        checked = [rules.check(tx, self.graph, self.rule_config, c, f) for tx, c, f in zip(transactions, custody, lanes)]
        a = Assessment(x=x, rules=checked, custody=custody, lanes=lanes)
        m = self.model
        if m is None:
            return a
        terms = m.vae.terms(x.astype(np.float64))
        table = self.refresher.table if self.refresher is not None else None
        gnn, cold = m.edges.statistic(table, [t.source_id for t in transactions], [t.target_id for t in transactions])
        a.statistics = {"gnn": gnn, "vae": VAEDetector.statistic(terms), "hst": m.hst.statistic(x.astype(np.float64)),
                        "robust": robust_statistic(x), "custody": np.array([c.bits for c in custody], dtype=np.float64),
                        "lanes": np.array([f.bits for f in a.lanes], dtype=np.float64)}
        a.vae_terms, a.cold = terms, cold
        a.unwatched = np.array([not c.watched for c in custody], dtype=bool)
        a.coverage = (np.where(cold, COLD_COVERAGE, 1.0) * np.where(x[:, INDEX["stats_level"]] == 0, NO_REFERENCE_COVERAGE, 1.0)
                      * np.where(a.unwatched, LOTS_UNWATCHED_COVERAGE, 1.0))
        return a

    def evaluate(self, transactions: Sequence[SupplyChainTransaction]) -> Assessment:
        """Apply a batch, assess it, then let the embeddings refresh (after, as they would be
        computed off the hot path)."""
        with self._lock, torch.no_grad():
            new = self._apply(transactions)
            a = self.assess(transactions)
            self._after_apply(new)
            return a

    def score_batch(self, transactions: Sequence[SupplyChainTransaction]) -> list[ScoredTransaction]:
        """One result per transaction, in input order."""
        if not transactions:
            return []
        with self._lock, torch.no_grad():
            a = self.evaluate(transactions)
            d = decide(a, self.model.ensemble if self.model else None, self.settings)
            return self._results(transactions, a, d)

    # --- outputs -----------------------------------------------------------------------------------
    def _results(self, txs: Sequence[SupplyChainTransaction], a: Assessment, d: Decisions) -> list[ScoredTransaction]:
        created = datetime.now(timezone.utc)
        version = self.model_version
        score, conf, flagged = d.score.tolist(), d.confidence.tolist(), d.flagged.tolist()
        by_model = d.model_decides.tolist()
        detector = {k: v.tolist() for k, v in d.surprises.items()}
        evidence = d.evidence.tolist()
        out = []
        for i, tx in enumerate(txs):
            rule = a.rules[i]
            scores = {k: round(v[i], 4) for k, v in detector.items()}
            if detector:
                scores["evidence"] = round(evidence[i], 4)
            reason = self._reason(i, a, d)
            prediction = SupplyChainScore(
                score_id=deterministic_id("supply-chain-score", tx.event_id, version),
                event_id=tx.event_id, shipment_id=tx.shipment_id, lot_id=tx.lot_id, event_ts=tx.ts,
                score=score[i], confidence=conf[i], flagged=flagged[i],
                decision_source="model" if by_model[i] else "rule", reason=reason, detector_scores=scores,
                rules_fired=list(rule.fired), model_name=MODEL_NAME, model_version=version, created_at=created,
            )
            alert = explanation = None
            if flagged[i]:
                alert, explanation = self._alert(tx, i, a, d, reason, created)
            out.append(ScoredTransaction(prediction, alert, explanation))
            self._remember_flag(tx.shipment_id, flagged[i])
        return out

    def _remember_flag(self, shipment: str, flagged: bool) -> None:
        self._flags[shipment] = self._flags.get(shipment, False) or flagged
        self._flags.move_to_end(shipment)
        if len(self._flags) > _FLAG_MEMORY:
            self._flags.popitem(last=False)

    def join_verdict(self, verdict: SupplyChainVerdict) -> Optional[str]:
        """Live accuracy: 'confirmed_flagged', 'confirmed_missed', 'cleared_flagged' or
        'cleared_unflagged' for a shipment this scorer scored; None for one it did not."""
        with self._lock:
            flagged = self._flags.get(verdict.shipment_id)
        if flagged is None:
            return None
        return f"{verdict.verdict}_{'flagged' if flagged else ('missed' if verdict.verdict == 'confirmed' else 'unflagged')}"

    def _reason(self, i: int, a: Assessment, d: Decisions) -> str:
        rule = a.rules[i]
        fired = "; ".join(rule.reasons)
        if self.model is None or self.model.ensemble is None:
            return f"rules decided ({self._unavailable}); " + (fired or "no rule fired")
        ens = self.model.ensemble
        e, thr = float(d.evidence[i]), ens.threshold
        side = ">=" if e >= thr else "<"
        model_text = (f"evidence {e:.2f} {side} threshold {thr:.2f} (flags {ens.target_flag_rate:.1%} of normal flow), "
                      f"P(attack) {d.score[i]:.2f}")
        if d.model_decides[i]:
            text = f"model decided: {model_text} at confidence {d.confidence[i]:.2f}"
            return text + (f"; rules fired too: {fired}" if fired else "")
        why = []
        if a.cold is not None and a.cold[i]:
            why.append("the GNN cannot place a node without established flows")
        if a.x[i, INDEX["stats_level"]] == 0:
            why.append("no amount reference for this product")
        if a.unwatched is not None and a.unwatched[i]:
            why.append("lots not watched long enough to judge this one")
        competence = float(a.coverage[i]) if a.coverage is not None else 1.0
        return (f"rules decided (competence {competence:.2f} < {self.settings.min_confidence:.2f}: {', '.join(why)}; "
                f"{model_text}); " + (fired or "no rule fired"))

    def _alert(
        self, tx: SupplyChainTransaction, i: int, a: Assessment, d: Decisions, reason: str, created: datetime
    ) -> tuple[Alert, Explanation]:
        alert_id = deterministic_id("supply-chain-alert", tx.event_id, self.model_version)
        by_model = bool(d.model_decides[i])
        if by_model:
            score, conf = float(d.score[i]), float(d.confidence[i])
            severity = "critical" if score >= self.settings.critical_score else "warning"
        else:
            score, conf, severity = 1.0, RULE_ALERT_CONFIDENCE, "critical"
        explanation = self._explanation(tx, i, a, d, alert_id, by_model, created)
        alert = Alert(
            alert_id=alert_id, kind=ALERT_KIND, entity_id=tx.shipment_id, event_ids=[tx.event_id], severity=severity,
            score=score, confidence=conf, decision_source="model" if by_model else "rule", reason=reason,
            model_name=MODEL_NAME, model_version=self.model_version, created_at=created, event_ts=tx.ts,
            explanation=explanation.summary,
        )
        return alert, explanation

    def _explanation(
        self, tx: SupplyChainTransaction, i: int, a: Assessment, d: Decisions, alert_id: str, by_model: bool, created: datetime
    ) -> Explanation:
        rule = a.rules[i]
        lines: list[str] = []
        features: list[Contribution] = []
        counterfactuals: list[Counterfactual] = []
        context = self._context_lines(tx)
        if self.model is not None and self.model.ensemble is not None:
            ens = self.model.ensemble
            s = {k: float(v[i]) for k, v in d.surprises.items()}
            top = max(s, key=s.get) if s else None
            # detector contributions sum to the evidence: the strongest counts fully, the others a quarter
            for name in DETECTORS:
                if name in s:
                    weight = 1.0 if name == top else ens.others_weight
                    # a fact detector's statistic is a bit set: its value here is how many facts fired
                    facts = {"custody": a.custody, "lanes": a.lanes}.get(name)
                    value = float(len(facts[i].fired)) if facts else float(a.statistics[name][i])
                    features.append(Contribution(name=f"detector:{name}", value=value, contribution=weight * s[name]))
            agreeing = [f"{k} {v:.1f}" for k, v in sorted(s.items(), key=lambda kv: -kv[1]) if v >= 2.0]
            quiet = [f"{k} {v:.1f}" for k, v in sorted(s.items(), key=lambda kv: -kv[1]) if v < 2.0]
            lines.append(f"Evidence {d.evidence[i]:.2f} against threshold {ens.threshold:.2f}; P(attack) {d.score[i]:.2f}, "
                         f"confidence {d.confidence[i]:.2f}.")
            lines.append("Detectors beyond their 1 % normal tail: " + (", ".join(agreeing) or "none")
                         + (f"; within it: {', '.join(quiet)}" if quiet else "") + " (surprise: -log10 share of normal flow as unusual).")
            if a.vae_terms is not None:
                terms = a.vae_terms[i]
                total = float(terms.sum()) or 1.0
                for j in np.argsort(-terms)[:_TOP_FEATURES]:
                    share = float(terms[j]) / total
                    features.append(Contribution(name=f"feature:{FEATURES[j]}", value=float(a.x[i, j]),
                                                 contribution=share * s.get("vae", 0.0)))
                named = ", ".join(f"{FEATURES[j]} ({float(a.x[i, j]):.2f})" for j in np.argsort(-terms)[:3])
                lines.append(f"Features the VAE could not reconstruct: {named}.")
            counterfactuals = self._counterfactuals(tx, i, a, d)
        lines.extend(context)
        lines.extend(f"Rule {name}: {text}." for name, text in zip(rule.fired, rule.reasons))
        if not by_model:
            lines.insert(0, f"Decided by rules: {'; '.join(rule.reasons)}.")
        summary = self._summary(tx, i, a, d, by_model, context)
        payload = json.dumps({"transaction": tx.model_dump(mode="json"), "model_version": self.model_version},
                             sort_keys=True, default=str).encode()
        return Explanation(
            alert_id=alert_id, kind=ALERT_KIND, entity_id=tx.shipment_id, model_name=MODEL_NAME,
            model_version=self.model_version, decision_source="model" if by_model else "rule",
            method="detector surprises (-log10 normal tail share; strongest + 0.25 x others = evidence), "
                   "VAE per-feature reconstruction error shares, graph context, deterministic rules",
            summary=summary, text="\n".join(lines), features=features, counterfactuals=counterfactuals,
            rules=rule.checks, inputs_sha256=digest(payload), created_at=created,
        )

    def _summary(self, tx: SupplyChainTransaction, i: int, a: Assessment, d: Decisions, by_model: bool, context: list[str]) -> str:
        head = f"{tx.source_id} -> {tx.target_id}, {tx.quantity:g} x {tx.product_id} lot {tx.lot_id}"
        if not by_model:
            return f"{head}: {'; '.join(a.rules[i].reasons)}"
        s = {k: float(v[i]) for k, v in d.surprises.items()}
        top = sorted(s, key=lambda k: -s[k])[:2]
        first = context[0] if context else ""
        return f"{head}: P(attack) {d.score[i]:.2f}, mostly {' and '.join(top)}. {first}".strip()

    def _context_lines(self, tx: SupplyChainTransaction) -> list[str]:
        """The unusual edge, neighbours and lot, in words."""
        g, t = self.graph, tx.ts.timestamp()
        src, dst = tx.source_id, tx.target_id
        lines = []
        edge = g.edge(src, dst)
        earlier = count_before(edge["ts"], t) if edge is not None else 0
        if earlier == 0:
            lines.append(f"{src} -> {dst} was never seen before.")
        else:
            more = "+" if earlier >= 16 else ""
            lines.append(f"{src} -> {dst}: {earlier}{more} earlier shipments.")
        if self.refresher is not None and self.refresher.table is not None and self.model is not None:
            table = self.refresher.table
            rs, rt = table.rows([src])[0], table.rows([dst])[0]
            if rs < 0 or rt < 0:
                unknown = src if rs < 0 else dst
                lines.append(f"{unknown} has no established flow yet: the GNN cannot place it (a new or rarely used node).")
            else:
                stat, _ = self.model.edges.statistic(table, [src], [dst])
                lines.append(f"GNN plausibility of {src} -> {dst}: {plausibility(float(stat[0])):.1%}.")
        node = g.node(src)
        if node is not None and node["ts"] and t - node["ts"][0] < 7 * _DAY:
            lines.append(f"{src} was first seen {(t - node['ts'][0]) / 3600:.1f} h before this shipment.")
        usual = [f"{n} ({c})" for n, c in g.suppliers_of(dst) if n != src]
        if usual:
            lines.append(f"{dst} usually receives from {', '.join(usual)}.")
        customers = [f"{n} ({c})" for n, c in g.customers_of(src) if n != dst]
        if customers:
            lines.append(f"{src} usually ships to {', '.join(customers)}.")
        return lines

    def _counterfactuals(self, tx: SupplyChainTransaction, i: int, a: Assessment, d: Decisions) -> list[Counterfactual]:
        """Re-score with the route's typical price or quantity (the graph is left as it is)."""
        m = self.model
        assert m is not None and m.ensemble is not None
        ref_qty, ref_price = self.stats.reference(tx, tx.ts.timestamp())
        out = []
        for name, actual, typical, z in (
            ("unit_price", tx.unit_price, ref_price, abs(float(a.x[i, INDEX["price_z"]]))),
            ("quantity", tx.quantity, ref_qty, float(a.x[i, INDEX["qty_z"]])),
        ):
            if typical is None or z < 3.0:
                continue
            typical = round(typical, 2) if name == "unit_price" else float(max(1.0, round(typical)))
            changed = tx.model_copy(update={name: typical})
            row = np.zeros(len(FEATURES))
            encode(changed, self.graph, self.stats, self.features, row)
            x = row[None, :]
            stats = {"gnn": a.statistics["gnn"][i:i + 1], "vae": VAEDetector.statistic(m.vae.terms(x)),
                     "hst": m.hst.statistic(x), "robust": robust_statistic(x),
                     **{k: a.statistics[k][i:i + 1] for k in FACT_DETECTORS}}
            alt = float(m.ensemble.score(m.ensemble.combine(m.ensemble.surprises(stats)))[0])
            out.append(Counterfactual(
                feature=name, actual=float(actual), alternative=float(typical), score_actual=float(d.score[i]),
                score_alternative=alt,
                text=f"if {name} were {typical:g} (typical for this route) instead of {actual:g}, P(attack) would be "
                     f"{alt:.2f} instead of {d.score[i]:.2f}",
            ))
        return out
