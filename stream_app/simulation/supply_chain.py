"""Pharmaceutical supply-chain simulator: a network with seasonal, demand-driven normal flows,
labelled attacks, and ground-truth verdicts.

Network (from `network_seed`, so a live stream and a training history share it): manufacturers
(national) -> distributors (two per region) -> wholesalers -> pharmacies and hospitals (hospitals
also buy straight from distributors), and carriers. Regions are hidden: they shape who trades
with whom, which is what the GNN has to learn from the graph alone.

Normal flows (from `seed`): pharmacies and hospitals order every day (weekly cycle, flu season
for some products, business hours; hospitals also at night, rarely). Orders are filled from the
supplier's stock first-in first-out, one transaction per lot touched, so a lot (a production
batch, `lot_id`) splits down the chain and is held by several nodes at once, each of which
received it. Stock below a reorder point triggers a replenishment from upstream a business day
later; manufacturers produce new lots on demand. Nuisances that look odd but are legitimate:
returns (pharmacy -> wholesaler), transfers between pharmacies, pharmacies switching to another
regional wholesaler, new pharmacies opening, big stocking orders, missing carriers, price drift
and noise. Stock that exists at the start has no visible provenance (it was delivered before
the data begins); it is about the reorder point, so it is sold through within days (a pharmacy
may still return or pass on such a lot weeks later).

Attacks (ATTACK_KINDS), each instance one or more shipments, all labelled by a `confirmed`
verdict with its kind:
  counterfeit_entry  a brand-new node (70 %) or a rarely used one ships lots that were never
                     produced (fake lot numbers) of a controlled or expensive product, cheap, to
                     pharmacies of one region over a few days
  route_diversion    a genuine holder ships a genuine lot along an edge never seen: to a
                     pharmacy or hospital of another region, distributor straight to a pharmacy,
                     or a pharmacy exporting to another region's wholesaler
  lot_clone          a genuine wholesaler ships, on its usual edge, a lot number it never
                     received while the real lot is held elsewhere (the lot is at two places)
  quantity_price     a usual shipment with 20-60x the quantity and/or a price far off
  off_hours          a usual wholesaler -> pharmacy shipment at night (22:00-04:30), often big
  collusive_ring     3-4 established pharmacies/wholesalers of different regions pass one lot
                     around within hours, marking the price up at every hop
`cleared` verdicts come for a share of normal shipments (random audits). Verdicts arrive hours
to days after the shipment, as investigations do.

`history(days)` returns the events of a period; `live(start)` is an endless time-ordered stream
of transactions and verdicts. Ids carry a run tag (seed and start), so two runs never share
event or shipment ids; new nodes get fresh random ids.
"""

from __future__ import annotations

import heapq
import json
import math
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from stream_app.simulation.maintenance import SimEvent

ATTACK_KINDS = (
    "counterfeit_entry",
    "route_diversion",
    "lot_clone",
    "quantity_price",
    "off_hours",
    "collusive_ring",
)
RETAIL = ("pharmacy", "hospital")
_MARKUP = {"manufacturer": 1.0, "distributor": 1.05, "wholesaler": 1.12, "pharmacy": 1.12, "hospital": 1.12, "other": 1.1}
_DAY = 86400.0
_HOUR = 3600.0


@dataclass(frozen=True)
class NetworkConfig:
    regions: int = 6
    manufacturers: int = 10
    distributors_per_region: int = 2
    wholesalers_per_region: int = 5
    pharmacies_per_region: int = 30
    hospitals_per_region: int = 6
    carriers: int = 8
    products: int = 40
    controlled_share: float = 0.15


@dataclass(frozen=True)
class SupplyChainConfig:
    network: NetworkConfig = NetworkConfig()
    network_seed: int = 0
    seed: int = 0
    start: datetime = datetime(2024, 1, 1, tzinfo=timezone.utc)
    pharmacy_orders_per_day: float = 4.0  # Monday-Friday; Saturday half, Sunday almost none
    hospital_orders_per_day: float = 7.0
    attacks_per_day: float = 12.0  # attack instances per day, kinds drawn uniformly
    attack_kinds: tuple[str, ...] = ATTACK_KINDS
    attack_start_day: float = 0.0  # no attack before this day of the run
    cleared_share: float = 0.02  # normal shipments audited and cleared
    verdict_delay_hours: tuple[float, float] = (6.0, 72.0)
    # legitimate oddities
    new_pharmacies_per_day: float = 0.07
    supplier_switches_per_day: float = 0.4
    return_share: float = 0.004  # of retail orders, returned later
    transfer_share: float = 0.002  # of retail orders, followed by a transfer to another pharmacy
    big_order_share: float = 0.02
    night_hospital_share: float = 0.02
    missing_carrier_share: float = 0.03

    def __post_init__(self) -> None:
        unknown = set(self.attack_kinds) - set(ATTACK_KINDS)
        if unknown:
            raise ValueError(f"unknown attack kinds {sorted(unknown)}; known: {ATTACK_KINDS}")


@dataclass
class SupplyChainHistory:
    transactions: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]

    def write(self, transactions_path: Path, verdicts_path: Path) -> None:
        """JSON Lines, one message per line (the layout `train supply-chain --data` reads)."""
        for path, rows in ((transactions_path, self.transactions), (verdicts_path, self.verdicts)):
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)

    def attack_shipments(self) -> dict[str, str]:
        """shipment_id -> attack kind, from the confirmed verdicts."""
        return {v["shipment_id"]: v["attack_kind"] for v in self.verdicts if v["verdict"] == "confirmed"}


# --- the network ----------------------------------------------------------------------------------
@dataclass
class _Node:
    id: str
    type: str
    region: int
    size: float = 1.0
    suppliers: list[str] = field(default_factory=list)
    supplier_weights: list[float] = field(default_factory=list)
    carriers: list[str] = field(default_factory=list)
    products: Optional[np.ndarray] = None  # retail: product probabilities


@dataclass(frozen=True)
class _Product:
    id: str
    index: int
    manufacturer: str
    price: float
    order_qty: float  # typical retail order, units
    controlled: bool
    season_amp: float
    season_phase: float  # day of year of the peak
    popularity: float


def _node_id(rng: np.random.Generator, prefix: str, used: set[str]) -> str:
    while True:
        candidate = f"{prefix}-{int(rng.integers(1_000_000, 10_000_000))}"
        if candidate not in used:
            used.add(candidate)
            return candidate


class Network:
    """Nodes, products and who buys from whom; identical for equal NetworkConfig and seed."""

    def __init__(self, config: NetworkConfig, seed: int) -> None:
        rng = np.random.default_rng([seed, 7001])
        self.config = config
        self.used_ids: set[str] = set()
        self.nodes: dict[str, _Node] = {}
        c = config
        self.carriers = [_node_id(rng, "car", self.used_ids) for _ in range(c.carriers)]
        manufacturers = [self._add(rng, "mfr", "manufacturer", -1) for _ in range(c.manufacturers)]
        self.products: list[_Product] = []
        for i in range(c.products):
            price = float(np.exp(rng.uniform(np.log(2.0), np.log(400.0))))
            flu = rng.random() < 0.25
            self.products.append(_Product(
                id=f"ndc-{int(rng.integers(10_000, 99_999))}-{i:02d}",
                index=i,
                manufacturer=manufacturers[i % len(manufacturers)].id,
                price=round(price, 2),
                order_qty=float(np.clip(600.0 / price, 2.0, 80.0) * rng.uniform(0.6, 1.4)),
                controlled=bool(rng.random() < c.controlled_share),
                season_amp=0.5 if flu else 0.1,
                season_phase=float(rng.uniform(0, 365)) if not flu else 15.0,
                popularity=float(rng.pareto(1.5) + 0.2),
            ))
        self.product_by_id = {p.id: p for p in self.products}
        self.distributors: dict[int, list[_Node]] = {}
        self.wholesalers: dict[int, list[_Node]] = {}
        self.retail: dict[int, list[_Node]] = {}
        for r in range(c.regions):
            self.distributors[r] = [self._add(rng, "dst", "distributor", r) for _ in range(c.distributors_per_region)]
            for d in self.distributors[r]:
                d.suppliers = [m.id for m in manufacturers]
                d.supplier_weights = [1.0] * len(manufacturers)
            self.wholesalers[r] = []
            for _ in range(c.wholesalers_per_region):
                w = self._add(rng, "whl", "wholesaler", r, size=float(rng.uniform(0.3, 1.7)))
                ds = self.distributors[r]
                primary = int(rng.integers(len(ds)))
                w.suppliers = [ds[primary].id, ds[1 - primary].id] if len(ds) > 1 else [ds[0].id]
                w.supplier_weights = [0.75, 0.25][: len(w.suppliers)]
                self.wholesalers[r].append(w)
            self.retail[r] = []
            for _ in range(c.pharmacies_per_region):
                self.retail[r].append(self._new_retail(rng, "pharmacy", r))
            for _ in range(c.hospitals_per_region):
                self.retail[r].append(self._new_retail(rng, "hospital", r))
        for node in self.nodes.values():
            if node.type != "pharmacy" or rng.random() < 0.1:
                k = 1 + int(rng.random() < 0.5)
                node.carriers = [str(c) for c in rng.choice(self.carriers, size=k, replace=False)]

    def _add(self, rng: np.random.Generator, prefix: str, type_: str, region: int, size: float = 1.0) -> _Node:
        node = _Node(_node_id(rng, prefix, self.used_ids), type_, region, size)
        self.nodes[node.id] = node
        return node

    def _new_retail(self, rng: np.random.Generator, type_: str, region: int) -> _Node:
        node = self._add(rng, "phm" if type_ == "pharmacy" else "hsp", type_, region, size=float(rng.lognormal(0, 0.35)))
        ws = self.wholesalers[region]
        weights = np.array([w.size for w in ws])
        first = int(rng.choice(len(ws), p=weights / weights.sum()))
        if type_ == "hospital":
            ds = self.distributors[region]
            node.suppliers = [ds[int(rng.integers(len(ds)))].id, ws[first].id]
            node.supplier_weights = [0.7, 0.3]
        elif rng.random() < 0.4:
            second = int(rng.choice([i for i in range(len(ws)) if i != first]))
            node.suppliers = [ws[first].id, ws[second].id]
            node.supplier_weights = [0.8, 0.2]
        else:
            node.suppliers, node.supplier_weights = [ws[first].id], [1.0]
        n = len(self.products)
        mix = np.array([p.popularity for p in self.products]) * rng.lognormal(0, 0.5, n)
        mix[rng.random(n) < 0.35] = 0.0  # each retailer stocks about two thirds of the range
        node.products = mix / mix.sum()
        return node

    def add_retail(self, rng: np.random.Generator, region: int) -> _Node:
        """A new pharmacy opening (ids from `rng`, the run's own)."""
        return self._new_retail(rng, "pharmacy", region)


# --- stock ------------------------------------------------------------------------------------------
@dataclass
class _Lot:
    lot_id: str
    qty: float
    received: float


class _Stock:
    """FIFO lots per (node, product)."""

    def __init__(self) -> None:
        self.lots: dict[tuple[str, int], deque[_Lot]] = {}

    def of(self, node: str, product: int) -> deque[_Lot]:
        key = (node, product)
        lots = self.lots.get(key)
        if lots is None:
            lots = self.lots[key] = deque()
        return lots

    def total(self, node: str, product: int) -> float:
        return sum(l.qty for l in self.lots.get((node, product), ()))


# --- the simulation -----------------------------------------------------------------------------------
def _iso(epoch: float) -> str:
    ts = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class _Run:
    """One run of flows and attacks over the network, stepped one day at a time."""

    def __init__(self, config: SupplyChainConfig, network: Network, start: datetime) -> None:
        self.c = config
        self.net = network
        self.t0 = start.timestamp()
        self.rng = np.random.default_rng([config.seed, int(self.t0) // 60, 7002])
        self.tag = f"{config.seed}{start.strftime('%y%m%d%H%M')}"
        self.stock = _Stock()
        self.received: dict[tuple[str, int], deque[_Lot]] = {}  # retail nodes: recent lots, for returns
        self.pending: set[tuple[str, int]] = set()
        self.heap: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.tx_count = 0
        self.lot_count: dict[tuple[str, str], int] = {}
        self.lot_holders: dict[str, set[str]] = {}  # lot -> nodes that received it
        self.transactions: list[dict[str, Any]] = []
        self.verdicts: list[tuple[float, int, dict[str, Any]]] = []  # heap by ts
        self.day = 0
        self.initial_lots: set[str] = set()
        self.dormant = [w for ws in network.wholesalers.values() for w in ws if w.size < 0.6]
        self._demand = self._expected_demand()
        self._initial_stock()

    # --- set-up ---------------------------------------------------------------------------------
    def _expected_demand(self) -> dict[tuple[str, int], float]:
        """Units per day each supplier ships of each product, on average."""
        c, demand = self.c, {}
        week = {"pharmacy": (5 + 0.5 + 0.03) / 7 * c.pharmacy_orders_per_day, "hospital": 0.9 * c.hospital_orders_per_day}
        qty = np.array([p.order_qty for p in self.net.products])
        for region in self.net.retail.values():
            for r in region:
                units = week[r.type] * r.size * r.products * qty
                for s, w in zip(r.suppliers, r.supplier_weights):
                    for i in np.flatnonzero(units):
                        demand[(s, int(i))] = demand.get((s, int(i)), 0.0) + w * units[i]
        for region in self.net.wholesalers.values():
            for wh in region:
                for s, w in zip(wh.suppliers, wh.supplier_weights):
                    for p in range(len(self.net.products)):
                        demand[(s, p)] = demand.get((s, p), 0.0) + w * demand.get((wh.id, p), 0.0)
        for region in self.net.distributors.values():
            for d in region:
                for p in self.net.products:
                    key = (p.manufacturer, p.index)
                    demand[key] = demand.get(key, 0.0) + demand.get((d.id, p.index), 0.0)
        return demand

    def _days_of_stock(self, node: _Node) -> tuple[float, float]:
        """(reorder point, order size) in days of demand."""
        return {"manufacturer": (10.0, 30.0), "distributor": (4.0, 9.0)}.get(node.type, (2.5, 5.0))

    def _initial_stock(self) -> None:
        """Stock delivered before the data begins: no provenance in the events."""
        for (node_id, p), daily in self._demand.items():
            node = self.net.nodes[node_id]
            point, size = self._days_of_stock(node)
            lot = self._new_lot_id(self.net.products[p], self.t0 - self.rng.uniform(5, 20) * _DAY)
            self.initial_lots.add(lot)
            # about the reorder point: replenishments with visible provenance start at once
            self.stock.of(node_id, p).append(_Lot(lot, daily * point * self.rng.uniform(0.5, 1.0), self.t0 - _DAY))

    def _new_lot_id(self, product: _Product, when: float) -> str:
        mfr_num = product.manufacturer.split("-")[1][-3:]
        day = datetime.fromtimestamp(when, tz=timezone.utc).strftime("%y%m%d")
        key = (product.manufacturer, day)
        k = self.lot_count.get(key, 0) + 1
        self.lot_count[key] = k
        return f"L{mfr_num}{day}{k:03d}"

    # --- time -----------------------------------------------------------------------------------
    def _hour(self, kind: str) -> float:
        """Hour of day (float) of a delivery to/for `kind`."""
        rng = self.rng
        if kind == "hospital":
            if rng.random() < self.c.night_hospital_share:
                return float(rng.uniform(0, 24))
            return float(np.clip(rng.normal(12, 4), 5, 22))
        if kind == "upstream":
            return float(np.clip(rng.normal(10, 3), 4, 19))
        return float(np.clip(rng.normal(11, 2.5), 6.5, 19.5))

    def _business_after(self, t: float, min_hours: float, max_hours: float) -> float:
        """A weekday business-hours time at least min_hours after t (upstream deliveries)."""
        target = t + self.rng.uniform(min_hours, max_hours) * _HOUR
        for _ in range(10):
            day0 = math.floor(target / _DAY) * _DAY
            dow = datetime.fromtimestamp(day0, tz=timezone.utc).weekday()
            candidate = day0 + self._hour("upstream") * _HOUR
            if dow < 5 and candidate >= target - 4 * _HOUR:
                return max(candidate, t + min_hours * _HOUR)
            target = day0 + _DAY
        return target

    def _push(self, t: float, kind: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, payload))

    # --- a day ------------------------------------------------------------------------------------
    def step_day(self) -> list[dict[str, Any]]:
        """Schedule and run one day; returns its transactions (time order)."""
        day_start = self.t0 + self.day * _DAY
        day_end = day_start + _DAY
        dt = datetime.fromtimestamp(day_start, tz=timezone.utc)
        dow, doy = dt.weekday(), dt.timetuple().tm_yday
        rng, c = self.rng, self.c
        self._schedule_orders(day_start, dow, doy)
        if rng.random() < c.new_pharmacies_per_day:
            region = int(rng.integers(c.network.regions))
            self.net.retail[region].append(self.net.add_retail(rng, region))
        for _ in range(rng.poisson(c.supplier_switches_per_day)):
            self._switch_supplier()
        if self.day >= c.attack_start_day and c.attack_kinds:
            for _ in range(rng.poisson(c.attacks_per_day)):
                kind = c.attack_kinds[int(rng.integers(len(c.attack_kinds)))]
                if kind == "off_hours":  # at night, when pharmacies are closed
                    when = day_start + (rng.uniform(0.0, 4.5) if rng.random() < 0.7 else rng.uniform(22.0, 24.0)) * _HOUR
                else:  # attackers keep business hours to blend in
                    when = self._business_time(day_start + rng.uniform(0, _DAY))
                self._push(when, "attack", (kind, 0, {}))
        self.transactions = []
        while self.heap and self.heap[0][0] < day_end:
            t, _, kind, payload = heapq.heappop(self.heap)
            getattr(self, f"_on_{kind}")(t, payload)
        self.day += 1
        return self.transactions

    def _schedule_orders(self, day_start: float, dow: int, doy: int) -> None:
        rng, c = self.rng, self.c
        season = np.array([1.0 + p.season_amp * math.cos(2 * math.pi * (doy - p.season_phase) / 365.0) for p in self.net.products])
        week_pharmacy = (1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.03)[dow]
        week_hospital = (1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.7)[dow]
        for region in self.net.retail.values():
            for node in region:
                hospital = node.type == "hospital"
                rate = (c.hospital_orders_per_day * week_hospital if hospital else c.pharmacy_orders_per_day * week_pharmacy)
                n = rng.poisson(rate * node.size)
                if not n:
                    continue
                mix = node.products * season
                mix = mix / mix.sum()
                products = rng.choice(len(mix), size=n, p=mix)
                for p in products:
                    t = day_start + self._hour(node.type) * _HOUR
                    supplier = node.suppliers[int(rng.choice(len(node.suppliers), p=node.supplier_weights))]
                    qty = self.net.products[p].order_qty * node.size * rng.lognormal(0, 0.45)
                    if rng.random() < c.big_order_share:
                        qty *= rng.uniform(2, 4)
                    self._push(t, "order", (supplier, node.id, int(p), max(1.0, round(qty))))

    # --- normal events ----------------------------------------------------------------------------
    def _on_order(self, t: float, payload: tuple[str, str, int, float]) -> None:
        supplier, customer, p, qty = payload
        shipped = self._fulfil(t, supplier, customer, p, qty)
        rng = self.rng
        if shipped and self.net.nodes[customer].type == "pharmacy":
            if rng.random() < self.c.return_share:
                self._push(self._business_time(t + rng.uniform(2, 20) * _DAY), "return", (customer, supplier, p))
            elif rng.random() < self.c.transfer_share:
                self._push(self._business_time(t + rng.uniform(1, 10) * _DAY), "transfer", (customer, p))

    def _fulfil(self, t: float, supplier: str, customer: str, p: int, qty: float) -> float:
        """Ship `qty` from the supplier's stock, one transaction per lot touched (FIFO)."""
        lots = self.stock.of(supplier, p)
        src = self.net.nodes[supplier]
        if src.type == "manufacturer" and self.stock.total(supplier, p) < qty:
            self._produce(t, p, qty)
        shipped = 0.0
        while qty > 0 and lots:
            lot = lots[0]
            q = min(qty, lot.qty)
            q = float(max(1.0, round(q)))
            self._transaction(t, src, self.net.nodes[customer], p, q, lot.lot_id)
            lot.qty -= q
            qty -= q
            shipped += q
            if lot.qty < 1:
                lots.popleft()
            t += 1.0  # a second shipment of the same order, one second later
        self._maybe_reorder(t, src, p)
        return shipped

    def _produce(self, t: float, p: int, need: float) -> None:
        product = self.net.products[p]
        size = max(need, self._demand.get((product.manufacturer, p), 1.0) * 30.0 * self.rng.uniform(0.7, 1.3))
        self.stock.of(product.manufacturer, p).append(_Lot(self._new_lot_id(product, t), size, t))

    def _maybe_reorder(self, t: float, node: _Node, p: int) -> None:
        key = (node.id, p)
        if node.type in RETAIL or not node.suppliers or key in self.pending:
            if node.type == "manufacturer":
                daily = self._demand.get(key, 1.0)
                if self.stock.total(node.id, p) < 10 * daily:
                    self._produce(t, p, 0.0)
            return
        daily = self._demand.get(key, 0.0)
        point, size = self._days_of_stock(node)
        if self.stock.total(node.id, p) >= point * daily:
            return
        if node.type == "distributor":
            supplier = self.net.products[p].manufacturer
        else:
            supplier = node.suppliers[int(self.rng.choice(len(node.suppliers), p=node.supplier_weights))]
        qty = max(1.0, round(size * daily * self.rng.lognormal(0, 0.2)))
        lead = (20.0, 60.0) if node.type == "distributor" else (6.0, 30.0)
        self.pending.add(key)
        self._push(self._business_after(t, *lead), "replenish", (supplier, node.id, p, qty))

    def _on_replenish(self, t: float, payload: tuple[str, str, int, float]) -> None:
        supplier, customer, p, qty = payload
        self.pending.discard((customer, p))
        self._fulfil(t, supplier, customer, p, qty)

    def _on_return(self, t: float, payload: tuple[str, str, int]) -> None:
        pharmacy, wholesaler, p = payload
        lots = self.received.get((pharmacy, p))
        if not lots:
            return
        lot = lots[-1]
        q = float(max(1.0, round(lot.qty * self.rng.uniform(0.1, 0.5))))
        self._transaction(t, self.net.nodes[pharmacy], self.net.nodes[wholesaler], p, q, lot.lot_id, price_of=wholesaler)

    def _on_transfer(self, t: float, payload: tuple[str, int]) -> None:
        pharmacy, p = payload
        lots = self.received.get((pharmacy, p))
        src = self.net.nodes[pharmacy]
        peers = [n for n in self.net.retail[src.region] if n.type == "pharmacy" and n.id != pharmacy and set(n.suppliers) & set(src.suppliers)]
        if not lots or not peers:
            return
        peer = peers[int(self.rng.integers(len(peers)))]
        lot = lots[-1]
        q = float(max(1.0, round(lot.qty * self.rng.uniform(0.2, 0.6))))
        self._transaction(t, src, peer, p, q, lot.lot_id, price_of=src.suppliers[0])

    def _switch_supplier(self) -> None:
        """A pharmacy moves its main business to another wholesaler of its region."""
        rng = self.rng
        region = int(rng.integers(self.c.network.regions))
        pharmacies = [n for n in self.net.retail[region] if n.type == "pharmacy"]
        ws = self.net.wholesalers[region]
        if not pharmacies:
            return
        node = pharmacies[int(rng.integers(len(pharmacies)))]
        others = [w.id for w in ws if w.id not in node.suppliers]
        if others:
            node.suppliers = [others[int(rng.integers(len(others)))], node.suppliers[0]]
            node.supplier_weights = [0.8, 0.2]

    # --- transactions and verdicts ------------------------------------------------------------------
    def _price(self, seller: str, p: int, t: float) -> float:
        product = self.net.products[p]
        seller_type = self.net.nodes[seller].type if seller in self.net.nodes else "wholesaler"
        years = (t - self.t0) / (365 * _DAY)
        return product.price * _MARKUP.get(seller_type, 1.1) * (1.0 + 0.03 * years)

    def _transaction(
        self,
        t: float,
        src: _Node,
        dst: _Node,
        p: int,
        qty: float,
        lot_id: str,
        *,
        price: Optional[float] = None,
        price_of: Optional[str] = None,
        attack: Optional[str] = None,
        carrier: Optional[str] = "auto",
    ) -> dict[str, Any]:
        rng, product = self.rng, self.net.products[p]
        if price is None:
            price = self._price(price_of or src.id, p, t) * rng.normal(1.0, 0.025)
        if carrier == "auto":
            carriers = src.carriers or dst.carriers or self.net.carriers
            carrier = None if rng.random() < self.c.missing_carrier_share else carriers[int(rng.integers(len(carriers)))]
        self.tx_count += 1
        shipment = f"shp-{self.tag}-{self.tx_count:07d}"
        tx: dict[str, Any] = {
            "event_id": f"sc-{self.tag}-{self.tx_count:07d}",
            "ts": _iso(t),
            "shipment_id": shipment,
            "product_id": product.id,
            "lot_id": lot_id,
            "source_id": src.id,
            "source_type": src.type,
            "target_id": dst.id,
            "target_type": dst.type,
            "quantity": float(qty),
            "unit_price": round(max(0.01, float(price)), 2),
            "carrier_id": carrier,
        }
        if product.controlled:
            tx["features"] = {"controlled": 1.0}
        self.transactions.append(tx)
        self.lot_holders.setdefault(lot_id, set()).add(dst.id)
        if dst.type in RETAIL:
            lots = self.received.setdefault((dst.id, p), deque(maxlen=4))
            lots.append(_Lot(lot_id, qty, t))
        elif attack is None or attack in ("collusive_ring", "route_diversion"):
            self.stock.of(dst.id, p).append(_Lot(lot_id, qty, t))
        delay = rng.uniform(*self.c.verdict_delay_hours) * _HOUR
        if attack is not None:
            self._verdict(t + delay, shipment, "confirmed", attack)
        elif rng.random() < self.c.cleared_share:
            self._verdict(t + delay, shipment, "cleared", None)
        return tx

    def _verdict(self, t: float, shipment: str, verdict: str, kind: Optional[str]) -> None:
        self.seq += 1
        value = {"event_id": f"vd-{self.tag}-{self.seq:08d}", "ts": _iso(t), "shipment_id": shipment,
                 "verdict": verdict, "attack_kind": kind}
        heapq.heappush(self.verdicts, (t, self.seq, value))

    def due_verdicts(self, until: Optional[float]) -> list[dict[str, Any]]:
        out = []
        while self.verdicts and (until is None or self.verdicts[0][0] < until):
            out.append(heapq.heappop(self.verdicts)[2])
        return out

    # --- attacks --------------------------------------------------------------------------------------
    def _on_attack(self, t: float, payload: tuple[str, int, dict[str, Any]]) -> None:
        kind, step, state = payload
        getattr(self, f"_attack_{kind}")(t, step, state)

    def _stocked(self, nodes: list[_Node]) -> Optional[tuple[_Node, int, _Lot]]:
        """A random (node, product, lot) with stock among `nodes`."""
        rng = self.rng
        for _ in range(20):
            node = nodes[int(rng.integers(len(nodes)))]
            p = int(rng.integers(len(self.net.products)))
            lots = self.stock.lots.get((node.id, p))
            if lots:
                return node, p, lots[int(rng.integers(len(lots)))]
        return None

    def _business_time(self, t: float) -> float:
        """A pharmacy business-hours moment (Monday to Saturday) at or after t."""
        day0 = math.floor(t / _DAY) * _DAY
        for k in range(8):
            day = day0 + k * _DAY
            if datetime.fromtimestamp(day, tz=timezone.utc).weekday() == 6:
                continue
            candidate = day + self._hour("pharmacy") * _HOUR
            if candidate >= t:
                return candidate
        return t

    def _attack_counterfeit_entry(self, t: float, step: int, state: dict[str, Any]) -> None:
        rng, net = self.rng, self.net
        if step == 0:
            region = int(rng.integers(self.c.network.regions))
            if rng.random() < 0.7 or not self.dormant:
                type_ = str(rng.choice(["wholesaler", "distributor", "other"], p=[0.6, 0.2, 0.2]))
                prefix = {"wholesaler": "whl", "distributor": "dst", "other": "trd"}[type_]
                node = _Node(_node_id(rng, prefix, net.used_ids), type_, region)
            else:
                node = self.dormant[int(rng.integers(len(self.dormant)))]
            controlled = [p.index for p in net.products if p.controlled]
            pricey = sorted(net.products, key=lambda p: -p.price)[: max(1, len(net.products) // 3)]
            p = int(rng.choice(controlled)) if controlled and rng.random() < 0.5 else pricey[int(rng.integers(len(pricey)))].index
            product = net.products[p]
            fake_day = t - rng.uniform(20, 200) * _DAY
            lot = f"L{product.manufacturer.split('-')[1][-3:]}{datetime.fromtimestamp(fake_day, tz=timezone.utc):%y%m%d}{int(rng.integers(500, 999)):03d}"
            carrier = net.carriers[int(rng.integers(len(net.carriers)))] if rng.random() < 0.5 else _node_id(rng, "car", net.used_ids)
            retail = [n for n in net.retail[node.region if node.region >= 0 else region]]
            state = {"node": node, "p": p, "lot": lot, "carrier": carrier, "left": int(rng.integers(2, 5)),
                     "targets": retail, "discount": float(rng.uniform(0.5, 0.85))}
        node, p = state["node"], state["p"]
        target = state["targets"][int(rng.integers(len(state["targets"])))]
        qty = float(max(1.0, round(net.products[p].order_qty * rng.lognormal(0, 0.45))))
        price = net.products[p].price * _MARKUP["wholesaler"] * state["discount"]
        self._transaction(t, node, target, p, qty, state["lot"], price=price, attack="counterfeit_entry",
                          carrier=state["carrier"])
        state["left"] -= 1
        if state["left"] > 0:
            self._push(self._business_time(t + rng.uniform(0.3, 2.0) * _DAY), "attack", ("counterfeit_entry", step + 1, state))

    def _attack_route_diversion(self, t: float, step: int, state: dict[str, Any]) -> None:
        rng, net = self.rng, self.net
        regions = self.c.network.regions
        roll = rng.random()
        if roll < 0.2:  # a pharmacy exports to another region's wholesaler
            pharmacies = [n for ns in net.retail.values() for n in ns if n.type == "pharmacy"]
            for _ in range(20):
                src = pharmacies[int(rng.integers(len(pharmacies)))]
                p = int(rng.choice(len(src.products), p=src.products))
                lots = self.received.get((src.id, p))
                if lots:
                    other = (src.region + 1 + int(rng.integers(regions - 1))) % regions
                    ws = net.wholesalers[other]
                    dst = ws[int(rng.integers(len(ws)))]
                    lot = lots[-1]
                    q = float(max(1.0, round(lot.qty * rng.uniform(0.5, 1.0))))
                    self._transaction(t, src, dst, p, q, lot.lot_id, price_of=src.suppliers[0], attack="route_diversion")
                    return
            return
        holders = [n for ns in (net.distributors if roll < 0.45 else net.wholesalers).values() for n in ns]
        found = self._stocked(holders)
        if found is None:
            return
        src, p, lot = found
        other = (src.region + 1 + int(rng.integers(regions - 1))) % regions
        region = src.region if src.type == "distributor" and rng.random() < 0.5 else other
        targets = [n for n in net.retail[region] if n.type == "pharmacy"]
        dst = targets[int(rng.integers(len(targets)))]
        q = float(max(1.0, round(min(lot.qty, net.products[p].order_qty * rng.uniform(1, 3)))))
        lot.qty = max(0.0, lot.qty - q)
        self._transaction(t, src, dst, p, q, lot.lot_id, attack="route_diversion")

    def _attack_lot_clone(self, t: float, step: int, state: dict[str, Any]) -> None:
        rng, net = self.rng, self.net
        # A lot with visible provenance (produced during the run), held by some wholesaler, and a
        # cloner that never received it: production batches are national, so look for one.
        for _ in range(30):
            found = self._stocked([w for ws in net.wholesalers.values() for w in ws])
            if found is None:
                return
            holder, p, lot = found
            if lot.lot_id in self.initial_lots:
                continue
            holders = self.lot_holders.get(lot.lot_id, set())
            cloners = [w for r, ws in net.wholesalers.items() if r != holder.region for w in ws if w.id not in holders]
            if cloners:
                break
        else:
            return
        src = cloners[int(rng.integers(len(cloners)))]
        other = src.region
        customers = [n for n in net.retail[other] if src.id in n.suppliers] or net.retail[other]
        dst = customers[int(rng.integers(len(customers)))]
        qty = float(max(1.0, round(net.products[p].order_qty * dst.size * rng.lognormal(0, 0.45))))
        price = self._price(src.id, p, t) * rng.uniform(0.85, 1.0)
        self._transaction(t, src, dst, p, qty, lot.lot_id, price=price, attack="lot_clone")

    def _usual_shipment(self) -> Optional[tuple[_Node, _Node, int, _Lot]]:
        """A pharmacy's main wholesaler and a lot it holds of a product the pharmacy buys."""
        rng, net = self.rng, self.net
        for _ in range(30):
            region = net.retail[int(rng.integers(self.c.network.regions))]
            dst = region[int(rng.integers(len(region)))]
            src = net.nodes[dst.suppliers[0]]
            p = int(rng.choice(len(dst.products), p=dst.products))
            lots = self.stock.lots.get((src.id, p))
            if lots:
                return src, dst, p, lots[0]
        return None

    def _attack_quantity_price(self, t: float, step: int, state: dict[str, Any]) -> None:
        rng = self.rng
        found = self._usual_shipment()
        if found is None:
            return
        src, dst, p, lot = found
        qty = self.net.products[p].order_qty * dst.size * rng.lognormal(0, 0.3)
        price = self._price(src.id, p, t) * rng.normal(1.0, 0.025)
        roll = rng.random()
        if roll < 0.65:
            qty *= rng.uniform(20, 60)
        if roll >= 0.5:
            price *= rng.uniform(0.3, 0.6) if rng.random() < 0.5 else rng.uniform(1.8, 3.0)
        qty = float(max(1.0, round(qty)))
        lot.qty = max(0.0, lot.qty - qty)
        self._transaction(t, src, dst, p, qty, lot.lot_id, price=price, attack="quantity_price")

    def _attack_off_hours(self, t: float, step: int, state: dict[str, Any]) -> None:
        rng = self.rng
        found = self._usual_shipment()
        if found is None:
            return
        src, dst, p, lot = found
        if dst.type != "pharmacy":
            return self._attack_off_hours(t, step, state) if rng.random() < 0.9 else None
        qty = self.net.products[p].order_qty * dst.size * rng.lognormal(0, 0.45)
        if rng.random() < 0.5:
            qty *= rng.uniform(2, 5)
        qty = float(max(1.0, round(qty)))
        lot.qty = max(0.0, lot.qty - qty)
        self._transaction(t, src, dst, p, qty, lot.lot_id, attack="off_hours")

    def _attack_collusive_ring(self, t: float, step: int, state: dict[str, Any]) -> None:
        rng, net = self.rng, self.net
        regions = self.c.network.regions
        if step == 0:
            k = int(rng.integers(3, 5))
            picks = rng.choice(regions, size=k, replace=k > regions)
            members = []
            for r in picks:
                pool = [n for n in net.retail[int(r)] if n.type == "pharmacy"] + net.wholesalers[int(r)]
                members.append(pool[int(rng.integers(len(pool)))])
            found = self._stocked([m for m in members if m.type == "wholesaler"] or net.wholesalers[int(picks[0])])
            if found is None:
                return
            first, p, lot = found
            members = [first] + [m for m in members if m.id != first.id]
            q = float(max(1.0, round(min(lot.qty, net.products[p].order_qty * rng.uniform(2, 6)))))
            lot.qty = max(0.0, lot.qty - q)
            state = {"members": members, "p": p, "lot": lot.lot_id, "qty": q, "price": self._price(first.id, p, t),
                     "hop": 0}
        members, hop = state["members"], state["hop"]
        src, dst = members[hop % len(members)], members[(hop + 1) % len(members)]
        state["price"] *= rng.uniform(1.2, 1.6)
        self._transaction(t, src, dst, state["p"], state["qty"], state["lot"], price=state["price"], attack="collusive_ring")
        state["hop"] += 1
        if state["hop"] < len(members):
            self._push(t + rng.uniform(1, 16) * _HOUR, "attack", ("collusive_ring", step + 1, state))


class SupplyChainSimulator:
    def __init__(self, config: SupplyChainConfig = SupplyChainConfig()) -> None:
        self.config = config
        self.network = Network(config.network, config.network_seed)

    def history(self, days: float) -> SupplyChainHistory:
        """`days` of transactions from config.start, and every verdict about them."""
        run = _Run(self.config, self.network, self.config.start)
        transactions: list[dict[str, Any]] = []
        for _ in range(int(math.ceil(days))):
            transactions.extend(run.step_day())
        start = self.config.start.timestamp()
        end = start + days * _DAY
        transactions = [tx for tx in transactions if start <= _epoch(tx["ts"]) < end]
        shipments = {tx["shipment_id"] for tx in transactions}
        verdicts = [v for v in run.due_verdicts(None) if v["shipment_id"] in shipments]
        return SupplyChainHistory(transactions, verdicts)

    def live(self, start: Optional[datetime] = None) -> Iterator[SimEvent]:
        """Endless and time-ordered: transactions and, as they come due, verdicts."""
        run = _Run(self.config, self.network, start or self.config.start)
        while True:
            day = run.step_day()
            for tx in day:
                t = _epoch(tx["ts"])
                for verdict in run.due_verdicts(t):
                    yield SimEvent("verdict", verdict["shipment_id"], verdict)  # type: ignore[arg-type]
                yield SimEvent("transaction", tx["shipment_id"], tx)  # type: ignore[arg-type]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def controlled_products(network: Network) -> list[str]:
    return sorted(p.id for p in network.products if p.controlled)


def supply_chain_events(
    settings: Any, seed: int = 0, start: Optional[datetime] = None, *, config: Optional[SupplyChainConfig] = None
) -> Iterator[tuple[str, SimEvent]]:
    """Live events for `produce` (stream_app.simulation.producer): (topic, event) pairs,
    transactions to the transactions topic and verdicts to the verdicts topic. The network is
    the default one (network_seed 0), the one `simulated_history()` trains on; `seed` draws the
    flows and attacks."""
    if start is None:
        from stream_app.simulation.streams import SUPPLY_CHAIN_LOOKBACK

        start = datetime.now(timezone.utc) - SUPPLY_CHAIN_LOOKBACK
    # The simulator's days run from midnight (orders, shifts and deliveries at their hours),
    # as in the history the models learn from; a start at 11:35 shifted every event by as much,
    # and the models rightly flagged 30-55 % of the live stream (deliveries at odd hours).
    start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    base = config or SupplyChainConfig()
    sim = SupplyChainSimulator(replace(base, seed=seed, start=start))
    topics = settings.topics
    for event in sim.live(start):
        topic = topics.supply_chain_transactions if event.kind == "transaction" else topics.supply_chain_verdicts
        yield topic, event
