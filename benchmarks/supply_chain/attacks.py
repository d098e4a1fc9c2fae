"""Attack families, each defined by what it means in a supply network, added to a running world
(benchmarks/supply_chain/world.py) in the test weeks. Attacks that move genuine goods (a diversion,
a price or quantity anomaly, odd hours, collusion) take them from the sender's stock of that lot, so
the legitimate flows after them stay consistent; copies, counterfeits and duplicated deliveries
move nothing.

  custody       never_received   a site ships a lot it never received (a genuine lot number,
                                 received elsewhere a week or more ago, often made before the
                                 data begins), on one of its usual lanes, usual amount and hour
                received_twice   a delivery of a lot is recorded again days or hours later, same
                                 sender, lot, quantity and delivery note (shipment id): a
                                 genuine note used to cover goods that never came through
                overship         a site ships more of a lot than it ever received (a usual
                                 shipment drawn on a lot it has nearly or wholly passed on)
  routing       new_edge         a genuine holder ships a genuine lot to a site it never served
                carrier          a usual lane with a carrier never used on it (another lane's
                                 carrier, or one nobody has seen)
  counterfeit   entry            a site nobody has seen ships a product, lots nobody produced, to
                                 established buyers of it, a little cheap, over a few days
  volume_price  quantity         a usual lane, 8-30 times its usual quantity
                price            a usual lane at a quarter to less than half, or 2.5-4 times, its price
  timing        odd_hour         a usual lane at night, outside the sender's working window
                too_fast         a site ships a lot minutes after it was sent to it (before the
                                 goods can have arrived)
  collusion     cycle            two established sites pass one lot back and forth, marking it up
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from benchmarks.supply_chain.world import DAY, HOUR, Site, World

FAMILIES: dict[str, tuple[str, ...]] = {
    "custody": ("never_received", "received_twice", "overship"),
    "routing": ("new_edge", "carrier"),
    "counterfeit": ("entry",),
    "volume_price": ("quantity", "price"),
    "timing": ("odd_hour", "too_fast"),
    "collusion": ("cycle",),
}
KINDS = tuple(f"{family}/{kind}" for family, kinds in FAMILIES.items() for kind in kinds)
# shipments per instance, on average (to size the attack share)
SHIPMENTS = {"counterfeit/entry": 3.0, "collusion/cycle": 5.0}


@dataclass
class Attacker:
    world: World
    rng: np.random.Generator
    test_start: float
    count: int = 0

    # --- what attackers look for ------------------------------------------------------------------
    def stockists(self) -> list[Site]:
        """Sites that pass goods on (not producers) and have regular customers."""
        return [s for s in self.world.net.sites.values() if not s.makes and self.world.customers(s.id)]

    def usual(self, supplier: Site, t: float, at_least: float = 0.0) -> Optional[tuple[str, str, str, float, float]]:
        """(customer, item, lot held, usual quantity, how much of the lot it holds) on one of the
        supplier's regular lanes; the lot held in at least `at_least` times the usual quantity."""
        w = self.world
        for _ in range(20):
            customers = w.customers(supplier.id)
            c = customers[int(self.rng.integers(len(customers)))]
            items = [g for g, src in w.net.sites[c].sources.items() if any(s == supplier.id for s, _ in src)]
            held = [(g, p) for g in items for p in w.on_hand(supplier.id, g, t)]
            if held:
                g, piece = held[int(self.rng.integers(len(held)))]
                qty = self.typical(supplier.id, c, g)
                if piece.qty >= at_least * qty:
                    return c, g, piece.lot, qty, piece.qty
        return None

    def typical(self, supplier: str, customer: str, item: str) -> float:
        """The lane's usual quantity of the item (of any item when it never carried this one)."""
        lane = self.world.lanes.get((supplier, customer))
        values = (lane.qty.get(item) or [q for qs in lane.qty.values() for q in qs]) if lane is not None else []
        qty = float(np.median(values[-30:])) if values else 5.0
        return float(max(1.0, round(qty * self.rng.lognormal(0.0, 0.2))))

    def label(self, kind: str) -> tuple[str, str]:
        self.count += 1
        return kind, f"{kind}#{self.count}"

    def send(self, t: float, src: str, dst: str, item: str, lot: str, qty: float, label: tuple[str, str], *,
             price: Optional[float] = None, carrier: Optional[str] | bool = True, physical: bool = True,
             shipment: Optional[str] = None) -> None:
        """Write the attack's transaction; `physical`: the goods really move (as far as the sender
        holds them)."""
        w = self.world
        if carrier is True:
            lane = w.lanes.get((src, dst))
            known = [c for c in (lane.carriers if lane else {}) if c is not None] or w.net.sites[src].carriers
            carrier = known[int(self.rng.integers(len(known)))]
        t = max(t, self.test_start)
        w.emit(t, src, dst, item, lot, qty, carrier=carrier or None, shipment=shipment,
               price=price if price is not None else w.price(src, dst, item, self.rng), label=label)
        if physical:  # goods still on their way to the sender count (a ring passes a lot on at once)
            w.move(t, src, dst, item, lot, qty, self.rng, in_transit=True)

    def slot(self, site: Site, t: float) -> float:
        return self.world.next_slot(site, t) if site.days else t

    # --- custody ---------------------------------------------------------------------------------
    def never_received(self, t: float) -> bool:
        w = self.world
        for _ in range(40):
            x = self._pick(self.stockists())
            found = self.usual(x, t)
            if found is None:
                continue
            c, g, _, qty, _ = found
            lots = [lot for lot, item in w.lot_item.items() if item == g and w.holders[lot] and (x.id, lot) not in w.received
                    and min(w.first_receipt.get((h, lot), math.inf) for h in w.holders[lot]) <= t - 7 * DAY]
            if not lots:
                continue
            old = [lot for lot in lots if lot in w.prehistory]
            lot = self._pick(old if old and self.rng.random() < 0.5 else lots)
            self.send(self.slot(x, t), x.id, c, g, lot, qty, self.label("custody/never_received"), physical=False)
            return True
        return False

    def received_twice(self, t: float) -> bool:
        w = self.world
        recent = [tx for tr, _, _, _, tx in w.inbound if t - 3 * DAY <= tr <= t - 2 * HOUR]
        if not recent:
            return False
        tx = self._pick(recent)
        src = w.net.sites[tx["source_id"]]
        self.send(self.slot(src, t), src.id, tx["target_id"], tx["product_id"], tx["lot_id"], tx["quantity"],
                  self.label("custody/received_twice"), price=tx["unit_price"], carrier=tx.get("carrier_id"),
                  physical=False, shipment=tx["shipment_id"])
        return True

    def overship(self, t: float) -> bool:
        w = self.world
        for _ in range(60):
            x = self._pick(self.stockists())
            found = self.usual(x, t)
            if found is None:
                continue
            c, g, _, qty, _ = found
            # lots it received within the last month and has (nearly) passed on
            lots = [lot for (s, lot), got in w.received.items() if s == x.id and w.lot_item.get(lot) == g
                    and w.first_receipt.get((s, lot), -math.inf) >= t - 30 * DAY and got - w.shipped[s, lot] <= 0.3 * qty]
            if not lots:
                continue
            lot = self._pick(lots)
            balance = w.received[x.id, lot] - w.shipped[x.id, lot]
            qty = max(qty, math.ceil(2 * balance) + 1)
            # what it still holds of the lot really goes; the rest is made up
            self.send(self.slot(x, t), x.id, c, g, lot, qty, self.label("custody/overship"))
            return True
        return False

    # --- routing ---------------------------------------------------------------------------------
    def new_edge(self, t: float) -> bool:
        w = self.world
        for _ in range(40):
            x = self._pick(self.stockists())
            found = self.usual(x, t)
            if found is None:
                continue
            c0, g, lot, _, held = found
            served = {c for (s, c) in w.lanes if s == x.id}
            kind = w.net.sites[c0].type
            others = [z for z in w.net.sites.values() if z.id not in served and z.id != x.id and g in z.sources
                      and z.type == kind and z.opens_day == 0]
            if not others:
                continue
            far = [z for z in others if z.region != x.region] or others
            z = self._pick(far)
            usual = z.sources[g][0][0]
            self.send(self.slot(x, t), x.id, z.id, g, lot, min(self.typical(usual, z.id, g), held), self.label("routing/new_edge"))
            return True
        return False

    def carrier(self, t: float) -> bool:
        w = self.world
        for _ in range(40):
            x = self._pick(self.stockists())
            found = self.usual(x, t)
            if found is None:
                continue
            c, g, lot, qty, held = found
            qty = min(qty, held)
            used = set(w.lanes[x.id, c].carriers)
            if self.rng.random() < 0.5:
                pool = [k for k in w.net.carriers if k not in used and k not in x.carriers]
                if not pool:
                    continue
                carrier = self._pick(pool)
            else:
                carrier = f"{self._pick(w.net.carriers)[:-1]}{self.rng.integers(10)}x"
            self.send(self.slot(x, t), x.id, c, g, lot, qty, self.label("routing/carrier"), carrier=carrier)
            return True
        return False

    # --- counterfeit entry ----------------------------------------------------------------------------
    def entry(self, t: float) -> bool:
        w = self.world
        for _ in range(40):
            model = self._pick(self.stockists())
            found = self.usual(model, t)
            if found is None:
                continue
            g = found[1]
            buyers = [s for s in w.net.sites.values() if g in s.sources and s.region == model.region and s.opens_day == 0
                      and s.type != model.type]
            if len(buyers) < 2:
                continue
            fake = f"{self.rng.integers(10 ** (len(model.id) - 1), 10 ** len(model.id))}" if model.id.isdigit() else f"{model.id[:-3]}X{self.count:02d}"
            w.net.sites[fake] = Site(fake, model.type, model.tier, model.region, model.hours, model.days, 1e9,
                                     model.carriers, (0, 0))
            lot = w.net.items[g].lot_id(self.rng, t - self.rng.uniform(20, 90) * DAY, int(self.rng.integers(1, 99)))
            label = self.label("counterfeit/entry")
            when = t
            for buyer in self.rng.choice(buyers, size=min(len(buyers), int(self.rng.integers(2, 5))), replace=False):
                when = self.slot(model, when + self.rng.uniform(1, 20) * HOUR)
                qty = self.typical(buyer.sources[g][0][0], buyer.id, g)
                price = w.price(model.id, buyer.id, g, self.rng) * float(self.rng.uniform(0.75, 0.9))
                self.send(when, fake, buyer.id, g, lot, qty, label, price=round(price, 2), physical=False)
            return True
        return False

    # --- volume and price ---------------------------------------------------------------------------
    def quantity(self, t: float) -> bool:
        """From a lot the sender really holds that much of (the goods exist: a diversion in bulk)."""
        factor = float(self.rng.uniform(8, 30))
        return self._amount(t, "volume_price/quantity", qty_factor=factor, at_least=factor)

    def price(self, t: float) -> bool:
        factor = float(self.rng.uniform(0.2, 0.45) if self.rng.random() < 0.5 else self.rng.uniform(2.5, 4.0))
        return self._amount(t, "volume_price/price", price_factor=factor)

    def _amount(self, t: float, kind: str, qty_factor: float = 1.0, price_factor: float = 1.0, at_least: float = 0.0) -> bool:
        w = self.world
        for _ in range(80):
            x = self._pick(self.stockists())
            found = self.usual(x, t, at_least)
            if found is None:
                continue
            c, g, lot, qty, held = found
            price = round(w.price(x.id, c, g, self.rng) * price_factor, 2)
            qty = min(max(1.0, round(qty * qty_factor)), held)
            self.send(self.slot(x, t), x.id, c, g, lot, qty, self.label(kind), price=price)
            return True
        return False

    # --- timing ------------------------------------------------------------------------------------
    def odd_hour(self, t: float) -> bool:
        limited = [s for s in self.stockists() if s.hours[1] - s.hours[0] <= 16]
        for _ in range(40):
            if not limited:
                return False
            x = self._pick(limited)
            found = self.usual(x, t)
            if found is None:
                continue
            c, g, lot, qty, held = found
            qty = min(qty, held)
            day = math.floor(t / DAY) * DAY
            hour = float(self.rng.uniform(0.3, min(3.5, x.hours[0] - 1.0)))
            when = day + hour * HOUR if day + hour * HOUR >= t else day + DAY + hour * HOUR
            self.send(when, x.id, c, g, lot, qty, self.label("timing/odd_hour"))
            return True
        return False

    def too_fast(self, t: float) -> bool:
        w = self.world
        # the site's first delivery of that lot: it cannot hold any of it from before
        recent = [(tr, y, lot, g) for tr, y, lot, g, _ in w.inbound if t - 12 * HOUR <= tr <= t and not w.net.sites[y].makes
                  and w.first_receipt.get((y, lot)) == tr]
        for _ in range(60):
            if not recent:
                return False
            tr, y, lot, g = recent[int(self.rng.integers(len(recent)))]
            customers = [c for c in w.customers(y) if g in w.net.sites[c].sources]
            if not customers or tr < self.test_start:
                continue
            c = self._pick(customers)
            qty = min(self.typical(y, c, g), w.received[y, lot])
            when = tr + self.rng.uniform(3, 25) * 60.0
            self.send(when, y, c, g, lot, max(1.0, math.floor(qty)), self.label("timing/too_fast"), physical=False)
            w.move(when, y, c, g, lot, max(1.0, math.floor(qty)), self.rng, in_transit=True)
            return True
        return False

    # --- collusion ---------------------------------------------------------------------------------
    def cycle(self, t: float) -> bool:
        w = self.world
        for _ in range(40):
            a = self._pick(self.stockists())
            peers = [s for s in self.stockists() if s.type == a.type and s.id != a.id]
            found = self.usual(a, t)
            if found is None or not peers:
                continue
            _, g, lot, qty, held = found
            qty = min(qty, held)
            b = self._pick(peers)
            label = self.label("collusion/cycle")
            price = w.price(a.id, b.id, g, self.rng)
            when, src, dst = t, a, b
            for _ in range(int(self.rng.integers(4, 7))):
                when = self.slot(src, when + self.rng.uniform(2, 10) * HOUR)
                self.send(when, src.id, dst.id, g, lot, qty, label, price=round(price, 2))
                price *= float(self.rng.uniform(1.04, 1.08))
                src, dst = dst, src
            return True
        return False

    def _pick(self, values: list):  # type: ignore[no-untyped-def]
        return values[int(self.rng.integers(len(values)))]


def schedule(world: World, start: float, end: float, per_kind: dict[str, int], seed: int) -> Callable[[World, float], None]:
    """An hourly hook for World.run_until that launches each kind's instances at random times
    in [start, end)."""
    attacker = Attacker(world, np.random.default_rng([seed, 97]), start)
    rng = np.random.default_rng([seed, 98])
    due = sorted((float(rng.uniform(start, end - DAY)), kind) for kind, n in per_kind.items() for _ in range(n))

    def hook(_: World, t: float) -> None:
        while due and due[0][0] <= t:
            _, kind = due.pop(0)
            getattr(attacker, kind.split("/")[1])(t)

    return hook
