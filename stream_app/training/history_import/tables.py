"""A CSV or Parquet history file as a table: its column names and its rows of cells, numbered as
a person finds them (CSV: the file's line where the row ends; Parquet: the row, from 1).

CSV: the first line is the header; the delimiter is a comma, or a semicolon, tab or bar when the
header holds no comma (many European and historian exports). Blank rows are skipped; a row with
another number of cells than the header is a bad row. Parquet is read with pyarrow (the
`stream-app[parquet]` extra), one record batch at a time; nanosecond timestamps are cut to
microseconds (what Python's datetime holds)."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Optional

from stream_app.training.history_import.errors import DataError

# (row number, cells or None, error or None)
Row = tuple[int, Optional[list[Any]], Optional[str]]
_BATCH_ROWS = 16_384
_DELIMITERS = ",;\t|"


@dataclass
class Table:
    columns: list[str]
    rows: Iterator[Row]
    unit: str  # what a row number counts: "line" (CSV) or "row" (Parquet)


def csv_table(fh: IO[str]) -> Table:
    first = fh.readline()
    delimiter = next((d for d in _DELIMITERS if d in first), ",")
    reader = csv.reader(itertools.chain([first], fh), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return Table([], iter(()), "line")
    columns = [h.strip() for h in header]

    def rows() -> Iterator[Row]:
        for cells in reader:
            number = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(columns):
                yield number, None, f"has {len(cells)} cells, header has {len(columns)}"
                continue
            yield number, cells, None

    return Table(columns, rows(), "line")


def parquet_table(path: Path) -> Table:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install 'stream-app[parquet]'") from None
    try:
        source = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    columns = list(source.schema_arrow.names)

    def rows() -> Iterator[Row]:
        number = 0
        try:
            for batch in source.iter_batches(batch_size=_BATCH_ROWS):
                values = [_python(batch.column(i), pa) for i in range(batch.num_columns)]
                for cells in zip(*values):
                    number += 1
                    yield number, list(cells), None
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: unreadable Parquet after row {number} ({exc})") from None

    return Table(columns, rows(), "row")


def _python(column: Any, pa: Any) -> list[Any]:
    kind = column.type
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        column = column.cast(pa.timestamp("us", kind.tz), safe=False)
    return column.to_pylist()
