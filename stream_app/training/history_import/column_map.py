"""`--map`: the user's column names for ours, so a historian or ERP export is read as it is.

    --map OURS=THEIRS            every file of the run that has the column THEIRS
    --map outcomes:OURS=THEIRS   only the --outcomes file (data:OURS=THEIRS: only --data)
    --map mapping.json           {"machine_id": "AssetTag", "outcomes": {"ts": "FailedAt"}}

OURS is a column of the file's layout (layouts.py), `sensors.NAME` / `features.NAME`, or for
readings a sensor the product knows by name. Each entry must name one of ours and must find its
column: a scoped one in its file, an unscoped one in at least one file. Only CSV and Parquet
columns are renamed: JSON Lines is the event layout itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence

from stream_app.training.history_import.errors import DataError
from stream_app.training.history_import.layouts import Layout, no_repeats

SCOPES = ("data", "outcomes")  # the train command's file options


class LoadedFile(Protocol):
    path: str
    format: str
    columns: list[str]
    mapped: dict[str, str]


@dataclass(frozen=True)
class Entry:
    ours: str
    theirs: str
    scope: Optional[str] = None  # None: every file that has the column

    def __str__(self) -> str:
        return f"--map {self.scope + ':' if self.scope else ''}{self.ours}={self.theirs}"


@dataclass(frozen=True)
class ColumnMap:
    entries: tuple[Entry, ...] = ()

    @classmethod
    def parse(cls, specs: Sequence[str]) -> "ColumnMap":
        entries: list[Entry] = []
        for spec in specs:
            if "=" in spec:
                ours, theirs = (part.strip() for part in spec.split("=", 1))
                scope, _, name = ours.rpartition(":")
                entries.append(_entry(name, theirs, scope or None, spec))
            elif Path(spec).is_file():
                entries += _from_json(Path(spec))
            elif spec.lower().endswith(".json"):
                raise DataError(f"--map {spec}: no such file")
            else:
                raise DataError(f"--map {spec}: expected OURS=THEIRS (e.g. machine_id=AssetTag) or a JSON file; "
                                f"{spec!r} is neither")
        seen: dict[tuple[Optional[str], str, str], Entry] = {}
        for e in entries:  # within one scope, each of ours and each of theirs once
            for key in ((e.scope, "ours", e.ours), (e.scope, "theirs", e.theirs)):
                if key in seen:
                    raise DataError(f"{seen[key]} and {e}: a column can be mapped once")
                seen[key] = e
        return cls(tuple(entries))

    def check(self, layouts: Mapping[str, Layout]) -> None:
        """Every entry names a column of ours, in a file this run reads. `layouts`: scope ->
        the layout of its file."""
        for e in self.entries:
            if e.scope is not None and e.scope not in layouts:
                raise DataError(f"{e}: this run has no --{e.scope} file")
            candidates = [layouts[e.scope]] if e.scope else list(layouts.values())
            if not any(layout.accepts(e.ours) for layout in candidates):
                known = "; ".join(layout.columns_text() for layout in candidates)
                raise DataError(f"{e}: {e.ours!r} is not one of our columns ({known})")

    def resolve(self, scope: str, layout: Layout, columns: Sequence[str], where: str) -> dict[str, str]:
        """The file's column -> ours, for the file of `scope`; DataError unless the file then has
        every column the layout requires, once each."""
        listed = f"its columns: {', '.join(columns)}"
        no_repeats(list(columns), where, "the header repeats column(s)")
        scoped = [e for e in self.entries if e.scope == scope]
        for e in scoped:
            if e.theirs not in columns:
                raise DataError(f"{e}: {where} has no column {e.theirs!r}; {listed}")
        taken = {e.ours for e in scoped}
        shared = [e for e in self.entries if e.scope is None and e.ours not in taken and layout.accepts(e.ours)]
        renames = {e.theirs: e.ours for e in scoped + shared if e.theirs in columns}
        names = [renames.get(c, c) for c in columns]
        no_repeats(names, where, "--map gives more than one column the name(s)")
        missing = [r for r in layout.required if r not in names]
        for e in shared:
            if e.ours in missing:  # the entry was meant for this file too, and finds nothing here
                raise DataError(f"{e}: {where} has no column {e.theirs!r} (--map {scope}:{e.ours}=COLUMN "
                                f"names one for this file only); {listed}")
        if missing:
            raise DataError(f"{where}: no column {', '.join(missing)}, which {layout.role} need (name yours with "
                            f"--map {missing[0]}=COLUMN); {listed}")
        return renames

    def refuse_for_events(self, scope: str, where: str) -> None:
        """A JSON Lines file is the event layout: there are no columns to rename."""
        for e in self.entries:
            if e.scope == scope:
                raise DataError(f"{e}: {where} is JSON Lines, read in the event layout; --map renames the "
                                "columns of CSV and Parquet files")

    def check_used(self, files: Sequence[LoadedFile]) -> None:
        """An entry no file used names a column that is not there (a typo, or the wrong file)."""
        for e in self.entries:
            if e.scope is None and not any(f.mapped.get(e.ours) == e.theirs for f in files):
                where = "; ".join(f"{f.path}: " + (", ".join(f.columns) if f.format != "jsonl" else "JSON Lines")
                                  for f in files)
                raise DataError(f"{e}: no file has a column {e.theirs!r} for it ({where})")


def _entry(ours: str, theirs: str, scope: Optional[str], spec: str) -> Entry:
    if not ours or not theirs:
        raise DataError(f"--map {spec}: expected OURS=THEIRS with both names, e.g. machine_id=AssetTag")
    if scope is not None and scope not in SCOPES:
        raise DataError(f"--map {spec}: {scope!r} before ':' must be {' or '.join(SCOPES)} (the file it applies to)")
    return Entry(ours, theirs, scope)


def _from_json(path: Path) -> list[Entry]:
    try:
        found: Any = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"--map {path}: not a readable JSON file ({exc})") from None
    if not isinstance(found, dict):
        raise DataError(f"--map {path}: expected a JSON object of our column -> yours")
    entries = []
    for key, value in found.items():
        if key in SCOPES and isinstance(value, dict):
            entries += [_entry(k, _name(path, x), key, f"{key}:{k}={x}") for k, x in value.items()]
        else:
            entries.append(_entry(key, _name(path, value), None, f"{key}={value}"))
    return entries


def _name(path: Path, value: Any) -> str:
    if not isinstance(value, str):
        raise DataError(f"--map {path}: every column name must be text, got {value!r}")
    return value.strip()
