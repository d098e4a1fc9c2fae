"""Real national public holidays and what they do to retail sales.

The holidays are each country's official calendar as the `holidays` package computes it per year
(fixed dates, Easter-based feasts, Eid al-Fitr and Eid al-Adha, the Spring Festival and Diwali,
observed and substituted days), so they move between years as they really do. Consecutive
holiday days form one span (the Spring Festival week, a three-day Eid).

The effects are written from retail practice in each country, per span:

    on        multiplier of the span's days: 0 where shops must close (Germany's and Poland's
              holidays, Christmas Day in Britain, Thanksgiving in the US), below 1 where many
              close, above 1 where people shop on a day off (US Memorial Day sales, Golden Week);
              a day with a rule of its own keeps it (Boxing Day inside Britain's Christmas span)
    stockup   extra share of staples sold on the last open day before a span that starts with a
              closure (half of it on the open day before that): people stock up
    gift      extra share of gifts at the peak of a buying season that ramps up over `gift_days`
              before the span (Christmas, Diwali, the Spring Festival, Eid)
    next_day  multiplier of the day after the span (Black Friday after Thanksgiving)
stockup, gift and next_day reach each product category by its weight (holiday_retail.CATEGORIES).

The product is told only that a holiday falls on those days (intensity 1): which holiday matters
how much, the ramps and the day after it has to learn from the sales.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np


@dataclass(frozen=True)
class Effect:
    on: float = 1.0
    stockup: float = 0.0
    gift: float = 0.0
    gift_days: int = 0
    next_day: float = 1.0


@dataclass(frozen=True)
class Market:
    code: str
    size: float  # demand multiplier
    price_level: float
    weekday: tuple[float, float, float, float, float, float, float]  # Monday first; 0: shops closed by law
    rules: tuple[tuple[str, Effect], ...]  # holiday name fragment -> effect, first match wins
    default: Effect
    # Observed and substituted days off: part of the feast around them (China's golden weeks,
    # when everyone is off), or an office day off on which shops trade as on other holidays.
    days_off_join: bool = False


_CLOSED = Effect(on=0.0, stockup=0.4)
MARKETS: dict[str, Market] = {m.code: m for m in (
    # Shops close on Sundays and every public holiday (Ladenschlussgesetz).
    Market("DE", 1.5, 1.0, (0.95, 0.95, 1.0, 1.05, 1.3, 1.45, 0.0), (
        ("Christmas Day", Effect(on=0.0, stockup=0.8, gift=1.5, gift_days=28)),
        ("Good Friday", Effect(on=0.0, stockup=0.6)),
    ), _CLOSED),
    # Sunday trading ban since 2018; holidays closed.
    Market("PL", 0.8, 0.55, (1.0, 0.95, 1.0, 1.05, 1.3, 1.5, 0.0), (
        ("Christmas Day", Effect(on=0.0, stockup=0.9, gift=1.3, gift_days=28)),
        ("Easter Sunday", Effect(on=0.0, stockup=0.8)),
    ), _CLOSED),
    # Most shops close on 1 January, 1 May and Christmas Day; on other holidays many open.
    Market("FR", 1.2, 1.05, (0.9, 0.95, 1.0, 1.0, 1.2, 1.45, 0.35), (
        ("Christmas Day", Effect(on=0.05, stockup=0.6, gift=1.2, gift_days=28)),
        ("New Year's Day", Effect(on=0.05, stockup=0.4)),
        ("Labor Day", Effect(on=0.05, stockup=0.3)),
    ), Effect(on=0.7)),
    # Bank holidays are shopping days; large shops close on Christmas Day; Boxing Day sales.
    Market("GB", 1.3, 1.1, (0.95, 0.95, 1.0, 1.0, 1.15, 1.35, 0.75), (
        ("Christmas Day", Effect(on=0.0, stockup=0.8, gift=1.3, gift_days=28)),
        ("Boxing Day", Effect(on=1.6)),
        ("New Year's Day", Effect(on=0.6)),
        ("Good Friday", Effect(on=1.1, stockup=0.2)),
    ), Effect(on=1.15)),
    # Open on most federal holidays (with sales on the long weekends); closed on Thanksgiving
    # and Christmas Day; Black Friday the day after Thanksgiving.
    Market("US", 2.0, 1.0, (0.9, 0.9, 0.95, 1.0, 1.15, 1.35, 1.1), (
        ("Thanksgiving", Effect(on=0.0, stockup=0.9, gift=0.5, gift_days=10, next_day=2.4)),
        ("Christmas Day", Effect(on=0.0, stockup=0.5, gift=1.3, gift_days=30)),
        ("New Year's Day", Effect(on=0.5)),
        ("Memorial Day", Effect(on=1.25)),
        ("Independence Day", Effect(on=1.2)),
        ("Labor Day", Effect(on=1.25)),
    ), Effect(on=1.0)),
    # The two Eids (dates move ~11 days a year): shopping in the days before, many shops shut.
    Market("TR", 0.9, 0.45, (1.0, 1.0, 1.0, 1.0, 1.1, 1.3, 0.9), (
        ("Eid al-Fitr", Effect(on=0.35, stockup=0.6, gift=1.2, gift_days=7)),
        ("Eid al-Adha", Effect(on=0.35, stockup=0.8, gift=0.8, gift_days=5)),
    ), Effect(on=0.8)),
    # Diwali's buying season (Dhanteras) before the day itself.
    Market("IN", 1.1, 0.3, (1.0, 1.0, 1.0, 1.0, 1.05, 1.15, 1.2), (
        ("Diwali", Effect(on=0.3, stockup=0.5, gift=2.0, gift_days=14)),
        ("Dussehra", Effect(on=0.8, gift=0.5, gift_days=5)),
    ), Effect(on=0.85)),
    # Spring Festival: weeks of buying before, a shut week; National Day's golden week shopping.
    Market("CN", 1.6, 0.6, (0.95, 0.95, 0.95, 1.0, 1.1, 1.25, 1.2), (
        ("Spring Festival", Effect(on=0.25, stockup=0.5, gift=1.6, gift_days=21)),
        ("National Day", Effect(on=1.3)),
        ("Labor Day", Effect(on=1.15)),
    ), Effect(on=1.05), days_off_join=True),
    # Year-end shopping, New Year closures; Golden Week leisure shopping.
    Market("JP", 1.2, 1.1, (0.95, 0.95, 0.95, 1.0, 1.05, 1.3, 1.25), (
        ("New Year's Day", Effect(on=0.4, stockup=0.6, gift=0.9, gift_days=7)),
        ("Showa Day", Effect(on=1.2)),
        ("Constitution", Effect(on=1.2)),
        ("Children's Day", Effect(on=1.2)),
    ), Effect(on=1.05)),
)}


@dataclass(frozen=True)
class Span:
    """Consecutive public holiday days of one market, with each day's name."""

    market: str
    start: date
    names: tuple[str, ...]  # one per day

    @property
    def end(self) -> date:
        return self.start + timedelta(days=len(self.names) - 1)

    @property
    def label(self) -> str:
        return self.names[0].lower().replace("'", "").replace(" ", "-")[:40]

    def effect(self) -> Effect:
        """The first rule that one of its days' own names matches, else the market's default."""
        found = (_rule(self.market, name) for name in self.names if not _day_off(name))
        return next((e for e in found if e is not None), MARKETS[self.market].default)

    def day_effect(self, i: int) -> float:
        """`on` of the span's day i: its own name's rule, else the span's (a day off: see
        Market.days_off_join)."""
        market, name = MARKETS[self.market], self.names[i]
        if _day_off(name):
            return self.effect().on if market.days_off_join else market.default.on
        return (_rule(self.market, name) or self.effect()).on


def _day_off(name: str) -> bool:
    return "observed" in name or "substituted" in name


def _rule(market: str, name: str) -> Effect | None:
    return next((e for fragment, e in MARKETS[market].rules if fragment in name), None)


def spans(market: str, first: date, last: date, subdiv: str | None = None) -> list[Span]:
    """The public holidays of a country (`market`, ISO code; optionally a subdivision's too)
    between first and last, as spans of consecutive days."""
    import holidays  # the `bench` extra: imported on use, so a missing one is reported by run()

    days = holidays.country_holidays(market, subdiv=subdiv, years=range(first.year, last.year + 1))
    out: list[Span] = []
    for d, name in sorted((d, n) for d, n in days.items() if first <= d <= last):
        if out and out[-1].end == d - timedelta(days=1):
            out[-1] = Span(market, out[-1].start, out[-1].names + (name,))
        else:
            out.append(Span(market, d, (name,)))
    return out


@dataclass
class DailyEffects:
    """Per day of a period (index 0 = its first day), for one market."""

    on: np.ndarray  # multiplier of every category (closures, shopping days off)
    stockup: np.ndarray  # gain for staples before closures
    gift: np.ndarray  # gain of gift buying seasons
    deal: np.ndarray  # gain of the day after (Black Friday)


def daily_effects(market: str, first: date, n_days: int, margin_days: int = 40) -> DailyEffects:
    """The market's holiday effects over n_days from `first` (spans up to `margin_days` after the
    period count: their ramps start inside it)."""
    rules = MARKETS[market]
    last = first + timedelta(days=n_days - 1)
    found = spans(market, first - timedelta(days=margin_days), last + timedelta(days=margin_days))
    weekday = np.array(rules.weekday)[[(first + timedelta(days=i)).weekday() for i in range(n_days)]]
    on = np.ones(n_days)
    stockup, gift, deal = np.zeros(n_days), np.zeros(n_days), np.zeros(n_days)
    index = lambda d: (d - first).days  # noqa: E731
    for span in found:
        for i in range(len(span.names)):
            if 0 <= index(span.start) + i < n_days:
                on[index(span.start) + i] = span.day_effect(i)
    closed = lambda i: i < 0 or i >= n_days or on[i] <= 0.2 or weekday[i] == 0.0  # noqa: E731
    for span in found:
        e, s = span.effect(), index(span.start)
        if e.stockup and span.day_effect(0) <= 0.5:
            before = [i for i in range(s - 1, s - 8, -1) if not closed(i)][:2]
            for i, share in zip(before, (1.0, 0.5)):
                if 0 <= i < n_days:
                    stockup[i] += e.stockup * share
        for d in range(1, e.gift_days + 1):  # linear ramp up to the day before
            if 0 <= s - d < n_days:
                gift[s - d] += e.gift * (1.0 - (d - 1) / e.gift_days)
        after = index(span.end) + 1
        if e.next_day != 1.0 and 0 <= after < n_days:
            deal[after] += e.next_day - 1.0
    return DailyEffects(on, stockup, gift, deal)
