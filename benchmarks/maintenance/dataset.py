"""A run-to-failure data set in the product's input layout: sensor readings and maintenance
outcomes as the JSON events producers send, split into a training history (what a user hands
to `stream-app train maintenance --data FILE --outcomes FILE`) and a held-out period of other
machines, later in time, that only the live scorer sees."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

Event = dict[str, Any]


def iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def at(start: datetime, hours: float) -> datetime:
    return start + timedelta(hours=float(hours))


@dataclass
class Part:
    """Readings and outcomes of one period (time-ordered when written)."""

    readings: list[Event] = field(default_factory=list)
    outcomes: list[Event] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(1 for o in self.outcomes if o["outcome"] == "failure")

    @property
    def machines(self) -> int:
        return len({r["machine_id"] for r in self.readings})


@dataclass
class Dataset:
    name: str
    description: str
    train: Part
    heldout: Part

    def write(self, directory: Path) -> dict[str, Path]:
        """JSON Lines files, one event per line, in event-time order; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "train_readings": directory / "train-readings.jsonl",
            "train_outcomes": directory / "train-outcomes.jsonl",
            "heldout_readings": directory / "heldout-readings.jsonl",
            "heldout_outcomes": directory / "heldout-outcomes.jsonl",
        }
        _write(paths["train_readings"], self.train.readings)
        _write(paths["train_outcomes"], self.train.outcomes)
        _write(paths["heldout_readings"], self.heldout.readings)
        _write(paths["heldout_outcomes"], self.heldout.outcomes)
        return paths

    def summary(self) -> str:
        t, h = self.train, self.heldout
        return (f"{self.name}: training {len(t.readings):,} readings of {t.machines} machines, {t.failures} failures; "
                f"held out {len(h.readings):,} readings of {h.machines} machines, {h.failures} failures")


def _write(path: Path, events: Iterable[Event]) -> None:
    ordered = sorted(events, key=lambda e: (e["ts"], e["event_id"]))
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in ordered)
