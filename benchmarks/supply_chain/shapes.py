"""Two network shapes, built from how such networks are organised (not from the product's
simulator): their own tiers, fan-outs, id and lot number formats, working hours and transit times.

pharma_distribution   manufacturers -> regional distribution centres -> wholesalers ->
                      pharmacies and retailers (about 380 sites, 60 products). Lots are big
                      production batches that sit at a distribution centre for weeks, so much of
                      what moves was produced before the data begins.
parts_tiers           raw material suppliers -> part makers (tier 2) -> module makers (tier 1) ->
                      assembly plants (just in time, around the clock) and aftermarket
                      distributors -> dealers -> workshops (about 300 sites, 45 items). Makers
                      consume lots of their inputs and ship lots of their own; dual sourcing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import numpy as np

from benchmarks.supply_chain.world import Item, Network, Site

WEEKDAYS, MON_SAT, EVERY_DAY = frozenset(range(5)), frozenset(range(6)), frozenset(range(7))
_MONTHS = "ABCDEFGHJKLM"


def _unique(rng: np.random.Generator, make: Callable[[], str], used: set[str]) -> str:
    while True:
        value = make()
        if value not in used:
            used.add(value)
            return value


def _gln(rng: np.random.Generator, used: set[str]) -> str:
    """A 13-digit location number."""
    return _unique(rng, lambda: f"{int(rng.integers(10**12, 10**13))}", used)


def _made(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


def pharma_distribution(seed: int, regions: int = 8, wholesalers_per_region: int = 5, pharmacies: int = 300,
                        retailers: int = 27, manufacturers: int = 6, products: int = 60) -> Network:
    rng = np.random.default_rng([seed, 11])
    used: set[str] = set()
    carriers = [_unique(rng, lambda: "SCAC:" + "".join(rng.choice(list("ABCDEFGHKLMNPRSTUVWXZ"), 4)), used) for _ in range(12)]
    sites: dict[str, Site] = {}

    def add(site: Site) -> Site:
        sites[site.id] = site
        return site

    def some_carriers(k: int) -> list[str]:
        return [str(c) for c in rng.choice(carriers, size=k, replace=False)]

    makers = [add(Site(_gln(rng, used), "manufacturer", 0, -1, (6.0, 17.0), WEEKDAYS, 24.0, some_carriers(2), (0, 0)))
              for _ in range(manufacturers)]
    items: dict[str, Item] = {}
    for i in range(products):
        gtin = _unique(rng, lambda: f"0{int(rng.integers(10**12, 10**13))}", used)
        items[gtin] = Item(
            gtin, makers[i % len(makers)].id, round(float(np.exp(rng.uniform(np.log(1.5), np.log(600.0)))), 2),
            bool(rng.random() < 0.1), float(rng.uniform(25, 50)),
            lambda r, t, k: f"{_made(t):%y}{_MONTHS[_made(t).month - 1]}{int(r.integers(100, 1000))}-{k % 100:02d}",
        )
    for m in makers:
        m.makes = frozenset(g for g, it in items.items() if it.maker == m.id)
    popularity = {g: float(rng.pareto(1.2) + 0.3) for g in items}
    dcs, wholesalers = [], {}
    for r in range(regions):
        dc = add(Site(_gln(rng, used), "distributor", 1, r, (4.0, 22.0), MON_SAT, 168.0, some_carriers(3), (14.0, 35.0)))
        dc.sources = {g: [(it.maker, 1.0)] for g, it in items.items()}
        dcs.append(dc)
    for r in range(regions):
        wholesalers[r] = []
        for _ in range(wholesalers_per_region):
            w = add(Site(_gln(rng, used), "wholesaler", 2, r, (5.0, 13.0), WEEKDAYS, 72.0, some_carriers(2), (5.0, 14.0)))
            carried = rng.choice(list(items), size=int(rng.integers(40, products + 1)), replace=False)
            w.sources = {str(g): [(dcs[r].id, 1.0)] for g in carried}
            for g in list(w.sources)[: len(w.sources) // 7]:  # some items also from the neighbouring region's centre
                w.sources[g] = [(dcs[r].id, 0.9), (dcs[(r + 1) % regions].id, 0.1)]
            wholesalers[r].append(w)
    for k in range(pharmacies + retailers):
        retail = k >= pharmacies
        r = int(rng.integers(regions))
        opens = float(rng.uniform(10, 50)) if rng.random() < 0.01 else 0.0
        shop = add(Site(_gln(rng, used), "other" if retail else "pharmacy", 3, r, (9.0, 18.0), MON_SAT, 24.0,
                        some_carriers(1), (3.0, 10.0), opens_day=opens))
        ws = wholesalers[r]
        main = ws[int(rng.integers(len(ws)))]
        second = ws[int(rng.integers(len(ws)))] if rng.random() < 0.25 else None
        chain = not retail and rng.random() < 0.08  # chain pharmacies buy straight from the centre
        pool = list(main.sources) if not chain else list(items)
        n_items = int(rng.integers(6, 12)) if retail else int(rng.integers(10, 22))
        weights = np.array([popularity[g] for g in pool])
        chosen = rng.choice(pool, size=min(n_items, len(pool)), replace=False, p=weights / weights.sum())
        size = float(rng.lognormal(0.0, 0.5)) * (3.0 if retail else 1.0)
        for g in chosen:
            g = str(g)
            shop.use[g] = round(size * popularity[g] * float(rng.uniform(0.3, 1.2)), 3)
            if chain:
                shop.sources[g] = [(dcs[r].id, 1.0)]
            elif second is not None and second.id != main.id and g in second.sources:
                shop.sources[g] = [(main.id, 0.85), (second.id, 0.15)]
            else:
                shop.sources[g] = [(main.id, 1.0)]

    def transit(src: Site, dst: Site, r: np.random.Generator) -> float:
        base = {"manufacturer": (20, 70), "distributor": (6, 20), "wholesaler": (2, 7)}.get(src.type, (3, 10))
        return float(r.uniform(*base)) + (12.0 if src.region != dst.region and src.region >= 0 else 0.0)

    markup = {"manufacturer": 1.0, "distributor": 1.04, "wholesaler": 1.09, "pharmacy": 1.0, "other": 1.0}
    return Network("pharma-distribution", sites, items, carriers, markup, transit,
                   shipment_id=lambda n: f"ASN{n:010d}", event_id=lambda n: f"E{seed:02d}{n:09d}")


def parts_tiers(seed: int, raw_suppliers: int = 10, part_makers: int = 30, module_makers: int = 12, plants: int = 4,
                distributors: int = 3, dealers: int = 40, workshops: int = 200, raws: int = 10, parts: int = 25,
                modules: int = 10) -> Network:
    rng = np.random.default_rng([seed, 23])
    used: set[str] = set()
    carriers = [_unique(rng, lambda: f"CR{int(rng.integers(100, 1000))}", used) for _ in range(8)]
    sites: dict[str, Site] = {}

    def duns() -> str:
        return _unique(rng, lambda: f"{int(rng.integers(10**8, 10**9))}", used)

    def add(site: Site) -> Site:
        sites[site.id] = site
        return site

    def some_carriers(k: int) -> list[str]:
        return [str(c) for c in rng.choice(carriers, size=k, replace=False)]

    items: dict[str, Item] = {}

    def item(pn: str, maker: str, price: float, batch_days: float, lot: Callable[[np.random.Generator, float, int], str]) -> str:
        items[pn] = Item(pn, maker, round(price, 2), False, batch_days, lot)
        return pn

    raw_sup = [add(Site(duns(), "manufacturer", 0, -1, (6.0, 16.0), WEEKDAYS, 24.0, some_carriers(2), (0, 0)))
               for _ in range(raw_suppliers)]
    raw_items = []
    for i in range(raws):
        pn = _unique(rng, lambda: f"M{int(rng.integers(1000, 9999))}-{rng.choice(['T6', 'H14', 'S355', 'PA66', 'PP'])}", used)
        raw_items.append(item(pn, raw_sup[i % raw_suppliers].id, float(rng.uniform(2, 30)), 10.0,
                              lambda r, t, k: f"H{int(r.integers(100000, 999999))}"))
    for s in raw_sup:
        s.makes = frozenset(p for p in raw_items if items[p].maker == s.id)
    t2 = [add(Site(duns(), "manufacturer", 1, -1, (0.0, 24.0), MON_SAT, 24.0, some_carriers(2), (4.0, 12.0)))
          for _ in range(part_makers)]
    part_items = []
    for i in range(parts):
        pn = _unique(rng, lambda: f"{int(rng.integers(100, 999))}-{int(rng.integers(100, 999))}-{int(rng.integers(100, 999))}-{rng.choice(list('ABCDE'))}", used)
        part_items.append(item(pn, t2[i % part_makers].id, float(rng.uniform(8, 150)), 7.0,
                               lambda r, t, k: f"{_made(t):%y}{_made(t).isocalendar()[1]:02d}{'LMNP'[k % 4]}{k:04d}"))
    for k, s in enumerate(t2):
        own = [p for p in part_items if items[p].maker == s.id]
        extra = [part_items[(k + 7) % parts]] if rng.random() < 0.4 else []  # a second source of another part
        s.makes = frozenset(own + extra)
        for m in rng.choice(raw_items, size=min(len(raw_items), int(rng.integers(2, 4))), replace=False):
            first, second = rng.choice(raw_sup, size=2, replace=False)
            s.sources[str(m)] = [(first.id, 0.7), (second.id, 0.3)]
            s.use[str(m)] = float(rng.uniform(20, 60))
    t1 = [add(Site(duns(), "manufacturer", 2, -1, (0.0, 24.0), MON_SAT, 24.0, some_carriers(2), (3.0, 8.0)))
          for _ in range(module_makers)]
    module_items = []
    for i in range(modules):
        pn = _unique(rng, lambda: f"MOD-{int(rng.integers(10000, 99999))}", used)
        module_items.append(item(pn, t1[i % module_makers].id, float(rng.uniform(200, 2500)), 5.0,
                                 lambda r, t, k: f"MB{_made(t):%y%m%d}{k % 1000:03d}"))
    makers_of = {p: [s.id for s in t2 if p in s.makes] for p in part_items}
    for s in t1:
        s.makes = frozenset(p for p in module_items if items[p].maker == s.id)
        for p in rng.choice(part_items, size=min(len(part_items), int(rng.integers(4, 7))), replace=False):
            src = makers_of[str(p)]
            s.sources[str(p)] = [(src[0], 0.8), (src[1], 0.2)] if len(src) > 1 else [(src[0], 1.0)]
            s.use[str(p)] = float(rng.uniform(10, 40))
    module_makers_of = {p: items[p].maker for p in module_items}
    for k in range(plants):
        plant = add(Site(duns(), "other", 3, -1, (0.0, 24.0), EVERY_DAY, 8.0, some_carriers(2), (1.0, 3.0)))
        for p in rng.choice(module_items, size=min(len(module_items), int(rng.integers(4, 8))), replace=False):
            plant.sources[str(p)] = [(module_makers_of[str(p)], 1.0)]
            plant.use[str(p)] = float(rng.uniform(20, 80))
        for p in rng.choice(part_items, size=min(3, len(part_items)), replace=False):
            plant.sources[str(p)] = [(makers_of[str(p)][0], 1.0)]
            plant.use[str(p)] = float(rng.uniform(10, 30))
    aftermarket = module_items + [str(p) for p in rng.choice(part_items, size=min(15, len(part_items)), replace=False)]
    dists = []
    for r in range(distributors):
        d = add(Site(duns(), "distributor", 3, r, (6.0, 20.0), WEEKDAYS, 168.0, some_carriers(3), (14.0, 40.0)))
        d.sources = {p: [(module_makers_of[p] if p in module_makers_of else makers_of[p][0], 1.0)] for p in aftermarket}
        dists.append(d)
    dealer_sites: dict[int, list[Site]] = {r: [] for r in range(distributors)}
    for k in range(dealers):
        r = k % distributors
        d = add(Site(duns(), "wholesaler", 4, r, (7.0, 17.0), MON_SAT, 48.0, some_carriers(1), (7.0, 21.0)))
        for p in rng.choice(aftermarket, size=min(len(aftermarket), int(rng.integers(15, 26))), replace=False):
            d.sources[str(p)] = [(dists[r].id, 1.0)]
        dealer_sites[r].append(d)
    for k in range(workshops):
        r = int(rng.integers(distributors))
        opens = float(rng.uniform(10, 50)) if rng.random() < 0.01 else 0.0
        shop = add(Site(duns(), "other", 5, r, (8.0, 18.0), WEEKDAYS, 24.0, some_carriers(1), (1.5, 5.0), opens_day=opens))
        ds = dealer_sites[r]
        main = ds[int(rng.integers(len(ds)))]
        second = ds[int(rng.integers(len(ds)))] if rng.random() < 0.2 else None
        for p in rng.choice(list(main.sources), size=min(len(main.sources), int(rng.integers(8, 19))), replace=False):
            p = str(p)
            shop.use[p] = float(rng.lognormal(-0.7, 0.6))
            if second is not None and second.id != main.id and p in second.sources:
                shop.sources[p] = [(main.id, 0.8), (second.id, 0.2)]
            else:
                shop.sources[p] = [(main.id, 1.0)]

    def transit(src: Site, dst: Site, r: np.random.Generator) -> float:
        if src.tier == 0:
            return float(r.uniform(24, 96))
        if dst.type == "distributor":
            return float(r.uniform(24, 72))
        if src.type == "distributor":
            return float(r.uniform(12, 36))
        return float(r.uniform(2, 8))

    markup = {"manufacturer": 1.0, "distributor": 1.15, "wholesaler": 1.25, "other": 1.0}
    return Network("parts-tiers", sites, items, carriers, markup, transit,
                   shipment_id=lambda n: f"DN-{seed}-{n:07d}", event_id=lambda n: f"mx{seed}:{n:x}")
