"""Train the supply-chain detectors on normal flows, calibrate their ensemble, evaluate it per
attack kind against a HalfSpaceTrees-only baseline, and save a registry version the live scorer
loads.

Data: transactions in the contract layout and verdicts (confirmed: an attack, with its kind;
cleared: normal). A transaction is an attack when a confirmed verdict names its shipment; every
other one counts as normal (unreviewed shipments are assumed normal, as a fraud team would).

Time-ordered split (fractions of the time range): training | validation | test, by default
60 % | 15 % | 25 %. The first `burn_in_days` of training are replayed but not fitted on: the
graph starts empty there, so every edge looks new.
  * The transactions are replayed in event-time order through the graph and the robust
    statistics (graph/state.py, features/supply_chain.py), exactly as a worker keeps them.
  * Fitted on training-period transactions that no confirmed verdict names (normal flows only):
    the robust statistics' product baselines, the feature configuration, the VAE and the
    HalfSpaceTrees, and the GNN (edge prediction with negative sampling on the established flows
    of the graph at the validation cutoff, attack edges removed by the verdicts known by then).
  * From the validation cutoff on, the real scorer (scoring/supply_chain.py) continues the
    replay in batches: graph upkeep, embedding refreshes every `embedding_refresh_every`
    transactions (inline, for reproducibility), verdicts applied as they become known, and every
    detector statistic and rule check per transaction.
  * Calibrated on the validation period: each detector's normal tail (for custody: how often each
    custody fact occurs among normal transactions whose lots could be judged) and the evidence
    threshold for the target flag rate on its normal transactions; P(attack) by Platt scaling on
    its verdicts, or, without enough of them (unlabelled history is fine), the normal-tail rank
    of the evidence: 1 - P_normal(E >= e).
  * Learned from the normal training flows besides: the fastest plausible turnaround of a lot at a
    node (half the 0.2 % quantile of the time from a node's first receipt of a lot to its
    shipments of it; custody's fast_turnaround fact), and the longest quiet spell of the history
    (how long after its end a live stream still continues it: graph/state.py, anchoring).
  * Evaluated on the test period, which holds fresh attack instances (new counterfeit nodes, lots,
    rings, routes): nothing was fitted on them, nor on any test transaction. Per attack kind:
    detection (share of attack shipments flagged, and of attack instances with at least one
    flagged shipment, an instance being a kind and lot), flag rate on normal transactions, and
    precision. Compared with HalfSpaceTrees alone on the same features (its own threshold for the
    same flag rate on the same validation normals), each detector alone, and the product as
    users get it (model where confident, rules where not).
  * Compared with the current version, when there is one: it assesses the test period's batches
    too, on the same graph and statistics right after the new model (as a worker hands its live
    graph to another version), with its own features, detectors and ensemble; both sets of the
    gate's metrics go into the new manifest's "comparison".

Threads: torch.set_num_threads(config.threads) (default 1) for the run.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from schemas.supply_chain import SupplyChainTransaction, SupplyChainVerdict
from stream_app.features.supply_chain import FEATURES, FeatureConfig, RobustStats, encode
from stream_app.graph import custody as custody_facts
from stream_app.graph import lanes as lane_facts
from stream_app.graph import pyg
from stream_app.graph.state import TransactionGraph
from stream_app.models.supply_chain_gnn import SupplyChainGNN
from stream_app.models.supply_chain_vae import TransactionVAE
from stream_app.registry import ModelRegistry, ModelVersion
from stream_app.scoring import supply_chain as scoring
from stream_app.scoring.supply_chain_detectors import DETECTORS, FACT_DETECTORS, EdgeDetector, HSTDetector, VAEDetector
from stream_app.scoring.supply_chain_ensemble import (
    Ensemble, SignalCalibration, TailCalibration, combine, fit_platt_on_evidence,
)
from stream_app.scoring.supply_chain_rules import RULES
from stream_app.settings import SupplyChainSettings
from stream_app import progress as show
from stream_app.training import data as loaders
from stream_app.training.history_import import layouts
from stream_app.training.history_import.column_map import ColumnMap
from stream_app.training.release import NOT_COMPARABLE, Release, comparison, gate_metrics
from stream_app.training.report import Report, jsonable, roc_auc
from stream_app.training.supply_chain_plots import SupplyChainScores, add_figures

MODEL_NAME = scoring.MODEL_NAME
NORMAL = ""
_DAY = 86400.0


@dataclass
class TrainConfig:
    # split
    test_fraction: float = 0.25
    val_fraction: float = 0.15
    burn_in_days: float = 14.0
    target_flag_rate: float = 0.01
    provenance_days: float = 21.0
    # GNN
    gnn_hidden: int = 64
    gnn_embedding: int = 32
    gnn_epochs: int = 300
    gnn_lr: float = 0.01
    anchors: int = 24
    min_edge_count: int = 3
    # VAE
    vae_hidden: int = 64
    vae_latent: int = 8
    vae_epochs: int = 12
    vae_min_steps: int = 1500  # small histories get more epochs, so the VAE still converges
    vae_batch: int = 256
    vae_lr: float = 2e-3
    vae_beta: float = 0.5
    # HalfSpaceTrees
    hst_trees: int = 25
    hst_height: int = 8
    hst_window: int = 2000
    # evaluation replay
    batch_size: int = 256
    embedding_refresh_every: int = 1000
    min_confidence: float = 0.8  # as the live gate (settings.supply_chain), for the product figures
    new_node_days: float = 7.0
    seed: int = 0
    threads: int = 1

    @classmethod
    def quick(cls, **overrides: Any) -> "TrainConfig":
        """Seconds (tests, demos): fewer GNN epochs and VAE steps, a smaller HalfSpaceTrees
        reference window."""
        base: dict[str, Any] = dict(gnn_epochs=120, vae_epochs=4, vae_min_steps=800, hst_window=500, hst_trees=15)
        base.update(overrides)
        return cls(**base)

    def __post_init__(self) -> None:
        if not (0 < self.test_fraction < 1 and 0 < self.val_fraction < 1 and self.test_fraction + self.val_fraction < 1):
            raise ValueError("need 0 < val_fraction, test_fraction and val_fraction + test_fraction < 1")
        if not 0 < self.target_flag_rate < 0.5:
            raise ValueError("target_flag_rate must be in (0, 0.5)")


# --- data ---------------------------------------------------------------------------------------------
@dataclass
class SupplyChainData(loaders.LoadSummary):
    transactions: list[SupplyChainTransaction]
    verdicts: list[SupplyChainVerdict]
    reports: list[loaders.LoadResult[Any]] = field(default_factory=list)


def load_history(transactions: Path | str, verdicts: Optional[Path | str] = None,
                 mapping: Optional[ColumnMap] = None) -> SupplyChainData:
    """A user's transactions file and (optional) verdicts file: JSON Lines in the event layout,
    or CSV/Parquet with a column per field and one `features.NAME` column per feature
    (history_import/layouts.py). Bad rows are skipped and reported; a mostly bad file raises
    DataError. Without verdicts every transaction counts as normal: the detectors still train,
    but the report cannot measure detection."""
    reports = loaders.load_pair(transactions, layouts.TRANSACTIONS, verdicts, layouts.VERDICTS, mapping)
    return SupplyChainData(reports[0].records, reports[1].records if len(reports) > 1 else [], reports)


def simulated_history(
    days: float = 120.0, seed: int = 0, **config: Any
) -> tuple[list[SupplyChainTransaction], list[SupplyChainVerdict]]:
    """The simulator's history (stream_app/simulation/supply_chain.py), validated into the contract's
    models. `config`: SupplyChainConfig fields (network=NetworkConfig(...) for a smaller network)."""
    from stream_app.simulation.supply_chain import SupplyChainConfig, SupplyChainSimulator

    history = SupplyChainSimulator(SupplyChainConfig(seed=seed, **config)).history(days)
    return ([SupplyChainTransaction.model_validate(t) for t in history.transactions],
            [SupplyChainVerdict.model_validate(v) for v in history.verdicts])


def data_fingerprint(transactions: Sequence[SupplyChainTransaction], verdicts: Sequence[SupplyChainVerdict]) -> dict[str, Any]:
    h = hashlib.sha256()
    for tx in transactions:
        h.update(f"{tx.event_id}\x1f{tx.ts.isoformat()}\x1f{tx.shipment_id}\x1f{tx.quantity}\x1f{tx.unit_price}\n".encode())
    hv = hashlib.sha256()
    for v in verdicts:
        hv.update(f"{v.event_id}\x1f{v.shipment_id}\x1f{v.verdict}\x1f{v.attack_kind}\n".encode())
    return {"transactions": len(transactions), "verdicts": len(verdicts), "sha256": h.hexdigest(),
            "verdicts_sha256": hv.hexdigest()}


# --- fitting --------------------------------------------------------------------------------------------
def fit_gnn(
    snap: pyg.GraphSnapshot, anchors: Sequence[str], config: TrainConfig, rng: np.random.Generator
) -> tuple[SupplyChainGNN, dict[str, Any]]:
    """Edge prediction on established flows: each epoch asks the model to tell a fifth of the edges
    (half of them hidden from message passing, half not) from negatives: the same source with a
    random node of the target's type (another region, mostly), with any random node, or the edge
    reversed. A tenth of the edges is held out throughout to measure how well unseen flows are
    judged."""
    data = pyg.to_data(snap, anchors)
    edges, n = snap.edges, len(snap.nodes)
    n_edges = edges.shape[1]
    if n_edges < 20 or n < 10:
        raise ValueError(f"too few established flows to train the GNN ({n_edges} edges among {n} nodes)")
    model = SupplyChainGNN(data.x.shape[1], config.gnn_hidden, config.gnn_embedding)
    opt = torch.optim.Adam(model.parameters(), lr=config.gnn_lr, weight_decay=1e-5)
    perm = rng.permutation(n_edges)
    held, train = perm[: n_edges // 10], perm[n_edges // 10:]
    by_type = {t: np.flatnonzero(snap.types == t) for t in np.unique(snap.types)}

    def negatives(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = len(u)
        vv = rng.integers(0, n, m)
        same = rng.random(m) < 0.5
        for t, idx in by_type.items():
            sel = same & (snap.types[v] == t)
            vv[sel] = rng.choice(idx, sel.sum())
        uu = u.copy()
        rev = rng.random(m) < 0.2
        uu[rev], vv[rev] = v[rev], u[rev]
        return uu, vv

    x = data.x
    losses = []
    started = time.perf_counter()
    for _ in range(config.gnn_epochs):
        model.train()
        p = rng.permutation(train)
        sup = p[: len(p) // 5]
        # half the supervised edges stay in message passing: scoring judges both existing flows
        # (in the graph) and new ones (not in it), and a pharmacy's only edge must not always vanish
        mp = np.concatenate([p[len(p) // 5:], sup[: len(sup) // 2]])
        ei = torch.from_numpy(edges[:, mp])
        z = model.encode(x, torch.cat([ei, ei.flip(0)], dim=1))
        u, v = edges[0, sup], edges[1, sup]
        nu, nv = negatives(u, v)
        logits = torch.cat([model.decode(z[u], z[v]), model.decode(z[nu], z[nv])])
        target = torch.cat([torch.ones(len(u)), torch.zeros(len(nu))])
        loss = F.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        ei = torch.from_numpy(edges[:, train])
        z = model.encode(x, torch.cat([ei, ei.flip(0)], dim=1))
        u, v = edges[0, held], edges[1, held]
        nu, nv = negatives(u, v)
        pos, neg = model.decode(z[u], z[v]).numpy(), model.decode(z[nu], z[nv]).numpy()
    info = {
        "nodes": n, "edges": int(n_edges), "held_out_edges": int(len(held)),
        "held_out_auc": roc_auc(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]),
        "final_loss": losses[-1], "seconds": round(time.perf_counter() - started, 2),
        # an endpoint without an embedding is as plausible as a random pair
        "cold_statistic": float(np.median(np.logaddexp(0.0, -neg))),
    }
    return model, info


def fit_vae(x: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> tuple[VAEDetector, dict[str, Any]]:
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), 0.05)  # near-constant features (a flag never set) stay sharp
    z = torch.from_numpy(((x - mean) / std).astype(np.float32))
    model = TransactionVAE(x.shape[1], config.vae_hidden, config.vae_latent)
    opt = torch.optim.Adam(model.parameters(), lr=config.vae_lr)
    started = time.perf_counter()
    losses = []
    epochs = max(config.vae_epochs, math.ceil(config.vae_min_steps * config.vae_batch / max(1, len(z))))
    for _ in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(z)))
        total = 0.0
        for k in range(0, len(z), config.vae_batch):
            b = z[order[k:k + config.vae_batch]]
            recon, mu, logvar = model(b)
            kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=1))
            loss = ((recon - b) ** 2).sum(dim=1).mean() + config.vae_beta * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        losses.append(total / len(z))
    model.eval()
    with torch.no_grad():
        residual = ((z - model.reconstruct(z)) ** 2).numpy().mean(axis=0)
    detector = VAEDetector(model, mean, std, np.maximum(residual.astype(np.float64), 1e-3))
    return detector, {"rows": len(z), "epochs": epochs, "loss_by_epoch": [round(v, 4) for v in losses],
                      "seconds": round(time.perf_counter() - started, 2)}


def fit_hst(x: np.ndarray, config: TrainConfig) -> HSTDetector:
    low, high = np.quantile(x, 0.005, axis=0), np.quantile(x, 0.995, axis=0)
    # a feature constant in training (a flag never set) spans [value, value + 1]
    high = np.where(high - low < 1e-9, low + 1.0, high)
    detector = HSTDetector(low, high, config.hst_trees, config.hst_height, config.hst_window, config.seed)
    rows = x[-((len(x) // config.hst_window) * config.hst_window):] if len(x) >= config.hst_window else x
    if len(rows) < config.hst_window:
        raise ValueError(f"HalfSpaceTrees needs {config.hst_window} normal training rows, got {len(x)}")
    detector.fit(rows[-config.hst_window:])
    return detector


# --- training -------------------------------------------------------------------------------------------
def train_supply_chain(
    registry: ModelRegistry,
    transactions: Sequence[SupplyChainTransaction],
    verdicts: Sequence[SupplyChainVerdict] = (),
    config: TrainConfig = TrainConfig(),
    progress: bool = False,
    *,
    promote: Union[bool, str, Release] = True,
    source: Optional[dict[str, Any]] = None,
) -> ModelVersion:
    """Train, evaluate and save a new `supply-chain` version, released as `promote` says
    (stream_app.training.release; default: through the promotion gate, False: registered only).
    `source`: notes on where the data came from, copied into the report."""
    wall = time.perf_counter()
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    steps = show.Steps("training supply chain", STEPS) if progress else None
    try:
        return _train(registry, transactions, verdicts, config, steps, Release.of(promote), source, wall)
    finally:
        torch.set_num_threads(previous)
        if steps is not None:
            steps.close()


STEPS = 5  # the _say calls of _train: replay, GNN, VAE and HalfSpaceTrees, scoring, written


def _say(steps: Optional[show.Steps], wall: float, text: str) -> None:
    """A step of the training starts: the bar of steps says so, and a line what it found."""
    if steps is not None:
        steps(text.split(";")[-1].strip())
        show.note(f"[{time.perf_counter() - wall:6.1f}s] {text}")


@dataclass
class _Split:
    t: np.ndarray
    val_cut: float
    test_cut: float
    burn_end: float

    def masks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.t < self.val_cut, (self.t >= self.val_cut) & (self.t < self.test_cut), self.t >= self.test_cut


def _train(
    registry: ModelRegistry,
    transactions: Sequence[SupplyChainTransaction],
    verdicts: Sequence[SupplyChainVerdict],
    config: TrainConfig,
    steps: Optional[show.Steps],
    release: Release,
    source: Optional[dict[str, Any]],
    wall: float,
) -> ModelVersion:
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    seen: set[str] = set()
    txs = []
    for tx in sorted(transactions, key=lambda tx: (tx.ts, tx.event_id)):
        if tx.event_id not in seen:
            seen.add(tx.event_id)
            txs.append(tx)
    if len(txs) < 1000:
        raise ValueError(f"need at least 1,000 transactions to train, got {len(txs)}")
    attacks = {v.shipment_id: v.attack_kind or "unspecified" for v in verdicts if v.verdict == "confirmed"}
    kind = np.array([attacks.get(tx.shipment_id, NORMAL) for tx in txs], dtype=object)
    normal = kind == NORMAL
    t = np.array([tx.ts.timestamp() for tx in txs])
    span = t[-1] - t[0]
    split = _Split(t, t[0] + (1 - config.test_fraction - config.val_fraction) * span, t[0] + (1 - config.test_fraction) * span,
                   t[0] + config.burn_in_days * _DAY)
    train, val, test = split.masks()
    fit_rows = train & normal & (t >= split.burn_end)
    if fit_rows.sum() < max(500, config.hst_window):
        raise ValueError(f"only {int(fit_rows.sum())} normal training transactions after the {config.burn_in_days:g}-day "
                         "burn-in: give a longer history or a shorter burn_in_days")
    if (val & normal).sum() < 200 or not test.any():
        raise ValueError("the validation period needs at least 200 normal transactions and the test period some")
    _say(steps, wall, f"{len(txs):,} transactions, {int((~normal).sum()):,} confirmed attacks; replaying the training period")

    # fitted on normal training flows only
    normal_train = [tx for tx, ok in zip(txs, train & normal) if ok]
    stats = RobustStats.fit(normal_train)
    features = FeatureConfig.fit(normal_train, config.provenance_days)
    graph = TransactionGraph()
    x = np.zeros((len(txs), len(FEATURES)), dtype=np.float32)
    row = np.zeros(len(FEATURES))
    n_train = int(train.sum())  # transactions are in time order: the training period is a prefix
    turnarounds = []
    replay_started = time.perf_counter()
    for i in range(n_train):
        tx = txs[i]
        graph.apply(tx)
        stats.update(tx)
        encode(tx, graph, stats, features, row)
        x[i] = row
        lot = graph.lots[tx.lot_id]
        received = lot.holders.get(tx.source_id)
        if fit_rows[i] and received is not None and received < t[i] and lot.origin != tx.source_id:
            turnarounds.append(t[i] - received)
    replay_seconds = time.perf_counter() - replay_started
    features.min_turnaround_h = _min_turnaround_h(turnarounds)
    graph.quiet_s = float(np.max(np.diff(t))) if len(t) > 1 else graph.quiet_s
    reliable = fit_rows & (x[:, FEATURES.index("lot_dwell")] > 0)
    if reliable.any():
        features.neutral_dwell = float(np.median(x[reliable, FEATURES.index("lot_dwell")]))
        features.neutral_movements = float(np.median(x[reliable, FEATURES.index("lot_movements")]))

    known_verdicts = sorted((v for v in verdicts if v.verdict == "confirmed"), key=lambda v: v.ts)
    vi = 0
    while vi < len(known_verdicts) and known_verdicts[vi].ts.timestamp() < split.val_cut:
        graph.apply_verdict(known_verdicts[vi])
        vi += 1
    _say(steps, wall, "fitting the GNN on established normal flows")
    snap = pyg.snapshot(graph, config.min_edge_count)
    anchors = pyg.choose_anchors(snap, config.anchors)
    gnn, gnn_info = fit_gnn(snap, anchors, config, rng)
    _say(steps, wall, f"GNN held-out edge AUC {gnn_info['held_out_auc']:.3f}; fitting the VAE and HalfSpaceTrees")
    vae, vae_info = fit_vae(x[fit_rows], config, rng)
    hst_started = time.perf_counter()
    hst = fit_hst(x[fit_rows].astype(np.float64), config)
    hst_seconds = time.perf_counter() - hst_started

    model = scoring.SupplyChainModel(
        version="training", features=features, vae=vae, hst=hst, edges=EdgeDetector(gnn, gnn_info["cold_statistic"]),
        anchors=anchors, min_edge_count=config.min_edge_count, ensemble=None,
    )
    settings = SupplyChainSettings(min_confidence=config.min_confidence, new_node_days=config.new_node_days,
                                   embedding_refresh_every=config.embedding_refresh_every, embedding_refresh_s=1e9)
    scorer = scoring.SupplyChainScorer(settings, model, graph, stats, background_refresh=False)

    _say(steps, wall, "scoring the validation and test periods through the live scorer")
    current = registry.current(MODEL_NAME)
    shadow = _Shadow.start(current, settings, graph, stats) if current is not None else None
    assessments: list[tuple[int, scoring.Assessment]] = []
    eval_started = time.perf_counter()
    i = n_train
    while i < len(txs):
        batch = txs[i:i + config.batch_size]
        first = batch[0].ts.timestamp()
        while vi < len(known_verdicts) and known_verdicts[vi].ts.timestamp() <= first:
            graph.apply_verdict(known_verdicts[vi])
            vi += 1
        assessments.append((i, scorer.evaluate(batch)))
        if isinstance(shadow, _Shadow):
            shadow.after(i, batch, assess=t[i + len(batch) - 1] >= split.test_cut)
        i += len(batch)
    eval_seconds = time.perf_counter() - eval_started
    n_eval = len(txs) - n_train
    stat = {d: np.full(len(txs), np.nan) for d in DETECTORS}
    judged = np.zeros(len(txs), bool)  # custody evidence could be judged (lots watched or with provenance)
    for start, a in assessments:
        for d in DETECTORS:
            stat[d][start:start + len(a.x)] = a.statistics[d]
        x[start:start + len(a.x)] = a.x
        judged[start:start + len(a.x)] = [c.watched for c in a.custody]

    # calibration on the validation period
    val_normal = val & normal
    detectors: dict[str, Any] = {d: TailCalibration.fit(stat[d][val_normal]) for d in DETECTORS if d not in FACT_DETECTORS}
    detectors["custody"] = SignalCalibration.fit(custody_facts.SIGNALS, stat["custody"][val_normal & judged],
                                                 int((val_normal & judged).sum()))
    detectors["lanes"] = SignalCalibration.fit(lane_facts.SIGNALS, stat["lanes"][val_normal], int(val_normal.sum()))
    surprises = {d: detectors[d].surprise(np.nan_to_num(stat[d])) for d in DETECTORS}
    evidence = combine(surprises)
    threshold = float(np.quantile(evidence[val_normal], 1 - config.target_flag_rate))
    val_attacks = int((val & ~normal).sum())
    platt = fit_platt_on_evidence(evidence[val], (~normal[val]).astype(np.float64)) if val_attacks >= 5 else None
    ensemble = Ensemble(detectors, TailCalibration.fit(evidence[val_normal]), threshold, config.target_flag_rate, platt)
    model.ensemble = ensemble

    # decisions on every scored transaction (the test period is what is reported)
    n = len(txs)
    product_flag = np.zeros(n, bool)
    model_flag = np.zeros(n, bool)
    by_model = np.zeros(n, bool)
    confidence = np.zeros(n)
    score = np.zeros(n)
    fired = {r: np.zeros(n, bool) for r in RULES}
    for start, a in assessments:
        d = scoring.decide(a, ensemble, settings)
        sl = slice(start, start + len(a.x))
        product_flag[sl], model_flag[sl], by_model[sl] = d.flagged, d.model_flag, d.model_decides
        confidence[sl], score[sl] = d.confidence, d.score
        for r in RULES:
            fired[r][sl] = [r in res.fired for res in a.rules]
    rules_flag = np.any(np.stack([fired[r] for r in RULES]), axis=0)
    hst_threshold = float(np.quantile(stat["hst"][val_normal], 1 - config.target_flag_rate))
    baseline_flag = stat["hst"] >= hst_threshold
    alone = {d: _alone(surprises[d], val_normal, config.target_flag_rate) for d in DETECTORS}

    instances = np.array([f"{k}|{tx.lot_id}" if k != NORMAL else "" for k, tx in zip(kind, txs)], dtype=object)
    evaluation = {
        "ensemble": _policy_metrics(model_flag, kind, instances, test),
        "product": _policy_metrics(product_flag, kind, instances, test),
        "baseline_hst": _policy_metrics(baseline_flag, kind, instances, test),
        "rules_only": _policy_metrics(rules_flag, kind, instances, test),
        **{f"{d}_alone": _policy_metrics(alone[d], kind, instances, test) for d in DETECTORS},
    }
    validation = {
        "ensemble": _policy_metrics(model_flag, kind, instances, val),
        "baseline_hst": _policy_metrics(baseline_flag, kind, instances, val),
    }
    ranking = {
        "ensemble_auc": roc_auc((~normal[test]).astype(float), evidence[test]),
        "baseline_hst_auc": roc_auc((~normal[test]).astype(float), stat["hst"][test]),
    }
    reliability = _confidence_reliability(confidence, model_flag, normal, test & by_model)

    split_info = {
        "first_ts": _iso(t[0]), "validation_cutoff": _iso(split.val_cut), "test_cutoff": _iso(split.test_cut),
        "last_ts": _iso(t[-1]), "burn_in_end": _iso(split.burn_end),
        "train": int(train.sum()), "fitted_normal": int(fit_rows.sum()), "validation": int(val.sum()),
        "validation_attacks": val_attacks, "test": int(test.sum()), "test_attacks": int((test & ~normal).sum()),
        "test_fraction": config.test_fraction, "val_fraction": config.val_fraction,
    }
    training = {
        "replay_seconds": round(replay_seconds, 2), "gnn": gnn_info, "vae": vae_info, "hst_seconds": round(hst_seconds, 2),
        "evaluation_seconds": round(eval_seconds, 2),
        "evaluation_rate_per_s": round(n_eval / eval_seconds, 1) if eval_seconds > 0 else None,
        "embedding_refreshes": scorer.refresher.refreshes if scorer.refresher else 0,
        "graph": {"nodes": graph.nodes, "edges": graph.edges, "lots": len(graph.lots)},
    }
    run_id = uuid.uuid4().hex
    manifest = {
        "kind": "supply_chain_ensemble",
        "run_id": run_id,
        "features": features.to_dict(),
        "vae": vae.to_manifest(),
        "hst": hst.to_manifest(),
        "gnn": {"hyperparameters": gnn.hyperparameters(), "anchors": anchors, "cold_statistic": gnn_info["cold_statistic"],
                "min_edge_count": config.min_edge_count},
        "ensemble": ensemble.to_dict(),
        "split": split_info,
        "metrics": jsonable({"test": evaluation, "validation": validation, "ranking": ranking,
                             "confidence_reliability": reliability,
                             "product_rule_decided_share": float((~by_model[test]).mean())}),
        "training": jsonable(training),
        "data_fingerprint": data_fingerprint(txs, verdicts),
        "train_config": jsonable(asdict(config)),
        "attack_kinds": sorted({k for k in kind if k != NORMAL}),
    }
    if current is not None:
        manifest["comparison"] = comparison(
            current, gate_metrics(MODEL_NAME, manifest),
            lambda version: _Shadow.metrics_of(shadow, kind, instances, normal, test),
            f"the test period of this run's data, {split_info['test_cutoff']} to {split_info['last_ts']}: "
            f"{split_info['test']} transactions, {split_info['test_attacks']} of them attacks",
        )
    with registry.new_version(MODEL_NAME, jsonable(manifest), promote=False, actor=release.actor, reason=release.reason) as staging:
        torch.save(gnn.state_dict(), staging / scoring.GNN_FILE)
        torch.save(vae.model.state_dict(), staging / scoring.VAE_FILE)
        np.save(staging / scoring.HST_FILE, hst.reference, allow_pickle=False)
        torch.save({"graph": graph.to_state(), "stats": stats.to_state()}, staging / scoring.GRAPH_FILE)
        scores = SupplyChainScores(kind[test], evidence[test], threshold, stat["hst"][test], hst_threshold)
        _build_report(manifest, source, time.perf_counter() - wall, scores).write(staging)
    written = next((v for v in reversed(registry.versions(MODEL_NAME)) if v.manifest.get("run_id") == run_id), None)
    if written is None:
        raise RuntimeError("the new model version was written but cannot be found in the registry")
    # The version must load as a worker loads it before it may become current.
    scoring.SupplyChainScorer.from_version(written, settings, background_refresh=False).close()
    release.apply(registry, MODEL_NAME, written.version)
    _say(steps, wall, f"{MODEL_NAME} {written.version} written to {written.path}")
    return written


def _min_turnaround_h(turnarounds: Sequence[float]) -> float:
    """Half the 0.2 % quantile of normal turnarounds (seconds), in hours; 0 (never too fast) with
    fewer than 500 of them to judge by."""
    if len(turnarounds) < 500:
        return 0.0
    return float(0.5 * np.quantile(np.asarray(turnarounds), 0.002) / 3600.0)


def _alone(surprise: np.ndarray, val_normal: np.ndarray, rate: float) -> np.ndarray:
    """One detector's flags at the target rate on validation normals; a detector silent on most
    of them (custody) flags what it fires on."""
    threshold = float(np.quantile(surprise[val_normal], 1 - rate))
    return surprise >= threshold if threshold > 0 else surprise > 0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


class _Shadow:
    """An existing version assessing batches of the run's replay right after the new model's
    scorer applied them: the same graph and statistics (a version's own graph is its training
    snapshot; workers switching versions keep theirs too), its own features, detectors,
    embeddings and ensemble."""

    def __init__(self, scorer: scoring.SupplyChainScorer, settings: SupplyChainSettings) -> None:
        self.scorer, self.settings = scorer, settings
        self.assessed: list[tuple[int, scoring.Assessment]] = []

    @classmethod
    def start(
        cls, version: ModelVersion, settings: SupplyChainSettings, graph: TransactionGraph, stats: RobustStats
    ) -> "_Shadow | Exception":
        """The shadow, or why the version cannot be one (kept for the comparison)."""
        try:
            model, _, _ = scoring.SupplyChainModel.from_version(version)
            return cls(scoring.SupplyChainScorer(settings, model, graph, stats, background_refresh=False), settings)
        except NOT_COMPARABLE as exc:
            return exc

    def after(self, start: int, batch: Sequence[SupplyChainTransaction], assess: bool) -> None:
        """After the run's scorer applied `batch`: assess it (test batches), and refresh the
        embeddings on the same schedule as the run's scorer."""
        if assess:
            with torch.no_grad():
                self.assessed.append((start, self.scorer.assess(batch)))
        if self.scorer.refresher is not None:
            self.scorer.refresher.maybe_refresh(self.scorer.graph)

    @staticmethod
    def metrics_of(
        shadow: "_Shadow | Exception | None", kind: np.ndarray, instances: np.ndarray, normal: np.ndarray, test: np.ndarray
    ) -> dict[str, float]:
        """The gate's offline metrics over the test period, by the run's own metric code."""
        if not isinstance(shadow, _Shadow):
            raise shadow if isinstance(shadow, Exception) else ValueError("it was not scored")
        flag, evidence = np.zeros(len(kind), bool), np.zeros(len(kind))
        for start, a in shadow.assessed:
            d = scoring.decide(a, shadow.scorer.model.ensemble if shadow.scorer.model else None, shadow.settings)
            flag[start:start + len(a.x)], evidence[start:start + len(a.x)] = d.flagged, d.evidence
        # Shaped like the run's manifest metrics: the gate's paths pick the values.
        return gate_metrics(MODEL_NAME, {"metrics": {
            "test": {"product": _policy_metrics(flag, kind, instances, test)},
            "ranking": {"ensemble_auc": roc_auc((~normal[test]).astype(float), evidence[test])},
        }})


def _policy_metrics(flag: np.ndarray, kind: np.ndarray, instances: np.ndarray, period: np.ndarray) -> dict[str, Any]:
    """Detection per attack kind (shipments and instances), flag rate on normal transactions and
    precision, over `period`. Per-kind precision: that kind's flagged shipments among them plus
    every flagged normal one (the precision if this were the only kind of attack)."""
    normal = period & (kind == NORMAL)
    fp = int((flag & normal).sum())
    flag_rate = fp / max(1, int(normal.sum()))
    out: dict[str, Any] = {"normal": int(normal.sum()), "flag_rate_normal": flag_rate, "kinds": {}}
    tp_all = 0
    for k in sorted({k for k in kind[period] if k != NORMAL}):
        m = period & (kind == k)
        tp = int((flag & m).sum())
        tp_all += tp
        caught: dict[str, bool] = defaultdict(bool)
        for inst, f in zip(instances[m], flag[m]):
            caught[inst] |= bool(f)
        out["kinds"][k] = {
            "shipments": int(m.sum()), "detected_shipments": tp, "detection": tp / max(1, int(m.sum())),
            "instances": len(caught), "detected_instances": sum(caught.values()),
            "instance_detection": sum(caught.values()) / max(1, len(caught)),
            "precision": tp / (tp + fp) if tp + fp else None,
        }
    attacks = period & (kind != NORMAL)
    out["attack_shipments"] = int(attacks.sum())
    # without labelled attacks (unlabelled history) detection is not measured, not zero
    out["detection"] = tp_all / int(attacks.sum()) if attacks.any() else None
    out["precision"] = tp_all / (tp_all + fp) if tp_all + fp else None
    out["flagged"] = int((flag & period).sum())
    return out


def _confidence_reliability(conf: np.ndarray, flag: np.ndarray, normal: np.ndarray, period: np.ndarray) -> list[dict[str, Any]]:
    """Model decisions by confidence band: how often the decision matched the verdict (flag on an
    attack, no flag on a normal transaction)."""
    right = np.where(flag, ~normal, normal)
    out = []
    for lo, hi in ((0.0, 0.6), (0.6, 0.8), (0.8, 0.95), (0.95, 0.99), (0.99, 1.01)):
        m = period & (conf >= lo) & (conf < hi)
        out.append({"band": f"{lo:.2f}-{min(hi, 1.0):.2f}", "decisions": int(m.sum()),
                    "flags": int((m & flag).sum()), "mean_confidence": float(conf[m].mean()) if m.any() else None,
                    "right": float(right[m].mean()) if m.any() else None,
                    "flags_right": float(right[m & flag].mean()) if (m & flag).any() else None})
    return out


# --- the report ----------------------------------------------------------------------------------------
_COLUMNS = (("ensemble", "Ensemble"), ("baseline_hst", "HalfSpaceTrees alone (baseline)"), ("product", "Product (gated, rules)"))


def _pct(v: Optional[float]) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _build_report(manifest: dict[str, Any], source: Optional[dict[str, Any]], seconds: float,
                  scores: Optional[SupplyChainScores] = None) -> Report:
    """The report; with `scores` (the test period's) its figures too, written beside it."""
    m = manifest["metrics"]["test"]
    split, tr, ens = manifest["split"], manifest["training"], manifest["ensemble"]
    rate = ens["target_flag_rate"]
    report = Report("Supply-chain anomaly model: training report",
                    data={"metrics": manifest["metrics"], "split": split, "training_seconds": round(seconds, 1)})
    e, b = m["ensemble"], m["baseline_hst"]
    report.text(
        "Summary",
        f"Test period {split['test_cutoff'][:10]} to {split['last_ts'][:10]}: {split['test']:,} transactions, "
        f"{split['test_attacks']:,} attack shipments of kinds and instances never trained on (the detectors fit normal "
        f"flows of the training period; fresh attack instances: new counterfeit nodes, lots, rings and routes). "
        f"Ensemble at a {rate:.1%} target flag rate: {_pct(e['detection'])} of attack shipments flagged, "
        f"{_pct(e['flag_rate_normal'])} of normal transactions flagged, precision {_pct(e['precision'])}; "
        f"HalfSpaceTrees alone at the same rate: {_pct(b['detection'])}, {_pct(b['flag_rate_normal'])}, "
        f"{_pct(b['precision'])}. Trained in {seconds:.0f} s.",
    )
    kinds = sorted(e["kinds"])
    rows = []
    for k in kinds:
        row: list[Any] = [k, e["kinds"][k]["shipments"], e["kinds"][k]["instances"]]
        for key, _ in _COLUMNS:
            km = m[key]["kinds"][k]
            row += [_pct(km["detection"]), _pct(km["instance_detection"]), _pct(km["precision"])]
        rows.append(row)
    total: list[Any] = ["all attacks", e["attack_shipments"], sum(e["kinds"][k]["instances"] for k in kinds)]
    for key, _ in _COLUMNS:
        total += [_pct(m[key]["detection"]), "", _pct(m[key]["precision"])]
    rows.append(total)
    rows.append(["normal: flag rate", e["normal"], ""] + sum(([_pct(m[key]["flag_rate_normal"]), "", ""] for key, _ in _COLUMNS), []))
    cols = ["Attack kind", "Shipments", "Instances"]
    for _, label in _COLUMNS:
        cols += [f"{label}: detected shipments", "instances", "precision"]
    report.table(
        "Detection per attack kind (test period)", cols, rows,
        note=(f"Thresholds: the ensemble's evidence and the baseline's HalfSpaceTrees score each at their "
              f"{1 - rate:.0%} quantile on the validation period's normal transactions (target flag rate {rate:.1%}). "
              "An instance (a kind and a lot: a counterfeiter's deliveries, a ring's hops) counts as detected when any of "
              "its shipments is flagged. Precision per kind: its flagged shipments among those plus every flagged normal "
              "transaction (the precision if it were the only attack); 'all attacks' is the overall precision. "
              f"Product: the model decides at competence (coverage) >= {manifest['train_config']['min_confidence']:g}, "
              "the rules below it (as a worker does)."),
    )
    detector_rows = []
    for d in DETECTORS:
        dm = m[f"{d}_alone"]
        detector_rows.append([d, _pct(dm["detection"]), _pct(dm["flag_rate_normal"])] + [_pct(dm["kinds"][k]["detection"]) for k in kinds])
    rm = m["rules_only"]
    detector_rows.append(["rules only", _pct(rm["detection"]), _pct(rm["flag_rate_normal"])] + [_pct(rm["kinds"][k]["detection"]) for k in kinds])
    report.table("Each detector alone (test period, same flag rate)", ["Detector", "Detection", "Flag rate", *kinds], detector_rows,
                 note="Each detector's surprise thresholded alone at the same validation quantile: what the ensemble adds.")
    if scores is not None:
        add_figures(report, scores, m, rate)
    rel = manifest["metrics"]["confidence_reliability"]
    report.table(
        "Confidence of model decisions (test period)",
        ["Confidence", "Decisions", "Flags", "Mean confidence", "Decision matched the verdict", "Flags that were attacks"],
        [[r["band"], r["decisions"], r["flags"], r["mean_confidence"], r["right"], r["flags_right"]] for r in rel],
        note="Confidence = decisiveness (how clearly the evidence sits on its side of the threshold) x coverage (what the "
             "model could not see); only a low coverage hands a decision to the rules. A flag is a request for review at the target flag rate, so flags near the threshold "
             "are mostly normal transactions; the score (P(attack)) says how likely an attack is.",
    )
    rk = manifest["metrics"]["ranking"]
    report.kv("Ranking (test period)", {"ROC AUC, ensemble evidence": rk["ensemble_auc"],
                                        "ROC AUC, HalfSpaceTrees score": rk["baseline_hst_auc"]})
    report.kv(
        "Calibration",
        {"evidence threshold": ens["threshold"], "target flag rate": rate,
         "score": (f"Platt: P(attack) = sigmoid({ens['score']['a']:.3f} x evidence + {ens['score']['b']:.3f}) on the "
                   f"{split['validation_attacks']} validation attack shipments") if ens["score"]["method"] == "platt"
         else "normal-tail rank 1 - P_normal(E >= e) (fewer than 5 labelled attacks in the validation period: "
              "unlabelled history calibrates on normal traffic alone)",
         "validation flag rate (ensemble / baseline)": [manifest["metrics"]["validation"]["ensemble"]["flag_rate_normal"],
                                                        manifest["metrics"]["validation"]["baseline_hst"]["flag_rate_normal"]],
         "test transactions decided by rules (model not confident)": _pct(manifest["metrics"]["product_rule_decided_share"])},
        note="Each detector's statistic becomes a surprise, -log10 of the share of normal validation transactions at least "
             "as unusual (exponential tail beyond the 98th percentile); for the custody and lane facts, -log10 of the rarest "
             "fired fact's share of normal validation transactions (a fact none of them showed: the maximum); evidence = "
             "largest surprise + 0.25 x the others.",
    )
    fp = manifest["data_fingerprint"]
    report.kv("Data", {"transactions": fp["transactions"], "verdicts": fp["verdicts"], "sha256": fp["sha256"],
                       "verdicts sha256": fp["verdicts_sha256"], "attack kinds": manifest["attack_kinds"],
                       "time range": f"{split['first_ts']} – {split['last_ts']}"})
    if source:
        report.kv("Source files", source)
    report.kv(
        "Split (time-ordered)",
        {"burn-in until (replayed, not fitted)": split["burn_in_end"], "validation cutoff": split["validation_cutoff"],
         "test cutoff": split["test_cutoff"], "training transactions / fitted normal": f"{split['train']:,} / {split['fitted_normal']:,}",
         "validation transactions / attacks": f"{split['validation']:,} / {split['validation_attacks']:,}",
         "test transactions / attacks": f"{split['test']:,} / {split['test_attacks']:,}"},
        note="Detectors fit the training period's normal transactions (confirmed attacks removed); calibration uses the "
             "validation period; the test period's attack instances were generated after both and never seen.",
    )
    g = tr["gnn"]
    report.kv(
        "Training",
        {"seconds (total)": round(seconds, 1), "replay of the training period, s": tr["replay_seconds"],
         "GNN: established flows (nodes / edges)": f"{g['nodes']} / {g['edges']}",
         "GNN: held-out edge ROC AUC (vs same-type and random negatives)": g["held_out_auc"],
         "GNN: seconds": g["seconds"], "VAE: rows / epochs / seconds": f"{tr['vae']['rows']:,} / {tr['vae']['epochs']} / {tr['vae']['seconds']}",
         "VAE loss by epoch": tr["vae"]["loss_by_epoch"], "HalfSpaceTrees seconds": tr["hst_seconds"],
         "evaluation replay (transactions/s, graph + features + detectors + rules)": tr["evaluation_rate_per_s"],
         "embedding refreshes during evaluation": tr["embedding_refreshes"],
         "graph at the end (nodes / edges / lots kept)": f"{tr['graph']['nodes']} / {tr['graph']['edges']} / {tr['graph']['lots']}"},
    )
    return report
