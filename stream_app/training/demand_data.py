"""Demand training data: a user's sales history and calendar files (JSON Lines in the event
layout, CSV or Parquet), the simulated history, and the daily panel the trainer works on.

Files
    sales     JSON Lines, one sales event per line as sent to `sales-events` (an array line is
              several events), or CSV/Parquet with a column per field: sku, market, units,
              unit_price, ts[, event_id, channel, promo, campaign_id, schema_version].
              Individual orders or daily totals: the trainer sums them per day either way.
    calendar  (optional) JSON Lines as sent to `demand-calendar`, or CSV/Parquet: kind, market,
              start, end, ts[, event_id, sku, intensity].
Other column names: `--map` (history_import/column_map.py). Rows are validated with the
contract's models by stream_app.training.data: bad rows are skipped, counted and reported with
their line numbers, repeated event_ids keep the first, a row without one gets an id derived from
its content.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from schemas.sales import CalendarEntry, SalesEvent
from stream_app.features.demand import CalendarIndex, day_date
from stream_app.training import data as loaders
from stream_app.training.history_import import layouts
from stream_app.training.history_import.column_map import ColumnMap

# --- files ----------------------------------------------------------------------------------------
def load_sales(path: Path | str, mapping: Optional[ColumnMap] = None) -> loaders.LoadResult[SalesEvent]:
    return loaders.load_file(path, layouts.SALES, mapping=mapping, scope="data")


def load_calendar(path: Path | str, mapping: Optional[ColumnMap] = None) -> loaders.LoadResult[CalendarEntry]:
    return loaders.load_file(path, layouts.CALENDAR, mapping=mapping, scope="outcomes")


@dataclass
class DemandHistory(loaders.LoadSummary):
    sales: list[SalesEvent]
    calendar: list[CalendarEntry]
    reports: list[loaders.LoadResult[Any]]


def load_demand_history(sales: Path | str, calendar: Optional[Path | str] = None,
                        mapping: Optional[ColumnMap] = None) -> DemandHistory:
    """A user's sales file and (optional) calendar file. Without a calendar the model learns
    from the sales alone (campaigns, holidays and launches then look like noise to it)."""
    reports = loaders.load_pair(sales, layouts.SALES, calendar, layouts.CALENDAR, mapping)
    return DemandHistory(reports[0].records, reports[1].records if len(reports) > 1 else [], reports)


def simulated_history(n_skus: int = 40, days: int = 730, seed: int = 0, **config: Any) -> tuple[list[SalesEvent], list[CalendarEntry]]:
    """The simulator's history (stream_app.simulation.demand), validated into the contract's models."""
    from stream_app.simulation.demand import DemandConfig, DemandSimulator

    history = DemandSimulator(DemandConfig(n_skus=n_skus, seed=seed, **config)).history(days)
    return [SalesEvent.model_validate(s) for s in history.sales], [CalendarEntry.model_validate(c) for c in history.calendar]


# --- the daily panel ------------------------------------------------------------------------------
@dataclass
class Panel:
    """Daily totals per series over days first_day .. first_day + T - 1 (indices 0 .. T-1)."""

    series: list[tuple[str, str]]  # (sku, market), sorted
    first_day: int  # days since the epoch of index 0
    units: np.ndarray  # (S, T) float64
    revenue: np.ndarray  # (S, T) units x price paid
    promo_units: np.ndarray  # (S, T)
    events: np.ndarray  # (S, T) int: sales events summed into the day
    first_active: np.ndarray  # (S,) index of the series' first sale
    calendar: np.ndarray  # (S, T + horizon, len(CALENDAR_CHANNELS))

    @property
    def days(self) -> int:
        return self.units.shape[1]

    @property
    def skus(self) -> list[str]:
        return [s for s, _ in self.series]

    @property
    def markets(self) -> list[str]:
        return [m for _, m in self.series]

    def date(self, index: int) -> str:
        return day_date(self.first_day + index).isoformat()


def build_panel(sales: Sequence[SalesEvent], calendar: Sequence[CalendarEntry], horizon: int) -> Panel:
    """Sum sales into daily totals per (sku, market) (UTC days of `ts`); repeated event_ids count
    once."""
    if not sales:
        raise ValueError("no sales to train on")
    seen: set[str] = set()
    keys: dict[tuple[str, str], int] = {}
    rows, days, units, revenue, promo = [], [], [], [], []
    for e in sales:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        rows.append(keys.setdefault((e.sku, e.market), len(keys)))
        days.append(int(e.ts.timestamp() // 86400))
        units.append(e.units)
        revenue.append(e.units * e.unit_price)
        promo.append(e.units if e.promo else 0.0)
    order = sorted(keys, key=lambda k: (k[0], k[1]))
    remap = np.empty(len(keys), dtype=np.int64)
    for new, key in enumerate(order):
        remap[keys[key]] = new
    r = remap[np.asarray(rows)]
    d = np.asarray(days, dtype=np.int64)
    first = int(d.min())
    T = int(d.max()) - first + 1
    S = len(order)
    shape = (S, T)
    out = {name: np.zeros(shape) for name in ("units", "revenue", "promo")}
    for name, values in (("units", units), ("revenue", revenue), ("promo", promo)):
        np.add.at(out[name], (r, d - first), np.asarray(values, dtype=np.float64))
    events = np.zeros(shape, dtype=np.int64)
    np.add.at(events, (r, d - first), 1)
    first_active = np.full(S, T, dtype=np.int64)
    np.minimum.at(first_active, r, d - first)
    cal = CalendarIndex(calendar).matrix([m for _, m in order], [s for s, _ in order], first, T + horizon)
    return Panel(order, first, out["units"], out["revenue"], out["promo"], events, first_active, cal)
