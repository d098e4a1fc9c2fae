"""Supply-chain transaction features, shared by training and scoring: one row per transaction,
computed as of its event time from the transaction graph (stream_app/graph/state.py) and the
robust statistics kept here.

Groups (FEATURES lists them in order; all are numbers near [-12, 12], most in [0, 1]):
  amounts   robust z of log quantity and log unit price, against the route (source, target,
            product: its last 12 shipments, when at least 5 are earlier) or, failing that, the
            product's median and MAD for that flow (manufacturer -> distributor, ...) from
            training, shifted by how this edge's shipments of any product usually sit against
            their products' medians (a small customer orders little of everything; its last 24,
            when at least 5 are earlier; a route with 2-4 earlier shipments is centred on their
            median, with the edge's spread widened for so few), or the product's alone; `stats_level` says which (1
            route, 0.75 edge, 0.5 product, 0 none: a product never seen, a signal of its own in
            `product_familiarity`)
  timing    hour and weekday (cyclic), weekend, night; how often this edge shipped within an
            hour of this time of day, and on this weekday (log share; typical values while the
            edge has fewer than 5 earlier shipments); how often training shipments of this type
            pair (wholesaler -> pharmacy, ...) came within an hour of this time of day
  flow      source and target type, rank step down the chain (negative: goes back up),
            how common the type pair was in training
  novelty   familiarity (earlier shipments, log-scaled, saturating at 16) and age (log hours,
            saturating at 30 days) of the edge,
            the reverse edge, the source, the target, the route, the product and the carrier
            (on this edge and at all); a missing carrier
  lot       seen before; unproven (no manufacturer was seen shipping it and the source never
            received it: the lot enters the chain here, a lot number nobody produced); at two places (the source never received a lot whose
            provenance is known); dwell time at the source; earlier movements. Lot evidence
            needs either the lot's first shipment or `provenance_days` of watching lots (a worker
            that starts after a gap has not seen the receipts of lots already in the chain);
            until then these take neutral values.
  controlled product (from the transaction's `features.controlled` or the trained list)

Cold start: unknown nodes, edges, products and lots are not errors; they show up as familiarity
0 and age 0, which is exactly what a brand-new counterfeiter looks like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from schemas.supply_chain import SupplyChainTransaction
from stream_app.graph.state import FIRST_K, TransactionGraph, age_hours, count_before

SOURCE_GROUPS = {"manufacturer": 0, "distributor": 1, "wholesaler": 2, "pharmacy": 3, "hospital": 3, "carrier": 4, "other": 4}
TARGET_GROUPS = {"distributor": 0, "wholesaler": 1, "pharmacy": 2, "hospital": 3, "manufacturer": 4, "carrier": 4, "other": 4}
# Position down the chain; "other" and carriers sit with wholesalers (traders).
RANK = {"manufacturer": 0, "distributor": 1, "wholesaler": 2, "other": 2, "carrier": 2, "pharmacy": 3, "hospital": 3}

FEATURES: tuple[str, ...] = (
    "qty_z", "price_z", "qty_z_product", "price_z_product", "stats_level",
    "hour_sin", "hour_cos", "dow_sin", "dow_cos", "weekend", "night", "edge_hour_share", "edge_day_share",
    "type_hour_share",
    "src_manufacturer", "src_distributor", "src_wholesaler", "src_retail", "src_other",
    "dst_distributor", "dst_wholesaler", "dst_pharmacy", "dst_hospital", "dst_other",
    "rank_step", "type_pair_share",
    "edge_familiarity", "edge_age", "reverse_familiarity", "src_familiarity", "src_age",
    "dst_familiarity", "dst_age", "route_familiarity", "product_familiarity",
    "carrier_missing", "carrier_familiarity", "carrier_on_edge",
    "lot_known", "lot_unproven", "lot_two_places", "lot_dwell", "lot_movements",
    "controlled",
)
INDEX = {name: i for i, name in enumerate(FEATURES)}
# Features a price or quantity counterfactual resets (explanations).
AMOUNT_FEATURES = ("qty_z", "price_z", "qty_z_product", "price_z_product")

_Z_CLIP = 12.0
# Small quantities (the rest of a lot, a sample) say little beyond -4 sigma; large ones are what
# diversions look like, so they are kept up to the full clip.
_QTY_LOW_CLIP = -4.0
_TIMING_MIN = 5  # earlier shipments an edge needs before its own timing counts
_NEUTRAL_HOUR, _NEUTRAL_DAY = 0.3, 0.18  # typical shares for a new edge
_LOG_K = math.log1p(FIRST_K)
# Ages saturate at a month: a node or edge older than that is established, and an age feature that
# kept growing would leave the range training saw (a model trained on four months, served for a year).
AGE_CAP_H = 24 * 30.0
_LOG_AGE = math.log1p(AGE_CAP_H)
_LOG_DWELL_H = math.log1p(24 * 60.0)
_DAY = 86400.0
ROUTE_WINDOW = 12  # recent shipments per route kept for its robust statistics
ROUTE_MIN = 5  # earlier shipments a route (or edge) needs before its own statistics are used
EDGE_WINDOW = 24  # recent shipments per edge kept for its offsets against the product baselines
ROUTE_YOUNG = 2  # earlier shipments from which a young route's own median is the center
PRODUCT_WINDOW = 48  # live statistics of products training never saw


def familiarity(count: int) -> float:
    return math.log1p(min(count, FIRST_K)) / _LOG_K


def _age(hours: float) -> float:
    return math.log1p(min(hours, AGE_CAP_H)) / _LOG_AGE


# --- robust statistics ----------------------------------------------------------------------------
def _median_mad(values: Sequence[float]) -> tuple[float, float]:
    s = sorted(values)
    n = len(s)
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    dev = sorted(abs(v - med) for v in s)
    mad = dev[n // 2] if n % 2 else 0.5 * (dev[n // 2 - 1] + dev[n // 2])
    return med, mad


@dataclass
class RobustStats:
    """Median / MAD of log unit price and log quantity per product and flow (fitted on training
    transactions, fixed) and per route (recent shipments, live). Scales are floored: a route that
    always ships 10 units must not make 11 a ten-sigma event (quantity: at least 0.35 in log units,
    the ordinary spread of orders, and half the Poisson noise of small counts; price: 0.02)."""

    baseline: dict[tuple[str, str, str], tuple[float, float, float, float]] = field(default_factory=dict)
    price_floor: float = 0.02
    qty_floor: float = 0.35
    routes: dict[tuple[str, str, str], list[tuple[float, float, float]]] = field(default_factory=dict)
    products: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    # (source, target) -> recent (t, log price - product median, log quantity - product median)
    edges: dict[tuple[str, str], list[tuple[float, float, float]]] = field(default_factory=dict)
    _known: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._known = frozenset(k[0] for k in self.baseline)

    @classmethod
    def fit(cls, transactions: Iterable[SupplyChainTransaction], min_count: int = 5) -> "RobustStats":
        groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        for tx in transactions:
            key = (tx.product_id, tx.source_type, tx.target_type)
            groups.setdefault(key, []).append((math.log(max(tx.unit_price, 1e-6)), math.log(tx.quantity)))
        baseline = {}
        for key, rows in groups.items():
            if len(rows) >= min_count:
                mp, sp = _median_mad([r[0] for r in rows])
                mq, sq = _median_mad([r[1] for r in rows])
                baseline[key] = (mp, 1.4826 * sp, mq, 1.4826 * sq)
        return cls(baseline=baseline)

    def update(self, tx: SupplyChainTransaction) -> None:
        row = (tx.ts.timestamp(), math.log(max(tx.unit_price, 1e-6)), math.log(tx.quantity))
        buf = self.routes.setdefault((tx.source_id, tx.target_id, tx.product_id), [])
        _keep_latest(buf, row, ROUTE_WINDOW)
        if not self._has_baseline(tx.product_id):
            _keep_latest(self.products.setdefault(tx.product_id, []), row, PRODUCT_WINDOW)
        base = self.baseline.get((tx.product_id, tx.source_type, tx.target_type))
        if base is not None:
            residual = (row[0], row[1] - base[0], row[2] - base[2])
            _keep_latest(self.edges.setdefault((tx.source_id, tx.target_id), []), residual, EDGE_WINDOW)

    def _has_baseline(self, product: str) -> bool:
        return product in self._known

    def z(self, tx: SupplyChainTransaction, t: float) -> tuple[float, float, float, float, float]:
        """(qty_z, price_z, qty_z_product, price_z_product, stats_level) as of time t."""
        lp, lq = math.log(max(tx.unit_price, 1e-6)), math.log(tx.quantity)
        zp_prod = zq_prod = 0.0
        level = 0.0
        base = self.baseline.get((tx.product_id, tx.source_type, tx.target_type))
        if base is None and not self._has_baseline(tx.product_id):
            rows = [r for r in self.products.get(tx.product_id, ()) if r[0] < t]
            if len(rows) >= ROUTE_MIN:
                mp, sp = _median_mad([r[1] for r in rows])
                mq, sq = _median_mad([r[2] for r in rows])
                base = (mp, 1.4826 * sp, mq, 1.4826 * sq)
        if base is not None:
            zp_prod = _clip((lp - base[0]) / max(base[1], self.price_floor))
            zq_prod = max(_clip((lq - base[2]) / self._qty_scale(base[3], base[2])), _QTY_LOW_CLIP)
            level = 0.5
        zp, zq = zp_prod, zq_prod
        rows = [r for r in self.routes.get((tx.source_id, tx.target_id, tx.product_id), ()) if r[0] < t]
        edge = self._edge_offsets(tx, t) if len(rows) < ROUTE_MIN and base is not None else None
        if edge is not None and base is not None:
            (op, sp), (oq, sq) = edge
            center_p, center_q, inflate = base[0] + op, base[2] + oq, 1.0
            if len(rows) >= ROUTE_YOUNG:
                # a young route's own median, its spread that of the edge's orders, widened for
                # the few shipments it rests on (predictive scale of a median of n)
                center_p, center_q = _median_mad([r[1] for r in rows])[0], _median_mad([r[2] for r in rows])[0]
                inflate = math.sqrt(1.0 + 1.57 / len(rows))
            zp = _clip((lp - center_p) / (max(1.4826 * sp, self.price_floor) * inflate))
            zq = max(_clip((lq - center_q) / (self._qty_scale(1.4826 * sq, center_q) * inflate)), _QTY_LOW_CLIP)
            level = 0.75
        if len(rows) >= ROUTE_MIN:
            mp, sp = _median_mad([r[1] for r in rows])
            mq, sq = _median_mad([r[2] for r in rows])
            zp = _clip((lp - mp) / max(1.4826 * sp, self.price_floor))
            zq = max(_clip((lq - mq) / self._qty_scale(1.4826 * sq, mq)), _QTY_LOW_CLIP)
            level = 1.0
        return zq, zp, zq_prod, zp_prod, level

    def _edge_offsets(self, tx: SupplyChainTransaction, t: float) -> Optional[tuple[tuple[float, float], tuple[float, float]]]:
        """((price offset, MAD), (quantity offset, MAD)) of the edge against product medians."""
        rows = [r for r in self.edges.get((tx.source_id, tx.target_id), ()) if r[0] < t]
        if len(rows) < ROUTE_MIN:
            return None
        return _median_mad([r[1] for r in rows]), _median_mad([r[2] for r in rows])

    def _qty_scale(self, sigma: float, median_log_qty: float) -> float:
        """Quantities are counts: at least half Poisson noise (sd of log n ~ 1/sqrt(n)), so a route
        that ships 2 units is not surprised by 5."""
        return max(sigma, self.qty_floor, 0.5 / math.sqrt(max(math.exp(median_log_qty), 1.0)))

    def reference(self, tx: SupplyChainTransaction, t: float) -> tuple[Optional[float], Optional[float]]:
        """Typical (quantity, unit price) for this shipment: the route's medians, else the
        product's (explanations and counterfactuals)."""
        rows = [r for r in self.routes.get((tx.source_id, tx.target_id, tx.product_id), ()) if r[0] < t]
        if len(rows) >= ROUTE_MIN:
            return math.exp(_median_mad([r[2] for r in rows])[0]), math.exp(_median_mad([r[1] for r in rows])[0])
        base = self.baseline.get((tx.product_id, tx.source_type, tx.target_type))
        if base is not None:
            edge = self._edge_offsets(tx, t)
            (op, _), (oq, _) = edge if edge is not None else ((0.0, 0.0), (0.0, 0.0))
            return math.exp(base[2] + oq), math.exp(base[0] + op)
        return None, None

    def to_state(self) -> dict[str, Any]:
        return {
            "baseline": [[*k, *v] for k, v in self.baseline.items()],
            "price_floor": self.price_floor,
            "qty_floor": self.qty_floor,
            "routes": [[*k, [list(r) for r in rows]] for k, rows in self.routes.items()],
            "products": [[p, [list(r) for r in rows]] for p, rows in self.products.items()],
            "edges": [[s, d, [list(r) for r in rows]] for (s, d), rows in self.edges.items()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], time_shift: float = 0.0) -> "RobustStats":
        stats = cls(
            baseline={(p, s, d): (a, b, c, e) for p, s, d, a, b, c, e in state["baseline"]},
            price_floor=state["price_floor"],
            qty_floor=state["qty_floor"],
        )
        stats.routes = {(s, d, p): [tuple(r) for r in rows] for s, d, p, rows in state["routes"]}  # type: ignore[misc]
        stats.products = {p: [tuple(r) for r in rows] for p, rows in state["products"]}  # type: ignore[misc]
        stats.edges = {(s, d): [tuple(r) for r in rows] for s, d, rows in state.get("edges", [])}  # type: ignore[misc]
        if time_shift:
            stats.shift(time_shift)
        return stats

    def forget_nodes(self, nodes: "set[str]") -> None:
        """Drop the recent-value buffers of routes and edges touching these nodes."""
        self.routes = {k: rows for k, rows in self.routes.items() if k[0] not in nodes and k[1] not in nodes}
        self.edges = {k: rows for k, rows in self.edges.items() if k[0] not in nodes and k[1] not in nodes}

    def shift(self, delta: float) -> None:
        """Move the buffers' times (a snapshot re-anchored in time, see graph/state.py)."""
        for table in (self.routes, self.products, self.edges):
            for key, rows in table.items():
                table[key] = [(t + delta, a, b) for t, a, b in rows]  # type: ignore[index]


def _keep_latest(buf: list[tuple[float, float, float]], row: tuple[float, float, float], size: int) -> None:
    buf.append(row)
    if len(buf) > size:
        buf.remove(min(buf))


def _clip(z: float) -> float:
    return _Z_CLIP if z > _Z_CLIP else -_Z_CLIP if z < -_Z_CLIP else z


# --- the encoder ----------------------------------------------------------------------------------
@dataclass
class FeatureConfig:
    """What the encoder learned from training data (stored in the manifest)."""

    type_pairs: dict[str, float] = field(default_factory=dict)  # "src>dst" -> share of training shipments
    type_hours: dict[str, list[float]] = field(default_factory=dict)  # "src>dst" -> share per hour of day (UTC)
    controlled: frozenset[str] = frozenset()
    provenance_days: float = 21.0
    # lot_dwell and lot_movements while lot evidence is not trustworthy: typical values
    neutral_dwell: float = 0.75
    neutral_movements: float = 1.0
    # a node shipping a lot sooner than this after it was sent to it is too fast (graph/custody.py);
    # learned from the normal history's turnarounds at training, 0: never
    min_turnaround_h: float = 0.0

    @classmethod
    def fit(
        cls, transactions: Sequence[SupplyChainTransaction], provenance_days: float = 21.0, controlled: Iterable[str] = ()
    ) -> "FeatureConfig":
        counts: dict[str, int] = {}
        hours: dict[str, list[int]] = {}
        found = set(controlled)
        for tx in transactions:
            key = f"{tx.source_type}>{tx.target_type}"
            counts[key] = counts.get(key, 0) + 1
            hours.setdefault(key, [0] * 24)[tx.ts.hour] += 1
            if tx.features.get("controlled", 0.0) >= 1.0:
                found.add(tx.product_id)
        total = max(1, sum(counts.values()))
        return cls({k: v / total for k, v in counts.items()}, {k: [c / counts[k] for c in h] for k, h in hours.items()},
                   frozenset(found), provenance_days)

    def hour_share(self, pair: str, hour: int) -> float:
        """log10 share (+1e-4, /4: in [-1, 0]) of the pair's training shipments within an hour of
        `hour`; a type pair never seen in training counts as never at any hour."""
        shares = self.type_hours.get(pair)
        near = shares[(hour - 1) % 24] + shares[hour] + shares[(hour + 1) % 24] if shares else 0.0
        return math.log10(near + 1e-4) / 4.0

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "type_pairs": self.type_pairs, "type_hours": self.type_hours,
                "controlled": sorted(self.controlled),
                "provenance_days": self.provenance_days, "neutral_dwell": self.neutral_dwell,
                "neutral_movements": self.neutral_movements, "min_turnaround_h": self.min_turnaround_h}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        if list(d.get("features", [])) != list(FEATURES):
            raise ValueError("the model was trained on another feature list; retrain it")
        return cls(dict(d["type_pairs"]), {k: list(v) for k, v in d["type_hours"].items()}, frozenset(d["controlled"]),
                   float(d["provenance_days"]),
                   float(d["neutral_dwell"]), float(d["neutral_movements"]), float(d.get("min_turnaround_h", 0.0)))

    def is_controlled(self, tx: SupplyChainTransaction) -> bool:
        return tx.product_id in self.controlled or tx.features.get("controlled", 0.0) >= 1.0


# Positions of the one-hot groups and of every feature, resolved once.
_I = INDEX
_SRC0, _DST0 = INDEX["src_manufacturer"], INDEX["dst_distributor"]


def encode(
    tx: SupplyChainTransaction, graph: TransactionGraph, stats: RobustStats, config: FeatureConfig, out: np.ndarray
) -> None:
    """Fill `out` (len(FEATURES),) with tx's features as of its event time. tx must have been
    applied to `graph` and `stats` (later transactions may have been too): only strictly
    earlier ones count."""
    I = _I
    t = tx.ts.timestamp()
    out[0:5] = stats.z(tx, t)  # qty_z, price_z, qty_z_product, price_z_product, stats_level
    ts = tx.ts.astimezone(timezone.utc)
    hour = ts.hour + ts.minute / 60.0
    dow = ts.weekday()
    a, b = 2 * math.pi * hour / 24.0, 2 * math.pi * dow / 7.0
    out[I["hour_sin"]], out[I["hour_cos"]], out[I["dow_sin"]], out[I["dow_cos"]] = math.sin(a), math.cos(a), math.sin(b), math.cos(b)
    out[I["weekend"]] = 1.0 if dow >= 5 else 0.0
    out[I["night"]] = 1.0 if hour < 5.0 or hour >= 22.0 else 0.0
    src, dst = tx.source_id, tx.target_id
    pair = f"{tx.source_type}>{tx.target_type}"
    edge = graph.edge(src, dst)
    out[I["edge_hour_share"]], out[I["edge_day_share"]] = _timing_shares(edge, ts.hour, dow)
    out[I["type_hour_share"]] = config.hour_share(pair, ts.hour)
    out[_SRC0:_SRC0 + 5] = 0.0
    out[_DST0:_DST0 + 5] = 0.0
    out[_SRC0 + SOURCE_GROUPS[tx.source_type]] = 1.0
    out[_DST0 + TARGET_GROUPS[tx.target_type]] = 1.0
    out[I["rank_step"]] = (RANK[tx.target_type] - RANK[tx.source_type]) / 3.0
    out[I["type_pair_share"]] = (math.log10(max(config.type_pairs.get(pair, 0.0), 1e-6)) + 6.0) / 6.0

    ets = edge["ts"] if edge is not None else ()
    out[I["edge_familiarity"]] = familiarity(count_before(ets, t)) if edge is not None else 0.0
    out[I["edge_age"]] = _age(age_hours(ets, t)) if edge is not None else 0.0
    rev = graph.edge(dst, src)
    out[I["reverse_familiarity"]] = familiarity(count_before(rev["ts"], t)) if rev is not None else 0.0
    s, d = graph.node(src), graph.node(dst)
    out[I["src_familiarity"]] = familiarity(count_before(s["ts"], t)) if s is not None else 0.0
    out[I["src_age"]] = _age(age_hours(s["ts"], t)) if s is not None else 0.0
    out[I["dst_familiarity"]] = familiarity(count_before(d["ts"], t)) if d is not None else 0.0
    out[I["dst_age"]] = _age(age_hours(d["ts"], t)) if d is not None else 0.0
    route = graph.routes.get((src, dst, tx.product_id))
    out[I["route_familiarity"]] = familiarity(count_before(route, t)) if route is not None else 0.0
    product = graph.products.get(tx.product_id)
    out[I["product_familiarity"]] = familiarity(count_before(product, t)) if product is not None else 0.0
    carrier = tx.carrier_id
    if carrier is None:
        out[I["carrier_missing"]], out[I["carrier_familiarity"]], out[I["carrier_on_edge"]] = 1.0, 0.0, 0.0
    else:
        cts = graph.carriers.get(carrier)
        first = edge["carriers"].get(carrier) if edge is not None else None
        out[I["carrier_missing"]] = 0.0
        out[I["carrier_familiarity"]] = familiarity(count_before(cts, t)) if cts is not None else 0.0
        out[I["carrier_on_edge"]] = 1.0 if first is not None and first < t else 0.0

    lot = graph.lot_view(tx, t)
    # Lot evidence is only trustworthy when the lot's first shipment was seen, or lots have been
    # watched long enough that a lot never seen has no provenance; otherwise neutral values.
    if graph.lot_watched(lot, t, config.provenance_days * _DAY):
        received = lot.source_received
        out[I["lot_known"]] = 1.0 if lot.known else 0.0
        out[I["lot_unproven"]] = 1.0 if not lot.provenance and received is None else 0.0
        out[I["lot_two_places"]] = 1.0 if lot.provenance and not lot.source_is_origin and received is None else 0.0
        out[I["lot_dwell"]] = math.log1p((t - received) / 3600.0) / _LOG_DWELL_H if received is not None else 0.0
        out[I["lot_movements"]] = min(lot.movements, FIRST_K) / FIRST_K
    else:
        out[I["lot_known"]], out[I["lot_unproven"]], out[I["lot_two_places"]] = 1.0, 0.0, 0.0
        out[I["lot_dwell"]], out[I["lot_movements"]] = config.neutral_dwell, config.neutral_movements
    out[I["controlled"]] = 1.0 if config.is_controlled(tx) else 0.0


def _timing_shares(edge: Optional[dict[str, Any]], hour: int, dow: int) -> tuple[float, float]:
    """log10 shares (+0.001, /3: in [-1, 0]) of the edge's other shipments within an hour of this
    hour of day, and on this weekday."""
    if edge is None:
        return _log_share(_NEUTRAL_HOUR), _log_share(_NEUTRAL_DAY)
    hours, days = edge["hours"], edge["days"]
    n = edge["n"] - 1  # the histograms hold this transaction itself (applied before encoding)
    if n < _TIMING_MIN:
        return _log_share(_NEUTRAL_HOUR), _log_share(_NEUTRAL_DAY)
    near = hours[(hour - 1) % 24] + hours[hour] + hours[(hour + 1) % 24] - 1
    return _log_share(max(near, 0) / n), _log_share(max(days[dow] - 1, 0) / n)


def _log_share(share: float) -> float:
    return math.log10(share + 0.001) / 3.0


def encode_batch(
    transactions: Sequence[SupplyChainTransaction], graph: TransactionGraph, stats: RobustStats, config: FeatureConfig
) -> np.ndarray:
    x = np.zeros((len(transactions), len(FEATURES)), dtype=np.float32)
    row = np.zeros(len(FEATURES), dtype=np.float64)
    for i, tx in enumerate(transactions):
        encode(tx, graph, stats, config, row)
        x[i] = row
    return x
