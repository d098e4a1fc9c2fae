"""The sales simulator: contract layout, determinism, the demand effects it claims, and the live
stream's calendar, ordering and nuisances."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone
from itertools import islice

import numpy as np

from schemas.sales import CalendarEntry, SalesEvent
from stream_app.settings import Settings
from stream_app.simulation.demand import MARKET_CODES, DemandConfig, DemandSimulator, demand_events


def _history(**config: object):
    return DemandSimulator(DemandConfig(n_skus=12, seed=4, launch_horizon_days=200, **config)).history(200)


def test_history_is_deterministic_valid_and_spans_twenty_plus_markets() -> None:
    a, b = _history(), _history()
    assert a.sales == b.sales and a.calendar == b.calendar
    assert a.sales != DemandSimulator(DemandConfig(n_skus=12, seed=5)).history(200).sales
    assert len(MARKET_CODES) >= 20
    sales = [SalesEvent.model_validate(s) for s in a.sales]
    calendar = [CalendarEntry.model_validate(c) for c in a.calendar]
    assert len({s.event_id for s in sales}) == len(sales)
    assert {c.kind for c in calendar} == {"holiday", "campaign", "launch", "media"}
    assert all(s.units > 0 for s in sales)


def test_demand_is_intermittent_for_the_long_tail_and_seasonal_by_weekday() -> None:
    h = DemandSimulator(DemandConfig(n_skus=30, seed=2)).history(364)
    mean = h.lam.mean(axis=1)
    assert (mean < 0.3).mean() > 0.1 and mean.max() > 5 * np.median(mean)
    weekday = (h.first_day + np.arange(h.lam.shape[1]) + 3) % 7
    total = h.lam.sum(axis=0)
    assert total[weekday == 5].mean() > 1.15 * total[weekday < 5].mean()  # Saturday lift


def test_launches_start_sales_and_campaigns_lift_them() -> None:
    sim = DemandSimulator(DemandConfig(n_skus=20, seed=3, launch_share=1.0, launch_horizon_days=150))
    h = sim.history(200)
    launch = sim._launch_day[sim._sku] - sim.start_day
    for i in range(len(h.series)):
        assert h.lam[i, : max(0, launch[i])].sum() == 0
    cal = [CalendarEntry.model_validate(c) for c in h.calendar if c["kind"] == "campaign" and c["sku"] is None]
    index = {s: i for i, s in enumerate(h.series)}
    lifts = []
    for c in cal[:20]:
        rows = [index[s] for s in h.series if s[1] == c.market]
        d = (c.start - date(2024, 1, 1)).days
        if 14 <= d < 190:
            lifts.append(h.lam[rows, d].sum() / max(h.lam[rows, d - 7].sum(), 1e-9))
    assert np.median(lifts) > 1.2


def test_live_stream_sends_the_calendar_first_then_orders_in_time_with_nuisances() -> None:
    start = datetime.now(timezone.utc) - timedelta(days=365)
    events = list(islice(demand_events(Settings(), seed=1, start=start, n_skus=6, duplicate_rate=0.05,
                                       late_rate=0.05, return_rate=0.01), 6000))
    topics = [t for t, _ in events]
    first_sale = topics.index("sales-events")
    assert set(topics[:first_sale]) == {"demand-calendar"} and first_sale > 10
    sales = [e for t, e in events if t == "sales-events"]
    assert all(e.kind == "reading" and e.key == f"{e.value['sku']}/{e.value['market']}" for e in sales)
    ids = Counter(e.value["event_id"] for e in sales)
    assert any(n > 1 for n in ids.values()), "no duplicate was resent"
    assert any(e.value["units"] < 0 for e in sales), "no return sent as negative units"
    ts = [datetime.fromisoformat(e.value["ts"].replace("Z", "+00:00")) for e in sales]
    late = sum(b < a - timedelta(minutes=30) for a, b in zip(ts, ts[1:]))
    assert late > 0 and max(ts) < datetime.now(timezone.utc)
    assert ts[0].date() == start.date()
    # days pass quickly: a simulated day is a few hundred orders
    assert (max(ts) - min(ts)).days >= 5
