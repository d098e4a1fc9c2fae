"""Print-on-demand sales simulator: daily demand per SKU x market with ground truth, and the known
future calendar (holidays, campaigns, launches, announced media mentions) that explains part of it.

Mean demand of a series (sku, market) on day t is a product of effects:

    lam = base x market size x trend x weekly[market][weekday] x yearly(hemisphere, day of year)
          x holiday x campaign x launch x media x (price / list price) ** -elasticity

* base: log-normal per SKU and market, so most series are a long tail of sparse (intermittent)
  demand and a few are best sellers; trend: a growth rate per series plus a slow random walk.
* holidays: fixed per market (gift seasons, national days, Black Friday); campaigns: a few days,
  market-wide or for a few SKUs, with a discount (promo); launches: a SKU sells from its launch
  day, with a decaying launch spike; media mentions: short spikes, half of them announced.
* price: a list price per series with occasional steps; campaigns discount it.
* units: negative binomial around lam (gamma-Poisson, shape `dispersion`): real sales are noisier
  than Poisson.

Holidays, campaigns, launches and announced media mentions are published as `CalendarEntry`
values with `intensity` = the size of their effect (1 + gain x intensity), so a model can use
them as known future covariates; unannounced media mentions, price steps, trends and noise must
be learned from the sales themselves.

The world is generated block by block (BLOCK_DAYS days; each block's calendar is known a block
ahead), vectorised over series with numpy, deterministic for a seed. `history()` gives one
aggregated sales event per series and day with sales (what an ERP export looks like);
`live()` gives individual orders in time order, with the nuisances a live stream has:
duplicates, late orders and (rarely) returns sent as negative units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator, Optional

import numpy as np

from stream_app.simulation.maintenance import SimEvent

DAY_S = 86400
BLOCK_DAYS = 91
# Effect sizes: multiplier = 1 + GAIN x intensity (the calendar's intensity is the effect's size).
HOLIDAY_GAIN = 1.0
CAMPAIGN_GAIN = 0.8
LAUNCH_GAIN = 1.0
MEDIA_GAIN = 1.0
LAUNCH_DECAY_DAYS = 8.0
MEDIA_DECAY_DAYS = 2.5
LAUNCH_WINDOW_DAYS = 21  # a launch's calendar entry spans its spike
ELASTICITY = 1.2
CAMPAIGN_DISCOUNT = 0.15


@dataclass(frozen=True)
class Holiday:
    name: str
    month: int
    day: int
    days: int
    intensity: float


_CHRISTMAS = Holiday("christmas", 12, 8, 16, 0.9)
_BOOK_DAY = Holiday("book_day", 4, 20, 4, 0.6)


@dataclass(frozen=True)
class Market:
    code: str
    size: float  # demand multiplier
    south: bool  # southern hemisphere: the yearly season is shifted half a year
    weekend_lift: float
    black_friday: bool
    holidays: tuple[Holiday, ...]


MARKETS: tuple[Market, ...] = (
    Market("US", 2.0, False, 0.35, True, (_CHRISTMAS, Holiday("independence", 7, 1, 4, 0.3))),
    Market("GB", 1.4, False, 0.40, True, (_CHRISTMAS, Holiday("book_day", 3, 1, 3, 0.6))),
    Market("DE", 1.5, False, 0.30, True, (_CHRISTMAS, Holiday("book_fair", 10, 14, 5, 0.5))),
    Market("FR", 1.2, False, 0.30, True, (_CHRISTMAS, Holiday("rentree", 8, 28, 10, 0.5))),
    Market("IT", 0.9, False, 0.45, True, (_CHRISTMAS,)),
    Market("ES", 0.9, False, 0.45, True, (_CHRISTMAS, _BOOK_DAY)),
    Market("NL", 0.6, False, 0.30, True, (_CHRISTMAS, Holiday("sinterklaas", 11, 28, 8, 0.8))),
    Market("SE", 0.5, False, 0.35, False, (_CHRISTMAS, _BOOK_DAY)),
    Market("PL", 0.6, False, 0.40, True, (_CHRISTMAS,)),
    Market("IE", 0.4, False, 0.40, True, (_CHRISTMAS,)),
    Market("AT", 0.4, False, 0.30, True, (_CHRISTMAS,)),
    Market("BE", 0.4, False, 0.30, True, (_CHRISTMAS,)),
    Market("CH", 0.4, False, 0.30, False, (_CHRISTMAS,)),
    Market("NO", 0.3, False, 0.35, False, (_CHRISTMAS,)),
    Market("CA", 0.8, False, 0.35, True, (_CHRISTMAS,)),
    Market("MX", 0.5, False, 0.50, False, (_CHRISTMAS, Holiday("reyes", 1, 3, 4, 0.6))),
    Market("BR", 0.7, True, 0.50, True, (_CHRISTMAS, Holiday("dia_do_livro", 10, 27, 3, 0.4))),
    Market("AR", 0.3, True, 0.50, False, (_CHRISTMAS,)),
    Market("JP", 1.1, False, 0.25, False, (Holiday("new_year", 12, 28, 7, 0.7), Holiday("golden_week", 4, 29, 7, 0.6))),
    Market("KR", 0.5, False, 0.30, False, (Holiday("chuseok", 9, 15, 5, 0.7),)),
    Market("IN", 0.7, False, 0.20, False, (Holiday("diwali", 10, 28, 7, 0.9),)),
    Market("AU", 0.6, True, 0.40, True, (_CHRISTMAS,)),
    Market("NZ", 0.2, True, 0.40, False, (_CHRISTMAS,)),
    Market("ZA", 0.3, True, 0.45, True, (_CHRISTMAS,)),
)
MARKET_CODES: tuple[str, ...] = tuple(m.code for m in MARKETS)
CHANNELS = ("web", "marketplace", "retail")


@dataclass
class DemandConfig:
    n_skus: int = 40
    seed: int = 0
    start: date = date(2024, 1, 1)
    markets: tuple[str, ...] = MARKET_CODES
    markets_per_sku: tuple[int, int] = (3, 12)
    # Launches of new SKUs fall within this many days of the start; the rest launched long ago.
    launch_horizon_days: int = 730
    launch_share: float = 0.3
    base_log_mean: float = -0.1
    base_log_sd: float = 1.1
    dispersion: float = 5.0  # gamma shape of the negative binomial: smaller is noisier
    campaigns_per_market_year: float = 8.0
    media_per_sku_year: float = 2.5
    media_announced_share: float = 0.5
    price_steps_per_year: float = 3.0
    # live() nuisances, per order
    duplicate_rate: float = 0.005
    late_rate: float = 0.01  # sent a few hours after later orders (within the allowed lateness)
    very_late_rate: float = 0.001  # sent days later: beyond the allowed lateness
    return_rate: float = 0.0005  # a return sent as negative units: bad input

    def __post_init__(self) -> None:
        if self.n_skus < 1:
            raise ValueError("n_skus must be at least 1")
        unknown = [m for m in self.markets if m not in MARKET_CODES]
        if unknown or not self.markets:
            raise ValueError(f"markets must be a non-empty subset of {MARKET_CODES}; unknown: {unknown}")
        lo, hi = self.markets_per_sku
        if not 1 <= lo <= hi:
            raise ValueError("markets_per_sku must be (low, high) with 1 <= low <= high")
        for name in ("launch_share", "media_announced_share", "duplicate_rate", "late_rate", "very_late_rate", "return_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.dispersion <= 0:
            raise ValueError("dispersion must be positive")


@dataclass
class Block:
    """BLOCK_DAYS days of the world: per series (S, D) arrays and the block's calendar."""

    first_day: int  # days since the epoch
    lam: np.ndarray  # mean demand
    price: np.ndarray  # unit price paid (discounted in campaigns)
    promo: np.ndarray  # bool: a campaign covers the series that day
    campaign: np.ndarray  # object: campaign id or None
    calendar: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SimulatedSales:
    """A simulated history in the contract's layout (dicts, as they would be sent)."""

    sales: list[dict[str, Any]]
    calendar: list[dict[str, Any]]
    series: list[tuple[str, str]]
    lam: np.ndarray  # (S, T) true mean demand, ground truth for tests
    first_day: int


def _day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def _date(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=int(day))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _black_friday(year: int) -> date:
    nov1 = date(year, 11, 1)
    thursday = nov1 + timedelta(days=(3 - nov1.weekday()) % 7 + 21)
    return thursday + timedelta(days=1)


class DemandSimulator:
    def __init__(self, config: Optional[DemandConfig] = None) -> None:
        self.config = c = config or DemandConfig()
        rng = np.random.default_rng([c.seed, 0])
        self.markets = [m for m in MARKETS if m.code in c.markets]
        n_m = len(self.markets)
        self.skus = [f"bk-{k:04d}" for k in range(c.n_skus)]
        series: list[tuple[int, int]] = []
        for k in range(c.n_skus):
            count = int(rng.integers(c.markets_per_sku[0], min(c.markets_per_sku[1], n_m) + 1))
            # big markets carry more titles
            p = np.array([m.size for m in self.markets])
            chosen = rng.choice(n_m, size=min(count, n_m), replace=False, p=p / p.sum())
            series += [(k, int(j)) for j in sorted(chosen)]
        self.series_index = series
        self.series = [(self.skus[k], self.markets[j].code) for k, j in series]
        S = len(series)
        self._sku = np.array([k for k, _ in series])
        self._mkt = np.array([j for _, j in series])
        sku_base = rng.normal(c.base_log_mean, c.base_log_sd, c.n_skus)
        size = np.array([m.size for m in self.markets])
        self._base = np.exp(sku_base[self._sku] + rng.normal(0, 0.4, S)) * size[self._mkt]
        self._growth = rng.normal(0.0, 0.25, S) / 365.0  # log growth per day
        self._rw_sd = 0.01
        self._list_price = np.round(rng.uniform(6, 25, c.n_skus)[self._sku] * rng.uniform(0.85, 1.15, S), 2)
        self._weekly = np.ones((n_m, 7))
        for j, m in enumerate(self.markets):
            self._weekly[j, 5] = 1 + m.weekend_lift
            self._weekly[j, 6] = 1 + 0.8 * m.weekend_lift
            self._weekly[j] /= self._weekly[j].mean()
        start = _day(c.start)
        launched = rng.random(c.n_skus) < c.launch_share
        launch = np.where(launched, start + rng.integers(0, max(1, c.launch_horizon_days), c.n_skus), start - 10_000)
        self._launch_day = launch.astype(np.int64)
        self.start_day = start

    # --- world, block by block ---------------------------------------------------------------
    def _block_rng(self, b: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, 1 + stream, b])

    def _blocks(self) -> Iterator[Block]:
        c = self.config
        S, n_m = len(self.series), len(self.markets)
        rw = np.zeros(S)
        list_price = self._list_price.copy()
        b = 0
        while True:
            rng = self._block_rng(b, 0)
            first = self.start_day + b * BLOCK_DAYS
            days = np.arange(first, first + BLOCK_DAYS)
            t_rel = days - self.start_day
            # trend: growth + random walk (carried across blocks)
            steps = rng.normal(0, self._rw_sd, (S, BLOCK_DAYS))
            walk = rw[:, None] + np.cumsum(steps, axis=1)
            rw = walk[:, -1]
            trend = np.exp(self._growth[:, None] * t_rel[None, :] + walk)
            weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
            weekly = self._weekly[self._mkt][:, weekday]
            doy = days % 365.2425  # day of the year, to within a day for centuries
            south = np.array([m.south for m in self.markets])[self._mkt]
            phase = np.where(south, 172.0, 355.0)  # peak in the local winter
            yearly = 1 + 0.25 * np.cos(2 * np.pi * (doy[None, :] - phase[:, None]) / 365.25)
            # price steps
            price = np.empty((S, BLOCK_DAYS))
            step_at = rng.random((S, BLOCK_DAYS)) < c.price_steps_per_year / 365.0
            factors = np.where(step_at, rng.uniform(0.8, 1.2, (S, BLOCK_DAYS)), 1.0)
            price_path = list_price[:, None] * np.cumprod(factors, axis=1)
            price_path = np.clip(price_path, 0.5 * self._list_price[:, None], 2.0 * self._list_price[:, None])
            list_price = price_path[:, -1]
            calendar: list[dict[str, Any]] = []
            holiday = self._holidays(days, calendar)
            campaign_mult, promo, campaign_id = self._campaigns(b, days, calendar)
            price[:] = np.round(np.where(promo, price_path * (1 - CAMPAIGN_DISCOUNT), price_path), 2)
            launch = self._launch(days, calendar)
            media = self._media(b, days, calendar)
            sold = days[None, :] >= self._launch_day[self._sku][:, None]
            lam = (
                self._base[:, None] * trend * weekly * yearly * holiday * campaign_mult * launch * media
                * (price / self._list_price[:, None]) ** -ELASTICITY
            )
            lam = np.where(sold, lam, 0.0)
            yield Block(first, lam, price, promo, campaign_id, calendar)
            b += 1

    def _entry(self, kind: str, market: str, sku: Optional[str], start: int, end: int, intensity: float) -> dict[str, Any]:
        announced = (start - 60) * DAY_S  # published two months ahead
        return {
            "event_id": f"cal-{kind}-{market}-{sku or 'all'}-{_date(start).isoformat()}",
            "ts": _iso(max(announced, self.start_day * DAY_S - 60 * DAY_S)),
            "kind": kind, "market": market, "sku": sku,
            "start": _date(start).isoformat(), "end": _date(end).isoformat(),
            "intensity": round(float(intensity), 3),
        }

    def _holidays(self, days: np.ndarray, calendar: list[dict[str, Any]]) -> np.ndarray:
        first, last = int(days[0]), int(days[-1])
        per_market = np.ones((len(self.markets), len(days)))
        years = {_date(first).year - 1, _date(first).year, _date(last).year}
        for j, m in enumerate(self.markets):
            spans = []
            for y in sorted(years):
                spans += [(_day(date(y, h.month, h.day)), h.days, h.intensity) for h in m.holidays]
                if m.black_friday:
                    spans.append((_day(_black_friday(y)), 4, 0.8))
            for start, n, intensity in spans:
                end = start + n - 1
                if end < first or start > last:
                    continue
                sel = (days >= start) & (days <= end)
                per_market[j, sel] *= 1 + HOLIDAY_GAIN * intensity
                if start >= first:  # published by the block it starts in
                    calendar.append(self._entry("holiday", m.code, None, start, end, intensity))
        return per_market[self._mkt]

    def _campaigns(self, b: int, days: np.ndarray, calendar: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        rng = self._block_rng(b, 1)
        S = len(self.series)
        mult = np.ones((S, len(days)))
        promo = np.zeros((S, len(days)), dtype=bool)
        cid = np.full((S, len(days)), None, dtype=object)
        for j, m in enumerate(self.markets):
            n = rng.poisson(c.campaigns_per_market_year * len(days) / 365.0)
            in_market = np.flatnonzero(self._mkt == j)
            for _ in range(n):
                start = int(days[0] + rng.integers(0, len(days)))
                end = start + int(rng.integers(3, 10))
                intensity = float(rng.uniform(0.4, 1.5))
                if rng.random() < 0.5 or not len(in_market):
                    targets, skus = in_market, [None]
                else:
                    targets = rng.choice(in_market, size=min(len(in_market), int(rng.integers(1, 4))), replace=False)
                    skus = [self.series[i][0] for i in targets]
                sel = (days >= start) & (days <= end)
                mult[np.ix_(targets, sel)] *= 1 + CAMPAIGN_GAIN * intensity
                promo[np.ix_(targets, sel)] = True
                name = f"cmp-{m.code}-{_date(start).isoformat()}"
                cid[np.ix_(targets, sel)] = name
                for sku in skus:
                    calendar.append(self._entry("campaign", m.code, sku, start, end, intensity))
        return mult, promo, cid

    def _launch(self, days: np.ndarray, calendar: list[dict[str, Any]]) -> np.ndarray:
        launch = self._launch_day[self._sku]
        age = days[None, :] - launch[:, None]
        spike = np.where(age >= 0, np.exp(-np.maximum(age, 0) / LAUNCH_DECAY_DAYS), 0.0)
        intensity = 4.0
        for i, (sku, market) in enumerate(self.series):
            if days[0] <= launch[i] <= days[-1]:
                calendar.append(self._entry("launch", market, sku, int(launch[i]), int(launch[i]) + LAUNCH_WINDOW_DAYS - 1, intensity))
        return 1 + LAUNCH_GAIN * intensity * spike

    def _media(self, b: int, days: np.ndarray, calendar: list[dict[str, Any]]) -> np.ndarray:
        c = self.config
        rng = self._block_rng(b, 2)
        S = len(self.series)
        mult = np.ones((S, len(days)))
        for k, sku in enumerate(self.skus):
            rows = np.flatnonzero(self._sku == k)
            for _ in range(rng.poisson(c.media_per_sku_year * len(days) / 365.0)):
                at = int(days[0] + rng.integers(0, len(days)))
                intensity = float(rng.uniform(1.0, 4.0))
                # a mention reaches one market (a local show) or all (international press)
                targets = rows if rng.random() < 0.4 else rows[[int(rng.integers(0, len(rows)))]]
                age = days - at
                spike = np.where(age >= 0, np.exp(-np.maximum(age, 0) / MEDIA_DECAY_DAYS), 0.0)
                mult[targets] *= 1 + MEDIA_GAIN * intensity * spike[None, :]
                if rng.random() < c.media_announced_share:
                    for i in targets:
                        calendar.append(self._entry("media", self.series[i][1], sku, at, at + 2, intensity))
        return mult

    def _units(self, block: Block, rng: np.random.Generator) -> np.ndarray:
        k = self.config.dispersion
        return rng.poisson(block.lam * rng.gamma(k, 1.0 / k, block.lam.shape))

    # --- outputs -----------------------------------------------------------------------------
    def history(self, days: int = 730) -> SimulatedSales:
        """`days` days from the start: one sales event per series and day with sales (units summed,
        the average price paid), and the calendar of that period (plus 60 days beyond it)."""
        if days < 1:
            raise ValueError("days must be at least 1")
        sales: list[dict[str, Any]] = []
        calendar: list[dict[str, Any]] = []
        lams = []
        end = self.start_day + days
        rng = np.random.default_rng([self.config.seed, 9])
        for block in self._blocks():
            if block.first_day >= end + 60:
                break
            calendar += [e for e in block.calendar if _day(date.fromisoformat(e["start"])) < end + 60]
            if block.first_day >= end:
                continue
            units = self._units(block, rng)
            n = min(BLOCK_DAYS, end - block.first_day)
            lams.append(block.lam[:, :n])
            for d in range(n):
                day = block.first_day + d
                ts = _iso(day * DAY_S + 12 * 3600)
                stamp = _date(day).isoformat()
                for i in np.flatnonzero(units[:, d]):
                    sku, market = self.series[i]
                    sales.append({
                        "event_id": f"{sku}/{market}/{stamp}", "ts": ts, "sku": sku, "market": market,
                        "units": float(units[i, d]), "unit_price": float(block.price[i, d]),
                        "promo": bool(block.promo[i, d]), "campaign_id": block.campaign[i, d],
                    })
        return SimulatedSales(sales, calendar, list(self.series), np.concatenate(lams, axis=1), self.start_day)

    def live(self) -> Iterator[SimEvent]:
        """Endless, from the config's start: the calendar of the first two blocks, then orders in time order (each block's
        calendar is sent when the block before it begins, so it is known at least a block ahead).
        Calendar entries are SimEvent kind "outcome" and sales kind "reading": the producer
        paces readings only, so the calendar goes out at once."""
        c = self.config
        rng = np.random.default_rng([c.seed, 10])
        blocks = self._blocks()
        current, upcoming = next(blocks), next(blocks)
        for entry in current.calendar + upcoming.calendar:
            yield self._calendar_event(entry)
        order = 0
        delayed: list[tuple[float, dict[str, Any]]] = []  # (send at, event), sorted by send time
        while True:
            units = self._units(current, rng)
            for d in range(BLOCK_DAYS):
                day = current.first_day + d
                rows = np.flatnonzero(units[:, d])
                batch: list[tuple[float, dict[str, Any]]] = []
                for i in rows:
                    remaining = int(units[i, d])
                    sku, market = self.series[i]
                    while remaining > 0:
                        q = min(remaining, int(rng.geometric(0.6)))
                        remaining -= q
                        ts = day * DAY_S + float(rng.uniform(0, DAY_S))
                        order += 1
                        event = {
                            "event_id": f"o-{c.seed}-{order:09d}", "ts": _iso(ts), "sku": sku, "market": market,
                            "units": float(q), "unit_price": float(current.price[i, d]),
                            "channel": CHANNELS[int(rng.integers(0, 3))], "promo": bool(current.promo[i, d]),
                            "campaign_id": current.campaign[i, d],
                        }
                        batch.append((ts, event))
                batch.sort(key=lambda pair: pair[0])
                for ts, event in batch:
                    while delayed and delayed[0][0] <= ts:
                        yield self._sale(delayed.pop(0)[1])
                    roll = rng.random()
                    if roll < c.return_rate:
                        yield self._sale({**event, "event_id": event["event_id"] + "-r", "units": -event["units"]})
                    if roll < c.very_late_rate:
                        self._delay(delayed, ts + float(rng.uniform(2, 4)) * DAY_S, event)
                        continue
                    if roll < c.very_late_rate + c.late_rate:
                        self._delay(delayed, ts + float(rng.uniform(0.5, 3)) * 3600, event)
                        continue
                    yield self._sale(event)
                    if roll > 1 - c.duplicate_rate:
                        self._delay(delayed, ts + float(rng.uniform(60, 1800)), event)
            current, upcoming = upcoming, next(blocks)
            for entry in upcoming.calendar:
                yield self._calendar_event(entry, not_before=current.first_day * DAY_S)

    @staticmethod
    def _delay(delayed: list[tuple[float, dict[str, Any]]], at: float, event: dict[str, Any]) -> None:
        delayed.append((at, event))
        delayed.sort(key=lambda pair: pair[0])

    @staticmethod
    def _sale(event: dict[str, Any]) -> SimEvent:
        return SimEvent("reading", f"{event['sku']}/{event['market']}", event)

    @staticmethod
    def _calendar_event(entry: dict[str, Any], not_before: Optional[float] = None) -> SimEvent:
        """`not_before`: the simulated time it is sent (the start of the block before its own)."""
        if not_before is not None:
            entry = {**entry, "ts": _iso(not_before)}
        return SimEvent("outcome", entry["market"], entry)


def demand_events(
    settings: Any, seed: int = 0, start: Optional[datetime] = None, *, n_skus: int = 12, **config: Any
) -> Iterator[tuple[str, SimEvent]]:
    """Live (topic, event) pairs for `produce()` (stream_app.simulation.producer): the calendar on
    `demand-calendar` (kind "outcome": sent at once), orders on `sales-events` (kind "reading":
    paced), keyed sku/market. Simulated time starts at `start` (default: the stream's lookback
    before now, streams.py); with the default 12 SKUs (~80 series, some launching later) a
    simulated day is ~175 orders (50-400), so at the demo's 30 events/s a day closes about every
    six seconds, and the model takes over a series after its first 14 days."""
    if start is None:
        from stream_app.simulation.streams import DEMAND_LOOKBACK

        start = datetime.now(timezone.utc) - DEMAND_LOOKBACK
    sim = DemandSimulator(DemandConfig(n_skus=n_skus, seed=seed, start=start.date(), launch_horizon_days=365, **config))
    topics = settings.topics
    for event in sim.live():
        yield (topics.sales_events if event.kind == "reading" else topics.demand_calendar), event


def day_of(ts: datetime) -> int:
    """Days since the epoch of a UTC timestamp: the simulator's and the stream's day index."""
    return int(math.floor(ts.timestamp() / DAY_S))
