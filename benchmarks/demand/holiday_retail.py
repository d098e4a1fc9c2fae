"""A multi-country retail panel whose sales follow each country's real public holidays
(benchmarks/demand/holiday_calendars.py): a retailer's SKUs in three categories across markets,
one sales event per SKU x market x day with sales.

Mean daily units of a series on day t:

    lam = base x market size x level(t) x weekday[market] x yearly[category]
          x on(t) x (1 + stockup(t) w_s + gift(t) w_g + deal(t) w_d)[category]
          x PROMO_AWARENESS x (1 - discount) ** -ELASTICITY        (on promotion days)

* categories: staples (high volume, stock up before closures), gifts (low volume and lumpy:
  intermittent, driven by buying seasons), home (medium volume, a spring and summer season);
* level: a growth rate per series times an AR(1) random walk on the log scale (slow drifts that
  revert), so neither the last weeks nor the last year is the whole truth;
* weekday: the market's trading week (0 where shops close by law on Sundays);
* promotions: a few per market and year, 4-10 days, market-wide or for one to three SKUs, 10-30 %
  off; the discount lifts units through the price elasticity, and staples sell less in the week
  after (pantry loading);
* launches: a fifth of the SKUs start selling during the period (new series, short histories);
* units: negative binomial around lam (gamma-Poisson), noisiest for gifts.

The calendar handed to the product: every public holiday span (intensity 1: it is not told which
holiday matters how much) and every promotion (intensity = its discount), each published ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from benchmarks.demand import holiday_calendars as hc
from benchmarks.demand.dataset import Dataset, Event, calendar_entry, sale, split

ELASTICITY = 1.8
PROMO_AWARENESS = 1.15  # a promotion sells more than its price cut alone
PANTRY_DIP, PANTRY_DAYS = 0.85, 7


@dataclass(frozen=True)
class Category:
    code: str
    log_base: tuple[float, float]  # mean and sd of log units per day in a size-1 market
    dispersion: float  # gamma shape: smaller is lumpier
    weights: tuple[float, float, float]  # response to stockup, gift seasons, deal days
    season: tuple[float, float]  # yearly amplitude and peak day of the year
    price: tuple[float, float]  # list price range


CATEGORIES = (
    Category("staple", (3.6, 0.6), 20.0, (1.0, 0.15, 0.3), (0.05, 15.0), (1.0, 6.0)),
    Category("gift", (-0.3, 1.0), 1.5, (0.2, 1.0, 1.0), (0.2, 340.0), (10.0, 60.0)),
    Category("home", (1.2, 0.8), 5.0, (0.4, 0.35, 0.8), (0.3, 150.0), (5.0, 40.0)),
)


@dataclass(frozen=True)
class RetailConfig:
    markets: tuple[str, ...] = ("DE", "PL", "FR", "GB", "US", "TR", "IN", "CN", "JP")
    skus_per_category: int = 12
    start: date = date(2021, 1, 4)
    heldout_start: date = date(2023, 10, 2)
    heldout_days: int = 182
    launch_share: float = 0.2
    promotions_per_year: float = 6.0
    seed: int = 7

    @classmethod
    def quick(cls) -> "RetailConfig":
        return cls(markets=("DE", "GB", "US", "TR", "CN"), skus_per_category=6, start=date(2022, 1, 3), heldout_days=91)


def generate(quick: bool = False, config: RetailConfig | None = None) -> Dataset:
    c = config or (RetailConfig.quick() if quick else RetailConfig())
    rng = np.random.default_rng(c.seed)
    end = c.heldout_start + timedelta(days=c.heldout_days - 1)
    T = (end - c.start).days + 1
    days = [c.start + timedelta(days=i) for i in range(T)]
    doy = np.array([d.timetuple().tm_yday for d in days], dtype=np.float64)
    years = (np.arange(T) / 365.25)[None, :]
    effects = {m: hc.daily_effects(m, c.start, T) for m in c.markets}
    calendar = [calendar_entry("holiday", m, s.start, s.end, c.start, label=s.label)
                for m in c.markets for s in hc.spans(m, c.start, end + timedelta(days=60))]

    skus = [(cat, f"{cat.code}-{k:03d}") for cat in CATEGORIES for k in range(c.skus_per_category)]
    series: list[tuple[Category, str, str]] = []
    for cat, sku in skus:
        n = int(rng.integers(max(1, len(c.markets) * 2 // 5), len(c.markets) + 1))
        series += [(cat, sku, m) for m in sorted(rng.choice(list(c.markets), size=n, replace=False))]
    S = len(series)
    sku_base = {sku: rng.normal(*cat.log_base) for cat, sku in skus}
    launch = {sku: (int(rng.integers(60, (c.heldout_start - c.start).days + 60)) if rng.random() < c.launch_share else 0)
              for _, sku in skus}
    list_price = {sku: float(rng.uniform(*cat.price)) for cat, sku in skus}

    lam = np.empty((S, T))
    for i, (cat, sku, m) in enumerate(series):
        market, e = hc.MARKETS[m], effects[m]
        weekday = np.array(market.weekday)[[d.weekday() for d in days]]
        yearly = 1 + cat.season[0] * np.cos(2 * np.pi * (doy - cat.season[1]) / 365.25)
        w_s, w_g, w_d = cat.weights
        lam[i] = (np.exp(sku_base[sku] + rng.normal(0, 0.3)) * market.size * weekday * yearly * e.on
                  * (1 + w_s * e.stockup + w_g * e.gift + w_d * e.deal))
    lam *= np.exp(rng.normal(0.03, 0.12, (S, 1)) * years + _ar1(rng, S, T))
    price = np.array([[list_price[sku] * hc.MARKETS[m].price_level] for _, sku, m in series]) * np.ones((1, T))
    discount, campaign = _promotions(rng, c, series, T, calendar)
    lam *= np.where(discount > 0, PROMO_AWARENESS * (1 - discount) ** -ELASTICITY, 1.0)
    lam *= _pantry_dip(series, discount)
    started = np.array([launch[sku] for _, sku, _ in series])[:, None] <= np.arange(T)[None, :]
    lam = np.where(started, lam, 0.0)
    shape = np.array([cat.dispersion for cat, _, _ in series])[:, None]
    units = rng.poisson(lam * rng.gamma(shape, 1.0 / shape, (S, T)))  # gamma-Poisson: negative binomial

    events: list[Event] = []
    for i, (_, sku, m) in enumerate(series):
        for t in np.flatnonzero(units[i]):
            paid = price[i, t] * (1 - discount[i, t])
            events.append(sale(sku, m, days[t], float(units[i, t]), paid, bool(discount[i, t] > 0), campaign.get((i, t))))
    train, held = split(events, c.heldout_start)
    return Dataset(
        "holiday-retail",
        f"a retailer's {len(skus)} SKUs (staples, gifts, home) in {len(c.markets)} countries "
        f"({', '.join(c.markets)}), {S} series, sales following each country's real public holidays",
        train, held, calendar, c.heldout_start, end,
    )


def _ar1(rng: np.random.Generator, S: int, T: int, phi: float = 0.99, sd: float = 0.03) -> np.ndarray:
    out = np.empty((S, T))
    x = rng.normal(0, sd / np.sqrt(1 - phi**2), S)
    for t in range(T):
        x = phi * x + rng.normal(0, sd, S)
        out[:, t] = x
    return out


def _promotions(rng: np.random.Generator, c: RetailConfig, series: list[tuple[Category, str, str]], T: int,
                calendar: list[Event]) -> tuple[np.ndarray, dict[tuple[int, int], str]]:
    """(S, T) discount share on promotion days (0 elsewhere); the campaign id per promoted
    (series, day); each promotion added to `calendar`, published 30 days ahead."""
    promo = np.zeros((len(series), T))
    campaign: dict[tuple[int, int], str] = {}
    for m in c.markets:
        rows = [i for i, (_, _, mm) in enumerate(series) if mm == m]
        for k in range(rng.poisson(c.promotions_per_year * T / 365.25) if rows else 0):
            first = int(rng.integers(0, T - 4))
            last = min(T - 1, first + int(rng.integers(3, 10)))
            off = float(rng.uniform(0.1, 0.3))
            targets = rows if rng.random() < 0.5 else list(rng.choice(rows, size=min(len(rows), int(rng.integers(1, 4))), replace=False))
            start, end = c.start + timedelta(days=first), c.start + timedelta(days=last)
            name = f"promo-{m}-{start.isoformat()}-{k}"
            published = max(c.start, start - timedelta(days=30))
            for sku in ([None] if targets is rows else sorted({series[i][1] for i in targets})):
                calendar.append(calendar_entry("campaign", m, start, end, published, off, sku, label=str(k)))
            for i in targets:
                promo[i, first:last + 1] = off
                campaign.update({(i, t): name for t in range(first, last + 1)})
    return promo, campaign


def _pantry_dip(series: list[tuple[Category, str, str]], promo: np.ndarray) -> np.ndarray:
    """Staples sell less in the PANTRY_DAYS after a promotion ends."""
    out = np.ones_like(promo)
    ended = (promo[:, :-1] > 0) & (promo[:, 1:] == 0)
    for i, t in zip(*np.nonzero(ended)):
        if series[i][0].code == "staple":
            out[i, t + 1:t + 1 + PANTRY_DAYS] *= PANTRY_DIP
    return out
