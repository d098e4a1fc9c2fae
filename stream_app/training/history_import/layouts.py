"""The columns each history file takes (CSV, Parquet), and a table's rows made into the event
layout the contract's models validate.

Every file: `event_id` (optional: a row without one gets an id derived from its content, see
event_ids.py), `ts` (ISO 8601, naive = UTC, or epoch milliseconds; in Parquet also a timestamp or
a date), `schema_version` (optional), then the stream's fields below. Columns the layout does
not know are not read (and named in the load summary), except for readings, where every other
column is a sensor.

readings      machine_id, ts; machine_type, operating_mode, cycle; sensors: one column per sensor,
              `sensors.NAME` or bare NAME (wide: one row per machine and time, the layout
              historians export). A bare column with text but no number in the first 1,000
              rows (a site name, a unit) is not a sensor and is left out. An empty cell is
              null: the sensor did not report.
outcomes      machine_id, ts; outcome (failure | repair, default failure), failure_mode. A failure
              log of machine and time (and mode) is enough.
transactions  shipment_id, product_id, lot_id, source_id, source_type, target_id, target_type,
              quantity, unit_price, ts; carrier_id, route; features: one `features.NAME` column
              per feature (an empty cell: no such feature on this row).
verdicts      shipment_id, verdict (confirmed | cleared), ts; attack_kind.
sales         sku, market, units, unit_price, ts; channel, promo (true/false/1/0), campaign_id.
calendar      kind (holiday | campaign | launch | media), market, start, end, ts; sku, intensity.

A Parquet column named `sensors` or `features` holding a struct or map (the event written as is)
is read as that map. Choices (outcome, node types, verdict, kind) are read in any case.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

from schemas.common import InputEvent
from schemas.sales import CalendarEntry, SalesEvent
from schemas.sensor import MaintenanceOutcome, SensorReading
from schemas.supply_chain import SupplyChainTransaction, SupplyChainVerdict
from stream_app.simulation.maintenance import SENSORS
from stream_app.training.history_import import values as v
from stream_app.training.history_import.errors import DataError
from stream_app.training.history_import.tables import Row, Table

# (row number, the event as a dict or None, error or None): what data._validate validates.
EventRow = tuple[int, Optional[dict[str, Any]], Optional[str]]
# Rows looked at to tell a text column (not a sensor) from a sensor that reports numbers.
_SNIFF_ROWS = 1000
_COMMON: dict[str, v.Convert] = {"event_id": v.text, "ts": v.timestamp, "schema_version": v.whole}


@dataclass(frozen=True)
class Layout:
    role: str  # what the file holds, in messages: "readings", "verdicts", ...
    model: type[InputEvent]
    fields: Mapping[str, v.Convert]  # column -> how its cells are read
    open_map: Optional[str] = None  # "sensors" / "features": numbers in `NAME.key` columns
    nulls_in_map: bool = False  # an empty cell is a null entry (sensors) or no entry (features)
    other_columns_in_map: bool = False  # readings: every other column is a sensor
    map_names: frozenset[str] = frozenset()  # bare names --map may target in the open map

    @property
    def required(self) -> list[str]:
        """Columns a file must have (after --map): the model's required fields; event_id is
        derived when missing, the open map is checked on its own."""
        return [name for name, f in self.model.model_fields.items()
                if f.is_required() and name not in ("event_id", self.open_map)]

    def accepts(self, column: str) -> bool:
        """Whether `column` is one of ours (a --map target) for this file."""
        if column in self.fields or column in self.map_names:
            return True
        prefix = f"{self.open_map}." if self.open_map else None
        return bool(prefix and column.startswith(prefix) and len(column) > len(prefix))

    @property
    def map_required(self) -> bool:
        return bool(self.open_map) and self.model.model_fields[self.open_map].is_required()

    def columns_text(self) -> str:
        names = list(self.fields) + ([f"{self.open_map}.NAME"] if self.open_map else [])
        return f"{self.role}: {', '.join(names)}"


def _fields(**specific: v.Convert) -> dict[str, v.Convert]:
    return {**_COMMON, **specific}


READINGS = Layout(
    "readings", SensorReading,
    _fields(machine_id=v.text, machine_type=v.text, operating_mode=v.text, cycle=v.whole),
    open_map="sensors", nulls_in_map=True, other_columns_in_map=True, map_names=frozenset(SENSORS),
)
OUTCOMES = Layout("outcomes", MaintenanceOutcome, _fields(machine_id=v.text, outcome=v.keyword, failure_mode=v.text))
TRANSACTIONS = Layout(
    "transactions", SupplyChainTransaction,
    _fields(shipment_id=v.text, product_id=v.text, lot_id=v.text, source_id=v.text, source_type=v.keyword,
            target_id=v.text, target_type=v.keyword, quantity=v.number, unit_price=v.number, carrier_id=v.text,
            route=v.text),
    open_map="features",
)
VERDICTS = Layout("verdicts", SupplyChainVerdict, _fields(shipment_id=v.text, verdict=v.keyword, attack_kind=v.text))
SALES = Layout(
    "sales", SalesEvent,
    _fields(sku=v.text, market=v.text, units=v.number, unit_price=v.number, channel=v.text, promo=v.flag,
            campaign_id=v.text),
)
CALENDAR = Layout(
    "calendar", CalendarEntry,
    _fields(kind=v.keyword, market=v.text, sku=v.text, start=v.day, end=v.day, intensity=v.number),
)


@dataclass
class EventRows:
    rows: Iterator[EventRow]
    notes: list[str] = field(default_factory=list)  # what the load summary should mention


def event_rows(table: Table, layout: Layout, renames: Mapping[str, str], where: str) -> EventRows:
    """The table's rows as event dicts. `renames`: the file's column -> ours, from
    ColumnMap.resolve, which has checked the header has the layout's required columns. Raises
    DataError when the header cannot be read as this layout all the same."""
    names = [renames.get(c, c) for c in table.columns]
    prefix = f"{layout.open_map}." if layout.open_map else None
    fields: list[tuple[int, str, v.Convert]] = []
    keyed: list[tuple[int, str]] = []  # (column, key in the open map)
    nested: list[int] = []  # a Parquet struct/map column holding the whole open map
    rest: list[int] = []
    for i, name in enumerate(names):
        if not name:  # an unnamed index column, as spreadsheet and dataframe exports write
            continue
        if name in layout.fields:
            fields.append((i, name, layout.fields[name]))
        elif name == layout.open_map:
            nested.append(i)
        elif prefix and name.startswith(prefix) and len(name) > len(prefix):
            keyed.append((i, name[len(prefix):]))
        else:
            rest.append(i)
    notes: list[str] = []
    rows = table.rows
    if layout.other_columns_in_map and rest:
        sniffed = list(itertools.islice(rows, _SNIFF_ROWS))
        rows = itertools.chain(sniffed, rows)
        text_only = [i for i in rest if _holds_no_number(sniffed, i)]
        if text_only:
            notes.append(f"not {layout.open_map} (no numbers): {', '.join(table.columns[i] for i in text_only)}")
        keyed += [(i, names[i]) for i in rest if i not in text_only]
    elif rest:
        notes.append(f"columns not read: {', '.join(table.columns[i] for i in rest)}")
    no_repeats([k for _, k in keyed], where, f"more than one column holds {layout.open_map}")
    if layout.map_required and not keyed and not nested:
        raise DataError(f"{where}: {layout.role} need at least one {(layout.open_map or '').removesuffix('s')} column "
                        f"besides {', '.join(layout.fields)}; its columns: {', '.join(table.columns)}")
    return EventRows(_convert(rows, layout, fields, keyed, nested), notes)


def _convert(rows: Iterator[Row], layout: Layout, fields: list[tuple[int, str, v.Convert]],
             keyed: list[tuple[int, str]], nested: list[int]) -> Iterator[EventRow]:
    for number, cells, error in rows:
        if cells is None:
            yield number, None, error
            continue
        record: dict[str, Any] = {}
        try:
            for i, name, convert in fields:
                value = _cell(convert, cells[i], name)
                if value is not None:  # empty: the schema's default
                    record[name] = value
            if layout.open_map and (keyed or nested):
                entries = [(key, cells[i]) for i, key in keyed]
                for i in nested:
                    entries += _pairs(cells[i], layout.open_map)
                found = {key: _cell(v.number, cell, f"{layout.open_map}.{key}") for key, cell in entries}
                if not layout.nulls_in_map:
                    found = {key: x for key, x in found.items() if x is not None}
                record[layout.open_map] = found
        except ValueError as exc:
            yield number, None, str(exc)
            continue
        yield number, record, None


def _cell(convert: v.Convert, cell: Any, name: str) -> Any:
    try:
        return convert(cell)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _pairs(cell: Any, name: str) -> list[tuple[str, Any]]:
    if cell is None:
        return []
    if isinstance(cell, dict):
        return list(cell.items())
    if isinstance(cell, list) and all(isinstance(p, tuple) and len(p) == 2 for p in cell):  # Arrow map
        return list(cell)
    raise ValueError(f"{name}: expected a struct or map of numbers, got {type(cell).__name__}")


def _holds_no_number(rows: list[Row], column: int) -> bool:
    """Some text cells and no number: a text column (site, unit, status word), not a sensor.
    Empty and null cells say nothing either way."""
    text = False
    for _, cells, _ in rows:
        if cells is None:
            continue
        try:
            if v.number(cells[column]) is not None:
                return False
        except ValueError:
            text = True
    return text


def no_repeats(names: list[str], where: str, what: str) -> None:
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise DataError(f"{where}: {what} {', '.join(repeated)}")
