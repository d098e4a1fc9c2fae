"""A supply network run from inventory policy: who holds which lot, when it moves, at what price.

Independent of the product's simulator: sites (factories, warehouses, shops) keep stock as lots,
review it on their own cadence and reorder from their suppliers when it falls below a reorder
point (an (s, S) policy in days of throughput); a supplier dispatches in its own working window,
first-in first-out from the lots it has on hand (one transaction per lot a shipment draws on,
sharing a shipment id); goods travel for a lane's transit time before they can be shipped on.
Producers make a lot (a production batch) when an order needs more than they hold; sites that
consume (shops, plants, a factory's raw materials) use stock daily. Stock on hand when the data
begins was delivered unseen: its lots have no visible production or receipt.

Legitimate oddities, as a real network has them: returns to the supplier, transfers between
neighbouring shops, a shop switching supplier, a new shop opening, stocking orders several times
the usual size, a carrier missing or replaced, list prices changing.

Attacks are not made here (benchmarks/supply_chain/attacks.py adds them, reading the ledger kept
here: who received what of each lot, and which lanes are in use). Everything is seeded.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import numpy as np

DAY, HOUR = 86400.0, 3600.0


@dataclass
class Site:
    id: str
    type: str  # the contract's node type
    tier: int  # 0 = top of the network (producers); larger = further downstream
    region: int
    hours: tuple[float, float]  # dispatch window, hours of the day (UTC)
    days: frozenset[int]  # weekdays it dispatches (0 = Monday)
    review_every_h: float  # how often it reviews its stock
    carriers: list[str]
    cover: tuple[float, float]  # reorder point and order-up-to level, in days of throughput
    sources: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # item -> [(supplier, weight)]
    use: dict[str, float] = field(default_factory=dict)  # item -> units consumed here per day
    makes: frozenset[str] = frozenset()
    opens_day: float = 0.0  # a shop opening during the data


@dataclass(frozen=True)
class Item:
    id: str
    maker: str
    price: float  # list price at the producer
    controlled: bool
    batch_days: float  # a production batch covers this many days of the maker's throughput
    lot_id: Callable[[np.random.Generator, float, int], str]  # (rng, made at, sequence) -> lot number


@dataclass
class Piece:
    """Part of a lot at one site."""

    lot: str
    qty: float
    available: float  # when it arrived (transit done)


@dataclass
class Network:
    name: str
    sites: dict[str, Site]
    items: dict[str, Item]
    carriers: list[str]
    markup: dict[str, float]  # node type -> price factor over the list price
    transit_h: Callable[[Site, Site, np.random.Generator], float]
    shipment_id: Callable[[int], str]
    event_id: Callable[[int], str]


@dataclass
class Lane:
    """A supplier -> customer edge as it has been used (the ledger attacks read)."""

    shipments: int = 0
    qty: dict[str, list[float]] = field(default_factory=dict)  # item -> quantities shipped
    carriers: dict[Optional[str], int] = field(default_factory=dict)
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    discount: float = 1.0


class World:
    """Runs a network day by day; `transactions` grows in time order per day (sorted at the end)."""

    def __init__(self, net: Network, start: datetime, seed: int) -> None:
        self.net, self.rng = net, np.random.default_rng(seed)
        self.t0 = start.timestamp()
        self.now = self.t0
        self.transactions: list[dict[str, Any]] = []
        self.labels: dict[str, tuple[str, str]] = {}  # event_id -> (kind, instance)
        self.stock: dict[tuple[str, str], deque[Piece]] = defaultdict(deque)
        self.on_order: dict[tuple[str, str], float] = defaultdict(float)
        self.received: dict[tuple[str, str], float] = defaultdict(float)  # (site, lot) -> units received
        self.shipped: dict[tuple[str, str], float] = defaultdict(float)  # (site, lot) -> units shipped
        self.first_receipt: dict[tuple[str, str], float] = {}
        self.holders: dict[str, set[str]] = defaultdict(set)  # lot -> sites that received it
        self.lot_item: dict[str, str] = {}
        self.lot_made: dict[str, float] = {}
        self.prehistory: set[str] = set()  # lots on hand when the data begins
        self.lanes: dict[tuple[str, str], Lane] = {}
        self.inbound: list[tuple[float, str, str, str, dict[str, Any]]] = []  # (t, site, lot, item, tx), recent last
        self._lot_seq: dict[str, int] = defaultdict(int)
        self._events: list[tuple[float, int, str, Any]] = []
        self._seq = self._tx = self._shipments = 0
        self.price_factor: dict[str, float] = {i: 1.0 for i in net.items}
        self.rate = self._throughput()
        self._stock_the_start()
        for site in net.sites.values():
            self._push(max(self.t0, self.t0 + site.opens_day * DAY) + self.rng.uniform(0, site.review_every_h) * HOUR,
                       "review", site.id)
        self._push(self.t0 + DAY, "consume", None)

    # --- setup ---------------------------------------------------------------------------------
    def _throughput(self) -> dict[tuple[str, str], float]:
        """Units per day through each site and item: its own use plus what its customers draw."""
        rate: dict[tuple[str, str], float] = defaultdict(float)
        for site in sorted(self.net.sites.values(), key=lambda s: -s.tier):
            for item, use in site.use.items():
                rate[site.id, item] += use
            for item, sources in site.sources.items():
                total = sum(w for _, w in sources)
                for supplier, w in sources:
                    rate[supplier, item] += rate[site.id, item] * w / total
        return rate

    def _stock_the_start(self) -> None:
        """Stock delivered before the data begins (no provenance in the data)."""
        for site in self.net.sites.values():
            if site.opens_day > 0:
                continue
            for item in site.sources:
                r = self.rate[site.id, item]
                if r <= 0:
                    continue
                low, high = site.cover
                qty = math.ceil(r * self.rng.uniform(low, high))
                made = self.t0 - self.rng.uniform(10, 60) * DAY
                lot = self._new_lot(item, made)
                self.prehistory.add(lot)
                self.stock[site.id, item].append(Piece(lot, float(qty), self.t0 - DAY))
                self.received[site.id, lot] += qty
                self.first_receipt[site.id, lot] = self.t0 - DAY
                self.holders[lot].add(site.id)

    def _new_lot(self, item: str, made: float) -> str:
        self._lot_seq[item] += 1
        lot = self.net.items[item].lot_id(self.rng, made, self._lot_seq[item])
        while lot in self.lot_item:  # formats with random parts may collide
            self._lot_seq[item] += 1
            lot = self.net.items[item].lot_id(self.rng, made, self._lot_seq[item])
        self.lot_item[lot], self.lot_made[lot] = item, made
        return lot

    # --- running -------------------------------------------------------------------------------
    def _push(self, t: float, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, kind, payload))

    def run_until(self, t_end: float, hook: Optional[Callable[["World", float], None]] = None) -> None:
        """Process every event before t_end; `hook(world, t)` runs once per simulated hour (attacks)."""
        next_hook = self.now
        while self._events and self._events[0][0] < t_end:
            t, _, kind, payload = heapq.heappop(self._events)
            while hook is not None and next_hook <= t:
                self.now = next_hook
                hook(self, next_hook)
                next_hook += HOUR
            self.now = t
            getattr(self, f"_on_{kind}")(t, payload)
        self.now = t_end

    def next_slot(self, site: Site, after: float, spread_h: float = 2.5) -> float:
        """A dispatch time in the site's window, at or after `after`."""
        day0 = math.floor(after / DAY) * DAY
        for d in range(14):
            start = day0 + d * DAY
            if datetime.fromtimestamp(start, tz=timezone.utc).weekday() not in site.days:
                continue
            lo, hi = start + site.hours[0] * HOUR, start + site.hours[1] * HOUR
            if after >= hi:
                continue
            lo = max(lo, after)
            return float(self.rng.uniform(lo, min(hi, lo + spread_h * HOUR)))
        return after + DAY

    def _on_review(self, t: float, site_id: str) -> None:
        site = self.net.sites[site_id]
        self._push(t + site.review_every_h * HOUR * self.rng.uniform(0.9, 1.1), "review", site_id)
        for item, sources in site.sources.items():
            r = self.rate[site_id, item]
            if r <= 0:
                continue
            position = sum(p.qty for p in self.stock[site_id, item]) + self.on_order[site_id, item]
            if position >= site.cover[0] * r:
                continue
            qty = max(1.0, math.ceil(site.cover[1] * r - position))
            if self.rng.random() < 0.01:  # a stocking order (promotion, new listing)
                qty = math.ceil(qty * self.rng.uniform(3, 6))
            weights = np.array([w for _, w in sources], dtype=float)
            supplier = sources[int(self.rng.choice(len(sources), p=weights / weights.sum()))][0]
            self.on_order[site_id, item] += qty
            when = self.next_slot(self.net.sites[supplier], t + self.rng.uniform(2, 20) * HOUR)
            self._push(when, "dispatch", (supplier, site_id, item, qty))

    def _on_dispatch(self, t: float, order: tuple[str, str, str, float]) -> None:
        supplier, customer, item, qty = order
        self.on_order[customer, item] = max(0.0, self.on_order[customer, item] - qty)
        src = self.net.sites[supplier]
        if item in src.makes:
            have = sum(p.qty for p in self.stock[supplier, item] if p.available <= t)
            if have < qty:
                batch = max(qty - have, self.net.items[item].batch_days * self.rate[supplier, item])
                made = t - self.rng.uniform(0.5, 4) * DAY
                self.stock[supplier, item].append(Piece(self._new_lot(item, made), float(math.ceil(batch)), made))
        pieces = self.take(supplier, item, qty, t)
        if pieces:
            self.ship(t, supplier, customer, item, pieces)

    def take(self, site: str, item: str, qty: float, t: float) -> list[tuple[str, float]]:
        """Draw `qty` first-in first-out from lots on hand at t: [(lot, units)]."""
        out: list[tuple[str, float]] = []
        stock = self.stock[site, item]
        for piece in list(stock):
            if qty <= 0:
                break
            if piece.available > t or piece.qty <= 0:
                continue
            n = min(piece.qty, qty)
            piece.qty -= n
            qty -= n
            out.append((piece.lot, n))
        self.stock[site, item] = deque(p for p in stock if p.qty > 0)
        return out

    def ship(self, t: float, supplier: str, customer: str, item: str, pieces: list[tuple[str, float]],
             carrier: str | None | bool = True) -> None:
        """One shipment (a transaction per lot); the goods arrive after the lane's transit time."""
        src, dst = self.net.sites[supplier], self.net.sites[customer]
        arrive = t + self.net.transit_h(src, dst, self.rng) * HOUR
        shipment = self.new_shipment()
        lane = self.lane(supplier, customer)
        if carrier is True:
            carrier = self.usual_carrier(src, lane)
        for lot, n in pieces:
            self.emit(t, supplier, customer, item, lot, n, shipment=shipment, carrier=carrier)
            self.stock[customer, item].append(Piece(lot, n, arrive))

    def usual_carrier(self, src: Site, lane: Lane) -> Optional[str]:
        if self.rng.random() < 0.02:
            return None  # the carrier field was not filled in
        if lane.carriers and self.rng.random() < 0.997:
            known = [c for c in lane.carriers if c is not None]
            if known:
                return known[int(self.rng.integers(len(known)))]
        return src.carriers[int(self.rng.integers(len(src.carriers)))]

    def lane(self, supplier: str, customer: str) -> Lane:
        lane = self.lanes.get((supplier, customer))
        if lane is None:
            lane = self.lanes[supplier, customer] = Lane(discount=float(self.rng.uniform(0.94, 1.02)))
        return lane

    def price(self, supplier: str, customer: str, item: str, rng: Optional[np.random.Generator] = None) -> float:
        src = self.net.sites[supplier]
        base = self.net.items[item].price * self.price_factor[item] * self.net.markup[src.type]
        discount = self.lanes[supplier, customer].discount if (supplier, customer) in self.lanes else 1.0
        return round(base * discount * (rng or self.rng).normal(1.0, 0.01), 2)

    def new_shipment(self) -> str:
        self._shipments += 1
        return self.net.shipment_id(self._shipments)

    def emit(self, t: float, supplier: str, customer: str, item: str, lot: str, qty: float, *,
             shipment: Optional[str] = None, carrier: Optional[str] = None, price: Optional[float] = None,
             label: Optional[tuple[str, str]] = None) -> dict[str, Any]:
        """Write one transaction. Attacks pass `label` and leave the ledger as it was."""
        src, dst = self.net.sites[supplier], self.net.sites[customer]
        self._tx += 1
        tx: dict[str, Any] = {
            "event_id": self.net.event_id(self._tx),
            "ts": datetime.fromtimestamp(t, tz=timezone.utc).isoformat().replace("+00:00", "Z"),
            "shipment_id": shipment or self.new_shipment(),
            "product_id": item, "lot_id": lot,
            "source_id": supplier, "source_type": src.type, "target_id": customer, "target_type": dst.type,
            "quantity": float(qty),
            "unit_price": price if price is not None else self.price(supplier, customer, item),
        }
        if carrier is not None:
            tx["carrier_id"] = carrier
            tx["route"] = f"{carrier}:{src.region}>{dst.region}"
        if self.net.items[item].controlled:
            tx["features"] = {"controlled": 1.0}
        self.transactions.append(tx)
        if label is not None:
            self.labels[tx["event_id"]] = label
            return tx
        lane = self.lane(supplier, customer)
        lane.shipments += 1
        lane.qty.setdefault(item, []).append(qty)
        lane.carriers[carrier] = lane.carriers.get(carrier, 0) + 1
        lane.hours[int((t % DAY) // HOUR)] += 1
        self.shipped[supplier, lot] += qty
        self.received[customer, lot] += qty
        self.first_receipt.setdefault((customer, lot), t)
        self.holders[lot].add(customer)
        self.inbound.append((t, customer, lot, item, tx))
        if len(self.inbound) > 5000:
            del self.inbound[:1000]
        return tx

    def _on_consume(self, t: float, _: Any) -> None:
        """A day's use at every consuming site, plus the day's legitimate oddities."""
        self._push(t + DAY, "consume", None)
        rng = self.rng
        for site in self.net.sites.values():
            if t < self.t0 + site.opens_day * DAY:
                continue
            for item, use in site.use.items():
                self.take(site.id, item, float(rng.poisson(use)), t)
        self._oddities(t)

    def _oddities(self, t: float) -> None:
        rng, sites = self.rng, self.net.sites
        downstream = [s for s in sites.values() if s.use and s.sources and not s.makes]
        # returns: a shop sends part of a recent delivery back to its supplier
        for site in rng.choice(downstream, size=rng.poisson(len(downstream) * 0.004), replace=True) if downstream else []:
            self._return(t, site)
        # transfers between neighbouring shops of the same supplier
        for site in rng.choice(downstream, size=rng.poisson(len(downstream) * 0.002), replace=True) if downstream else []:
            self._transfer(t, site)
        # a shop switches its main supplier of an item to another of the same tier and region
        if rng.random() < 0.3 and downstream:
            self._switch(downstream[int(rng.integers(len(downstream)))])
        # list price changes
        if rng.random() < 0.05:
            item = list(self.net.items)[int(rng.integers(len(self.net.items)))]
            self.price_factor[item] *= float(rng.uniform(1.01, 1.06))

    def _return(self, t: float, site: Site) -> None:
        held = [(item, p) for item in site.sources for p in self.stock[site.id, item] if p.available <= t and p.qty >= 2]
        if not held:
            return
        item, piece = held[int(self.rng.integers(len(held)))]
        supplier = site.sources[item][0][0]
        when = self.next_slot(site, t + self.rng.uniform(2, 10) * HOUR) if site.days else t + 10 * HOUR
        n = float(max(1, math.floor(piece.qty * self.rng.uniform(0.1, 0.5))))
        for lot, q in self.take(site.id, item, n, when):
            self.ship(when, site.id, supplier, item, [(lot, q)])

    def _transfer(self, t: float, site: Site) -> None:
        held = [(item, p) for item in site.sources for p in self.stock[site.id, item] if p.available <= t and p.qty >= 2]
        if not held:
            return
        item, piece = held[int(self.rng.integers(len(held)))]
        supplier = site.sources[item][0][0]
        peers = [s for s in self.net.sites.values() if s.id != site.id and s.region == site.region
                 and s.sources.get(item, [("", 0)])[0][0] == supplier]
        if not peers:
            return
        peer = peers[int(self.rng.integers(len(peers)))]
        when = self.next_slot(site, t + self.rng.uniform(2, 10) * HOUR)
        n = float(max(1, math.floor(piece.qty * self.rng.uniform(0.2, 0.6))))
        pieces = self.take(site.id, item, n, when)
        if pieces:
            self.ship(when, site.id, peer.id, item, pieces)

    def _switch(self, site: Site) -> None:
        item = list(site.sources)[int(self.rng.integers(len(site.sources)))]
        current = site.sources[item][0][0]
        tier = self.net.sites[current]
        alternatives = [s.id for s in self.net.sites.values()
                        if s.type == tier.type and s.region == site.region and s.id != current and item in self._carried(s)]
        if alternatives:
            site.sources[item] = [(alternatives[int(self.rng.integers(len(alternatives)))], 1.0)]

    def _carried(self, site: Site) -> set[str]:
        return set(site.sources) | set(site.makes)

    def move(self, t: float, supplier: str, customer: str, item: str, lot: str, qty: float, rng: np.random.Generator,
             in_transit: bool = False) -> None:
        """Goods of `lot` an attack really moves: up to `qty` leaves the supplier's stock of the lot
        (with `in_transit`, also goods not arrived yet) and arrives at the customer, so later
        legitimate shipments stay consistent with it."""
        left = qty
        for piece in self.stock[supplier, item]:
            if piece.lot == lot and (in_transit or piece.available <= t) and left > 0:
                n = min(piece.qty, left)
                piece.qty -= n
                left -= n
        moved = qty - left
        if moved <= 0:
            return
        self.shipped[supplier, lot] += moved
        self.received[customer, lot] += moved
        self.first_receipt.setdefault((customer, lot), t)
        self.holders[lot].add(customer)
        if customer in self.net.sites:
            arrive = t + self.net.transit_h(self.net.sites[supplier], self.net.sites[customer], rng) * HOUR
            self.stock[customer, item].append(Piece(lot, moved, arrive))

    # --- questions attacks ask ---------------------------------------------------------------------
    def on_hand(self, site: str, item: str, t: float) -> list[Piece]:
        return [p for p in self.stock[site, item] if p.available <= t and p.qty > 0]

    def customers(self, supplier: str, min_shipments: int = 5) -> list[str]:
        return [c for (s, c), lane in self.lanes.items() if s == supplier and lane.shipments >= min_shipments]

    def history_end(self) -> float:
        return self.now
