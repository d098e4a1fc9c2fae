"""Demand training data: a user's sales history and calendar files (JSON Lines or CSV in the
event layout), the simulated history, and the daily panel the trainer works on.

Files
    sales     JSON Lines, one sales event per line as sent to `sales-events` (an array line is
              several events), or CSV with a header naming the event's fields: event_id, ts, sku,
              market, units, unit_price[, channel, promo, campaign_id, schema_version]. Individual
              orders or daily totals: the trainer sums them per day either way.
    calendar  (optional) JSON Lines as sent to `demand-calendar`, or CSV: event_id, ts, kind,
              market, sku, start, end, intensity.
Rows are validated with the contract's models; bad rows are skipped, counted and reported with
their line numbers, repeated event_ids keep the first (stream_app.training.data does this for
JSON Lines; CSV rows are converted to the same objects first).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Optional, Sequence

import numpy as np
from pydantic import ValidationError

from schemas.sales import CalendarEntry, SalesEvent
from stream_app.features.demand import CalendarIndex, day_date
from stream_app.training import data as loaders

SALES_FIELDS = ("event_id", "ts", "sku", "market", "units", "unit_price", "channel", "promo", "campaign_id")
CALENDAR_FIELDS = ("event_id", "ts", "kind", "market", "sku", "start", "end", "intensity")
_NUMBERS = {"units", "unit_price", "intensity"}
_BOOLS = {"promo"}


# --- files ----------------------------------------------------------------------------------------
def _csv_rows(fh: IO[str], fields: Sequence[str]) -> Iterator[tuple[int, Any, Optional[str]]]:
    """CSV rows -> (line, dict in the event layout or None, error or None): numbers and booleans
    converted as the JSON of the event would carry them, empty cells left out."""
    reader = csv.reader(fh)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    missing = [f for f in ("event_id", "ts") if f not in header]
    if missing:
        raise loaders.DataError(f"CSV header lacks {missing}: {header}")
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        record: dict[str, Any] = {}
        try:
            for name, cell in zip(header, row):
                if name not in fields and name != "schema_version":
                    continue
                text = loaders._csv_text(cell)
                if text is None:
                    continue
                if name in _NUMBERS:
                    record[name] = loaders._csv_number(text)
                elif name in _BOOLS:
                    if text.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(f"{name}: {text!r} is not true/false")
                    record[name] = text.lower() in ("true", "1")
                elif name == "ts":
                    record[name] = loaders._csv_ts(text)
                elif name == "schema_version":
                    record[name] = loaders._csv_int(text)
                else:
                    record[name] = text
        except ValueError as exc:
            yield line, None, str(exc)
            continue
        yield line, record, None


def _load(path: Path, model: type, fields: Sequence[str]) -> loaders.LoadResult[Any]:
    p = Path(path)
    if not p.is_file() or loaders.detect_format(p) == "jsonl":
        return loaders._load(p, model, "event", "jsonl")
    # CSV rows, converted to the event layout, validated like JSON Lines rows (data._load's rules:
    # first of repeated event_ids kept, bad rows counted, mostly bad means a wrong file).
    result: loaders.LoadResult[Any] = loaders.LoadResult(path=str(p), format="csv")
    seen: set[str] = set()
    with loaders._open_text(p) as fh:
        for line, record, error in _csv_rows(fh, fields):
            result.rows += 1
            if error is None:
                try:
                    event = model.model_validate(record)
                except ValidationError as exc:
                    error = loaders._short(exc)
            if error is not None:
                result.bad_rows += 1
                if len(result.errors) < loaders.MAX_REPORTED_ERRORS:
                    result.errors.append(loaders.RowError(line, error[:300]))
                continue
            if event.event_id in seen:
                result.duplicates += 1
                continue
            seen.add(event.event_id)
            result.records.append(event)
    if result.rows == 0:
        raise loaders.DataError(f"{p}: no rows")
    if result.bad_rows > loaders.MAX_BAD_SHARE * result.rows or not result.records:
        first = "; ".join(str(e) for e in result.errors[:5])
        raise loaders.DataError(f"{p}: {result.bad_rows} of {result.rows} rows are bad - wrong file or layout? First errors: {first}")
    return result


def load_sales(path: Path | str) -> loaders.LoadResult[SalesEvent]:
    return _load(Path(path), SalesEvent, SALES_FIELDS)


def load_calendar(path: Path | str) -> loaders.LoadResult[CalendarEntry]:
    return _load(Path(path), CalendarEntry, CALENDAR_FIELDS)


@dataclass
class DemandHistory(loaders.LoadSummary):
    sales: list[SalesEvent]
    calendar: list[CalendarEntry]
    reports: list[loaders.LoadResult[Any]]


def load_demand_history(sales: Path | str, calendar: Optional[Path | str] = None) -> DemandHistory:
    """A user's sales file and (optional) calendar file. Without a calendar the model learns
    from the sales alone (campaigns, holidays and launches then look like noise to it)."""
    loaded = load_sales(sales)
    reports: list[loaders.LoadResult[Any]] = [loaded]
    entries: list[CalendarEntry] = []
    if calendar is not None:
        cal = load_calendar(calendar)
        reports.append(cal)
        entries = cal.records
    return DemandHistory(loaded.records, entries, reports)


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
