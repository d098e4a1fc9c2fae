"""Load a user's history for training: sensor readings and maintenance outcomes, in the event
layout of the public contract, from JSON Lines or CSV.

JSON Lines: one event object per line, exactly as it would be sent to Kafka (a line holding a
JSON array is read as several events). Blank lines are skipped.

CSV (first line = header):
  readings  event_id, machine_id, ts, machine_type, operating_mode, cycle[, schema_version], and
            one column per sensor: every column that is not one of those fields is a sensor (a
            `sensors.` prefix is dropped, so `sensors.rpm` and `rpm` are the same). An empty cell
            is null (the sensor did not report).
  outcomes  event_id, machine_id, ts, outcome, failure_mode[, schema_version]

Every row is validated with the pydantic schemas (`SensorReading`, `MaintenanceOutcome`). A bad
row is skipped, counted and reported with its line number; loading fails (`DataError`) only when
most rows are bad, which almost always means a wrong file or layout rather than dirty data.
Repeated event_ids (at-least-once delivery) keep the first and are counted, not errors.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Iterable, Iterator, Optional, Sequence, TypeVar, Union

from pydantic import BaseModel, ValidationError

from schemas.sensor import MaintenanceOutcome, SensorReading

E = TypeVar("E", bound=BaseModel)
PathLike = Union[str, Path]

READING_FIELDS = ("event_id", "machine_id", "ts", "machine_type", "operating_mode", "cycle")
OUTCOME_FIELDS = ("event_id", "machine_id", "ts", "outcome", "failure_mode")
_META_FIELDS = ("schema_version",)
_SENSOR_PREFIX = "sensors."
# Detailed errors kept per file (all are counted).
MAX_REPORTED_ERRORS = 200
# Loading fails when more than this share of rows is bad.
MAX_BAD_SHARE = 0.5


class DataError(ValueError):
    """The file cannot be used at all (unreadable, wrong layout, or mostly bad rows)."""


@dataclass(frozen=True)
class RowError:
    line: int  # 1-based physical line of the file (for CSV, the line where the row ends)
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class LoadResult(Generic[E]):
    path: str
    format: str
    records: list[E] = field(default_factory=list)
    rows: int = 0  # data rows seen (blank lines not counted)
    bad_rows: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)  # first MAX_REPORTED_ERRORS

    @property
    def ok(self) -> int:
        return len(self.records)

    def summary(self) -> str:
        text = f"{self.path} ({self.format}): {self.rows} rows, {self.ok} loaded, {self.bad_rows} bad"
        if self.duplicates:
            text += f", {self.duplicates} duplicate event_ids dropped"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "rows": self.rows,
            "loaded": self.ok,
            "bad_rows": self.bad_rows,
            "duplicates": self.duplicates,
            "errors": [{"line": e.line, "message": e.message} for e in self.errors],
        }


# --- reading files ---------------------------------------------------------------------------
def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, "r", encoding="utf-8-sig", newline="")


def detect_format(path: PathLike) -> str:
    """'jsonl' or 'csv', from the extension (.jsonl/.ndjson/.json, .csv, optionally .gz) or,
    failing that, from the first non-blank character of the file."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if last == ".csv":
        return "csv"
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


def _csv_number(text: str) -> Optional[float]:
    text = text.strip()
    if text == "" or text.lower() in ("null", "none", "na", "n/a", "nan"):
        # NaN in a CSV cell is how many tools write "missing"; the contract's null.
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    return value


def _csv_int(text: str) -> Optional[int]:
    text = text.strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def _csv_text(text: Optional[str]) -> Optional[str]:
    if text is None:
        return None
    text = text.strip()
    return text or None


def _csv_ts(text: Optional[str]) -> Any:
    """ISO text stays text; a bare integer is epoch milliseconds (the contract allows both)."""
    text = _csv_text(text)
    if text is not None and text.lstrip("-").isdigit():
        return int(text)
    return text


def _iter_csv(fh: IO[str], kind: str) -> Iterator[tuple[int, Any, Optional[str]]]:
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise DataError(f"CSV header repeats a column: {header}")
    known = set(READING_FIELDS if kind == "reading" else OUTCOME_FIELDS) | set(_META_FIELDS)
    missing = [c for c in ("event_id", "machine_id", "ts") if c not in header]
    if missing:
        raise DataError(f"CSV header lacks required column(s) {missing}; found {header}")
    sensor_cols = [(i, h[len(_SENSOR_PREFIX):] if h.startswith(_SENSOR_PREFIX) else h)
                   for i, h in enumerate(header) if h not in known and h]
    if kind == "reading" and not sensor_cols:
        raise DataError("CSV readings need at least one sensor column besides " + ", ".join(READING_FIELDS))
    index = {h: i for i, h in enumerate(header)}
    for row in reader:
        number = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            yield number, None, f"has {len(row)} cells, header has {len(header)}"
            continue

        def cell(name: str) -> Optional[str]:
            i = index.get(name)
            return row[i] if i is not None else None

        try:
            record: dict[str, Any] = {
                "event_id": _csv_text(cell("event_id")),
                "machine_id": _csv_text(cell("machine_id")),
                "ts": _csv_ts(cell("ts")),
            }
            if _csv_text(cell("schema_version")):
                try:
                    record["schema_version"] = _csv_int(cell("schema_version") or "")
                except ValueError as exc:
                    raise ValueError(f"schema_version: {exc}") from None
            if kind == "reading":
                record["machine_type"] = _csv_text(cell("machine_type"))
                record["operating_mode"] = _csv_text(cell("operating_mode"))
                try:
                    record["cycle"] = _csv_int(cell("cycle") or "")
                except ValueError as exc:
                    raise ValueError(f"cycle: {exc}") from None
                sensors: dict[str, Optional[float]] = {}
                for i, name in sensor_cols:
                    try:
                        sensors[name] = _csv_number(row[i])
                    except ValueError as exc:
                        raise ValueError(f"sensors.{name}: {exc}") from None
                record["sensors"] = sensors
            else:
                outcome = _csv_text(cell("outcome"))
                if outcome is not None:
                    record["outcome"] = outcome
                record["failure_mode"] = _csv_text(cell("failure_mode"))
        except ValueError as exc:
            yield number, None, str(exc)
            continue
        yield number, record, None


def _load(path: PathLike, model: type[E], kind: str, fmt: Optional[str]) -> LoadResult[E]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    fmt = fmt or detect_format(p)
    if fmt not in ("jsonl", "csv"):
        raise DataError(f"unknown format {fmt!r}; use jsonl or csv")
    result: LoadResult[E] = LoadResult(path=str(p), format=fmt)
    seen: set[str] = set()
    try:
        with _open_text(p) as fh:
            rows = _iter_jsonl(fh) if fmt == "jsonl" else _iter_csv(fh, kind)
            for number, obj, error in rows:
                result.rows += 1
                if error is None:
                    if not isinstance(obj, dict):
                        error = f"expected a JSON object, got {type(obj).__name__}"
                    else:
                        try:
                            record = model.model_validate(obj)
                        except ValidationError as exc:
                            error = _short(exc)
                if error is not None:
                    result.bad_rows += 1
                    if len(result.errors) < MAX_REPORTED_ERRORS:
                        result.errors.append(RowError(number, error[:300]))
                    continue
                event_id = record.event_id  # type: ignore[attr-defined]
                if event_id in seen:
                    result.duplicates += 1
                    continue
                seen.add(event_id)
                result.records.append(record)
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


def load_readings(path: PathLike, fmt: Optional[str] = None) -> LoadResult[SensorReading]:
    return _load(path, SensorReading, "reading", fmt)


def load_outcomes(path: PathLike, fmt: Optional[str] = None) -> LoadResult[MaintenanceOutcome]:
    return _load(path, MaintenanceOutcome, "outcome", fmt)


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


def load_history(data: PathLike, outcomes: Optional[PathLike] = None) -> History:
    """Readings file plus (optional) outcomes file. Without outcomes every life is censored, so
    the model learns nothing about failures: the trainer refuses that (see train_maintenance)."""
    readings = load_readings(data)
    reports: list[LoadResult[Any]] = [readings]
    outs: list[MaintenanceOutcome] = []
    if outcomes is not None:
        loaded = load_outcomes(outcomes)
        reports.append(loaded)
        outs = loaded.records
    return History(readings=readings.records, outcomes=outs, reports=reports)


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
