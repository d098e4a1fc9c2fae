"""A demand data set in the product's input layout: sales events (schemas.sales.SalesEvent) and
the known-future calendar (CalendarEntry) as the JSON a producer sends, split at
`heldout_start` into the training history (what a user hands to `stream-app train demand --data
SALES --outcomes CALENDAR`) and the held-out days that only the live scorer sees, in time order.

Every day's sales of a series are one event stamped at noon UTC of that day (an ERP's daily
export), so the UTC day the product sums it into is the day it was sold. A day without sales has
no event: the product counts it as zero once the series has sold once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

Event = dict[str, Any]


def noon(day: date) -> str:
    return datetime.combine(day, time(12), tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def sale(sku: str, market: str, day: date, units: float, unit_price: float, promo: bool = False,
         campaign_id: Optional[str] = None) -> Event:
    event: Event = {"event_id": f"{sku}/{market}/{day.isoformat()}", "ts": noon(day), "sku": sku, "market": market,
                    "units": float(units), "unit_price": round(float(unit_price), 2), "promo": promo}
    if campaign_id:
        event["campaign_id"] = campaign_id
    return event


def calendar_entry(kind: str, market: str, start: date, end: date, published: date, intensity: float = 1.0,
                   sku: Optional[str] = None, label: str = "") -> Event:
    """`label` names the entry in its event_id (the contract has no name field)."""
    suffix = f"-{label}" if label else ""
    return {"event_id": f"{kind}-{market}-{sku or 'all'}-{start.isoformat()}{suffix}"[:128], "ts": noon(published),
            "kind": kind, "market": market, "sku": sku, "start": start.isoformat(), "end": end.isoformat(),
            "intensity": round(float(intensity), 3)}


@dataclass
class Dataset:
    name: str
    description: str
    sales: list[Event]  # the training history
    heldout: list[Event]  # later days, for the live scorer only
    calendar: list[Event]  # covers the held-out days and a horizon beyond
    heldout_start: date
    heldout_end: date  # the last held-out day

    @property
    def heldout_days(self) -> int:
        return (self.heldout_end - self.heldout_start).days + 1

    @property
    def series(self) -> int:
        return len({(e["sku"], e["market"]) for e in self.sales} | {(e["sku"], e["market"]) for e in self.heldout})

    def write(self, directory: Path) -> dict[str, Path]:
        """JSON Lines, one event per line, in event-time order; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"sales": directory / "train-sales.jsonl", "calendar": directory / "calendar.jsonl",
                 "heldout": directory / "heldout-sales.jsonl"}
        _write(paths["sales"], self.sales)
        _write(paths["calendar"], self.calendar)
        _write(paths["heldout"], self.heldout)
        return paths

    def summary(self) -> str:
        first = min(e["ts"] for e in self.sales)[:10]
        return (f"{self.name}: {self.series} series, training {len(self.sales):,} sales events {first} to "
                f"{self.heldout_start - timedelta(days=1)}, held out {len(self.heldout):,} events over "
                f"{self.heldout_days} days to {self.heldout_end}, {len(self.calendar):,} calendar entries")


def split(events: Iterable[Event], heldout_start: date) -> tuple[list[Event], list[Event]]:
    cut = noon(heldout_start)[:10]
    train, held = [], []
    for e in events:
        (held if e["ts"][:10] >= cut else train).append(e)
    return train, held


def _write(path: Path, events: Iterable[Event]) -> None:
    ordered = sorted(events, key=lambda e: (e["ts"], e["event_id"]))
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in ordered)
