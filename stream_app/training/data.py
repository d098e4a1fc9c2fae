"""Load a user's history for training: sensor readings and maintenance outcomes, from JSON Lines
in the event layout of the public contract, or from CSV or Parquet with one column per field.

JSON Lines: one event object per line, exactly as it would be sent to Kafka (a line holding a
JSON array is read as several events). Blank lines are skipped.

CSV and Parquet (first CSV line = header), columns as history_import/layouts.py describes them:
  readings  machine_id, ts[, event_id, machine_type, operating_mode, cycle, schema_version], and
            one column per sensor: every other column is a sensor (a `sensors.` prefix is
            dropped, so `sensors.rpm` and `rpm` are the same), unless it holds no numbers. An
            empty cell is null (the sensor did not report). This is also the wide layout a
            historian exports: one row per machine and time.
  outcomes  machine_id, ts[, event_id, outcome, failure_mode, schema_version]: a failure log.
`--map OURS=THEIRS` (history_import/column_map.py) reads a file with its own column names. A row
without an event_id gets one derived from its content (history_import/event_ids.py).

Every row is validated with the pydantic schemas (`SensorReading`, `MaintenanceOutcome`). A bad
row is skipped, counted and reported with its line number (Parquet: row number); loading fails
(`DataError`) only when most rows are bad, which almost always means a wrong file or layout
rather than dirty data. Repeated event_ids (at-least-once delivery) keep the first and are
counted, not errors.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Iterable, Iterator, Optional, Sequence, TypeVar, Union

from pydantic import BaseModel, ValidationError

from schemas.sensor import MaintenanceOutcome, SensorReading
from stream_app.training.history_import import event_ids, layouts
from stream_app.training.history_import.column_map import ColumnMap
from stream_app.training.history_import.errors import DataError  # raised by the readers; caught as data.DataError
from stream_app.training.history_import.layouts import Layout
from stream_app.training.history_import.tables import Table, csv_table, parquet_table

E = TypeVar("E", bound=BaseModel)
PathLike = Union[str, Path]

READING_FIELDS = ("event_id", "machine_id", "ts", "machine_type", "operating_mode", "cycle")
OUTCOME_FIELDS = ("event_id", "machine_id", "ts", "outcome", "failure_mode")
_META_FIELDS = ("schema_version",)
_SENSOR_PREFIX = "sensors."
FORMATS = ("jsonl", "csv", "parquet")
# Detailed errors kept per file (all are counted).
MAX_REPORTED_ERRORS = 200
# Loading fails when more than this share of rows is bad.
MAX_BAD_SHARE = 0.5


@dataclass(frozen=True)
class RowError:
    line: int  # 1-based physical line of the file (for CSV, the line where the row ends; Parquet: the row)
    message: str
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.message}"


@dataclass
class LoadResult(Generic[E]):
    path: str
    format: str
    records: list[E] = field(default_factory=list)
    rows: int = 0  # data rows seen (blank lines not counted)
    bad_rows: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)  # first MAX_REPORTED_ERRORS
    derived_ids: int = 0  # rows without an event_id, given one from their content
    columns: list[str] = field(default_factory=list)  # CSV/Parquet: the file's own column names
    mapped: dict[str, str] = field(default_factory=dict)  # ours -> the file's column (--map)
    notes: list[str] = field(default_factory=list)  # columns left out, and why

    @property
    def ok(self) -> int:
        return len(self.records)

    def summary(self) -> str:
        text = f"{self.path} ({self.format}): {self.rows} rows, {self.ok} loaded, {self.bad_rows} bad"
        if self.duplicates:
            text += f", {self.duplicates} duplicate event_ids dropped"
        if self.derived_ids:
            text += f", {self.derived_ids} event_ids derived from row content"
        if self.mapped:
            text += "; mapped " + ", ".join(f"{ours}={theirs}" for ours, theirs in self.mapped.items())
        return "; ".join([text, *self.notes])

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "rows": self.rows,
            "loaded": self.ok,
            "bad_rows": self.bad_rows,
            "duplicates": self.duplicates,
            "derived_ids": self.derived_ids,
            "mapped": dict(self.mapped),
            "notes": list(self.notes),
            "errors": [{"line": e.line, "message": e.message} for e in self.errors],
        }


# --- reading files ---------------------------------------------------------------------------
def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, "r", encoding="utf-8-sig", newline="")


def detect_format(path: PathLike) -> str:
    """'jsonl', 'csv' or 'parquet', from the extension (.jsonl/.ndjson/.json, .csv, optionally
    .gz; .parquet) or, failing that, from the file's first bytes."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if last == ".csv":
        return "csv"
    if last in (".parquet", ".pq"):
        return "parquet"
    with open(p, "rb") as raw:
        if raw.read(4) == b"PAR1":
            return "parquet"
    with _open_text(p) as fh:
        for line in fh:
            stripped = line.strip()
            if stripped:
                return "jsonl" if stripped[0] in "{[" else "csv"
    return "jsonl"


def _short(err: ValidationError) -> str:
    parts = []
    for item in err.errors()[:3]:
        loc = ".".join(str(x) for x in item.get("loc", ())) or "row"
        parts.append(f"{loc}: {item.get('msg', 'invalid')}")
    more = err.error_count() - 3
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)


def _iter_jsonl(fh: IO[str]) -> Iterator[tuple[int, Any, Optional[str]]]:
    """(line number, parsed object or None, error text or None) per non-blank line/element."""
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if isinstance(value, list):
            if not value:
                continue
            for item in value:
                yield number, item, None
        else:
            yield number, value, None


def _validate(rows: Iterable[tuple[int, Any, Optional[str]]], model: type[E], result: LoadResult[E],
              unit: str = "line") -> None:
    """Rows (number, object or None, error or None) into `result`: validated, the first of repeated
    event_ids kept, bad rows counted and the first of them kept with their numbers."""
    seen: set[str] = set()
    for number, obj, error in rows:
        result.rows += 1
        if error is None:
            if not isinstance(obj, dict):
                error = f"expected a JSON object, got {type(obj).__name__}"
            else:
                try:
                    record, derived = event_ids.validate(model, obj)
                except ValidationError as exc:
                    error = _short(exc)
        if error is not None:
            result.bad_rows += 1
            if len(result.errors) < MAX_REPORTED_ERRORS:
                result.errors.append(RowError(number, error[:300], unit))
            continue
        result.derived_ids += derived
        if record.event_id in seen:  # type: ignore[attr-defined]
            result.duplicates += 1
            continue
        seen.add(record.event_id)  # type: ignore[attr-defined]
        result.records.append(record)


def _validate_table(table: Table, layout: Layout, mapping: ColumnMap, scope: str, result: LoadResult[Any]) -> None:
    if not table.columns:  # an empty file: no rows
        return
    result.columns = list(table.columns)
    renames = mapping.resolve(scope, layout, table.columns, result.path)
    result.mapped = {ours: theirs for theirs, ours in renames.items()}
    rows = layouts.event_rows(table, layout, renames, result.path)
    result.notes += rows.notes
    _validate(rows.rows, layout.model, result, table.unit)


def load_file(path: PathLike, layout: Layout, fmt: Optional[str] = None, mapping: Optional[ColumnMap] = None,
              scope: str = "data") -> LoadResult[Any]:
    """One history file of `layout` (readings, verdicts, sales, ...) in any format. `scope`: the
    train command's option that named it (data or outcomes), for --map entries scoped to it."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    fmt = fmt or detect_format(p)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
    mapping = mapping or ColumnMap()
    result: LoadResult[Any] = LoadResult(path=str(p), format=fmt)
    try:
        if fmt == "parquet":
            _validate_table(parquet_table(p), layout, mapping, scope, result)
        else:
            with _open_text(p) as fh:
                if fmt == "jsonl":
                    mapping.refuse_for_events(scope, str(p))
                    _validate(_iter_jsonl(fh), layout.model, result)
                else:
                    _validate_table(csv_table(fh), layout, mapping, scope, result)
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{p}: unreadable CSV ({exc})") from None
    if result.rows == 0:
        raise DataError(f"{p}: no rows")
    if result.bad_rows > MAX_BAD_SHARE * result.rows or not result.records:
        first = "; ".join(str(e) for e in result.errors[:5])
        raise DataError(
            f"{p}: {result.bad_rows} of {result.rows} rows are bad - wrong file or layout? First errors: {first}"
        )
    return result


def load_pair(data: PathLike, data_layout: Layout, second: Optional[PathLike], second_layout: Layout,
              mapping: Optional[ColumnMap] = None) -> list[LoadResult[Any]]:
    """A stream's --data file and (optional) --outcomes file, with one column mapping for both."""
    mapping = mapping or ColumnMap()
    mapping.check({"data": data_layout, **({"outcomes": second_layout} if second is not None else {})})
    reports = [load_file(data, data_layout, mapping=mapping, scope="data")]
    if second is not None:
        reports.append(load_file(second, second_layout, mapping=mapping, scope="outcomes"))
    mapping.check_used(reports)
    return reports


def load_readings(path: PathLike, fmt: Optional[str] = None,
                  mapping: Optional[ColumnMap] = None) -> LoadResult[SensorReading]:
    return load_file(path, layouts.READINGS, fmt, mapping, "data")


def load_outcomes(path: PathLike, fmt: Optional[str] = None,
                  mapping: Optional[ColumnMap] = None) -> LoadResult[MaintenanceOutcome]:
    return load_file(path, layouts.OUTCOMES, fmt, mapping, "outcomes")


class LoadSummary:
    """For a history loaded from files: what loading said, for the console and the report.
    Mixed into each stream's history dataclass, which holds `reports`."""

    reports: list[LoadResult[Any]]

    def summary(self) -> str:
        return "\n".join(r.summary() for r in self.reports)

    def source(self) -> dict[str, str]:
        """Per file, one line for the training report (`train_*(..., source=...)`), with the
        first bad lines."""
        out = {}
        for r in self.reports:
            text = r.summary()
            if r.errors:
                text += "; first: " + "; ".join(str(e) for e in r.errors[:3])
            out[r.path] = text
        return out


@dataclass
class History(LoadSummary):
    readings: list[SensorReading]
    outcomes: list[MaintenanceOutcome]
    reports: list[LoadResult[Any]]


def load_history(data: PathLike, outcomes: Optional[PathLike] = None, mapping: Optional[ColumnMap] = None) -> History:
    """Readings file plus (optional) outcomes file. Without outcomes every life is censored, so
    the model learns nothing about failures: the trainer refuses that (see train_maintenance)."""
    reports = load_pair(data, layouts.READINGS, outcomes, layouts.OUTCOMES, mapping)
    outs = reports[1].records if len(reports) > 1 else []
    return History(readings=reports[0].records, outcomes=outs, reports=reports)


# --- writing files (exports, tests, the simulator's history) ----------------------------------
def _event_dict(event: Union[BaseModel, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(event, BaseModel):
        return event.model_dump(mode="json", exclude_none=False)
    return dict(event)


def write_jsonl(path: PathLike, events: Iterable[Union[BaseModel, dict[str, Any]]]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(_event_dict(event), separators=(",", ":")) + "\n")
            count += 1
    return count


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    return str(value)


def write_readings_csv(path: PathLike, readings: Sequence[Union[SensorReading, dict[str, Any]]]) -> int:
    rows = [_event_dict(r) for r in readings]
    sensors: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for name in row.get("sensors") or {}:
            if name not in seen:
                seen.add(name)
                sensors.append(name)
    clash = [s for s in sensors if s in READING_FIELDS or s in _META_FIELDS or s.startswith(_SENSOR_PREFIX)]
    header = list(READING_FIELDS) + [_SENSOR_PREFIX + s if s in clash else s for s in sensors]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            values = row.get("sensors") or {}
            writer.writerow(
                [_csv_value(row.get(f)) for f in READING_FIELDS] + [_csv_value(values.get(s)) for s in sensors]
            )
    return len(rows)


def write_outcomes_csv(path: PathLike, outcomes: Sequence[Union[MaintenanceOutcome, dict[str, Any]]]) -> int:
    rows = [_event_dict(o) for o in outcomes]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(OUTCOME_FIELDS)
        for row in rows:
            writer.writerow([_csv_value(row.get(f)) for f in OUTCOME_FIELDS])
    return len(rows)
