"""Daily totals per SKU x market for the series whose sales arrive on one partition, with that
partition's event-time watermark, duplicate check and day close.

Day close (event time, UTC days)
    The watermark is the newest event time seen on the partition. Day d closes once the
    watermark reaches the end of d plus the allowed lateness: every series of the partition
    then gets its forecast for d (`due_days`, then `close`), whether or not it sold on d. A
    partition without new events closes nothing (a day closes on evidence that it is over).
    One watermark per partition, not per series: a sparse series still closes its days.

Late events and duplicates
    within the lateness   its day is still open: counted like any other event
    after its day closed  counted into that day as a correction (`corrected`): the forecasts
                          from then on see it in their history; the forecast already published
                          for that day is not re-issued, and the next forecast of the series
                          reports how many such events it folded in (`late_pending`)
    older than correction_days before the oldest open day
                          rejected ("too_old"): the agent dead-letters it with code
                          `sales_event_too_old`, so nothing is dropped silently
    duplicate event_id    counted once: the first copy counts, later copies are reported as
                          duplicates (at-least-once delivery resends them). Ids are kept for
                          every day that can still take events (open days and the correction
                          window), so a duplicate can never count twice.

Memory: `ring_days` (history window + correction window + a few) float arrays per series, plus
the event ids of the correction window. `drop` forgets series (the scorer's state budget): their
slots are reused by the next new series, which starts with an empty history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

DAY_S = 86400
_NEVER = np.iinfo(np.int64).max  # first_day of a dropped series' slot: no day includes it
Outcome = Literal["counted", "corrected", "duplicate", "too_old"]


@dataclass
class ClosedDay:
    """What closing a day hands the forecaster: per series of the partition (slot order)."""

    day: int
    slots: np.ndarray  # (n,) every series that existed by the end of the day
    units: np.ndarray  # (n,) realised units of the day
    events: np.ndarray  # (n,) events counted into the day
    late_events: np.ndarray  # (n,) corrections folded in since the series' previous forecast


class PartitionDays:
    def __init__(self, history_days: int, correction_days: int, lateness_s: float, capacity: int = 64) -> None:
        if history_days < 1 or correction_days < 0 or lateness_s < 0:
            raise ValueError("history_days >= 1, correction_days >= 0 and lateness_s >= 0 are required")
        self.history_days = history_days
        self.correction_days = correction_days
        self.lateness_s = float(lateness_s)
        self.ring = max(history_days, correction_days + 1) + math.ceil(lateness_s / DAY_S) + 3
        self.slots: dict[str, int] = {}
        self.skus: list[str] = []
        self.markets: list[str] = []
        self.size = 0  # slots ever used (live series and free slots)
        self._free: list[int] = []  # slots of dropped series, reused first
        self.capacity = capacity
        self.units = np.zeros((capacity, self.ring))
        self.revenue = np.zeros((capacity, self.ring))
        self.promo = np.zeros((capacity, self.ring))
        self.events = np.zeros((capacity, self.ring), dtype=np.int64)
        self.first_day = np.zeros(capacity, dtype=np.int64)
        self.late_pending = np.zeros(capacity, dtype=np.int64)
        self.watermark = -math.inf
        self.next_close: Optional[int] = None  # the oldest open day
        self.newest_day: Optional[int] = None  # the newest day whose column is in use
        self.seen: dict[int, dict[str, int]] = {}  # day -> event_id -> slot

    # --- series --------------------------------------------------------------------------------
    def slot(self, sku: str, market: str, day: int) -> int:
        key = f"{sku}/{market}"
        slot = self.slots.get(key)
        if slot is None:
            if self._free:
                slot = self._free.pop()
                self.skus[slot], self.markets[slot] = sku, market
                for a in (self.units, self.revenue, self.promo, self.events):
                    a[slot] = 0
                self.late_pending[slot] = 0
            else:
                slot, self.size = self.size, self.size + 1
                if slot == self.capacity:
                    self._grow()
                self.skus.append(sku)
                self.markets.append(market)
            self.slots[key] = slot
            self.first_day[slot] = day
        elif day < self.first_day[slot]:
            self.first_day[slot] = day
        return slot

    def drop(self, keys: "list[str] | set[str]") -> list[int]:
        """Forget these series ("sku/market"); returns their slots (free for new series)."""
        freed = [self.slots.pop(k) for k in keys if k in self.slots]
        if not freed:
            return []
        index = np.array(freed, dtype=np.int64)
        self.first_day[index] = _NEVER
        self.late_pending[index] = 0
        gone = set(freed)
        for ids in self.seen.values():
            for event_id in [e for e, slot in ids.items() if slot in gone]:
                del ids[event_id]
        self._free.extend(freed)
        return freed

    def _grow(self) -> None:
        old, self.capacity = self.capacity, 2 * self.capacity
        for name in ("units", "revenue", "promo", "events", "first_day", "late_pending"):
            a = getattr(self, name)
            grown = np.zeros((self.capacity, *a.shape[1:]), dtype=a.dtype)
            grown[:old] = a
            setattr(self, name, grown)

    # --- events --------------------------------------------------------------------------------
    def oldest_accepted_day(self) -> Optional[int]:
        return None if self.next_close is None else self.next_close - self.correction_days

    def advance(self, ts: float) -> list[int]:
        """Move the watermark to event time `ts` (seconds); returns the days now due to close,
        oldest first (close each with `close` before adding the event)."""
        if self.next_close is None:
            self.next_close = int(ts // DAY_S)
            self.newest_day = self.next_close - 1
        if ts > self.watermark:
            self.watermark = ts
        last_due = int((self.watermark - self.lateness_s) // DAY_S) - 1  # the newest day whose end + lateness has passed
        return list(range(self.next_close, last_due + 1))

    def add(self, event_id: str, sku: str, market: str, ts: float, units: float, price: float, promo: bool) -> Outcome:
        """Count one event (call `advance` and close the due days first)."""
        day = int(ts // DAY_S)
        assert self.next_close is not None, "advance() first"
        if day < self.next_close - self.correction_days:
            return "too_old"
        ids = self.seen.setdefault(day, {})
        if event_id in ids:
            return "duplicate"
        slot = self.slot(sku, market, day)
        ids[event_id] = slot
        self._open_through(day)
        col = day % self.ring
        self.units[slot, col] += units
        self.revenue[slot, col] += units * price
        self.promo[slot, col] += units if promo else 0.0
        self.events[slot, col] += 1
        if day < self.next_close:
            self.late_pending[slot] += 1
            return "corrected"
        return "counted"

    def _open_through(self, day: int) -> None:
        assert self.newest_day is not None
        if day <= self.newest_day:
            return
        first = max(self.newest_day + 1, day - self.ring + 1)
        cols = np.arange(first, day + 1) % self.ring
        for a in (self.units, self.revenue, self.promo, self.events):
            a[:, cols] = 0
        self.newest_day = day

    # --- day close -----------------------------------------------------------------------------
    def closing(self, day: int) -> ClosedDay:
        """What closing `day` (the oldest open day) will hand over; changes nothing, so a
        forecast that fails leaves the day open. `close` commits it."""
        if day != self.next_close:
            raise ValueError(f"day {day} is not the oldest open day {self.next_close}")
        self._open_through(day)
        slots = np.flatnonzero(self.first_day[: self.size] <= day)
        col = day % self.ring
        return ClosedDay(day, slots, self.units[slots, col].copy(), self.events[slots, col].copy(), self.late_pending[slots].copy())

    def close(self, day: int) -> ClosedDay:
        """Close `day` (must be the oldest open day)."""
        closed = self.closing(day)
        self.late_pending[closed.slots] = 0
        self.next_close = day + 1
        floor = self.next_close - self.correction_days
        for old in [d for d in self.seen if d < floor]:
            del self.seen[old]
        return closed

    def window(self, slots: np.ndarray, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """History of `slots` over the `history_days` days ending with `day`: units, price (NaN
        without sales), promo units and active (day >= the series' first day), each (n, L)."""
        L = self.history_days
        days = day - L + 1 + np.arange(L)
        cols = days % self.ring
        units = self.units[np.ix_(slots, cols)]
        active = days[None, :] >= self.first_day[slots][:, None]
        # days older than the ring holds are unknown, not zero
        if self.newest_day is not None:
            active &= days[None, :] > self.newest_day - self.ring
        with np.errstate(invalid="ignore", divide="ignore"):
            price = np.where(units > 0, self.revenue[np.ix_(slots, cols)] / units, np.nan)
        return np.where(active, units, 0.0), price, np.where(active, self.promo[np.ix_(slots, cols)], 0.0), active

    def event_ids(self, slot: int, first_day: int, last_day: int, limit: int = 100) -> list[str]:
        """Event ids counted for `slot` on days first_day .. last_day (as long as they are kept)."""
        out: list[str] = []
        for day in range(first_day, last_day + 1):
            out += [e for e, s in self.seen.get(day, {}).items() if s == slot]
        return sorted(out)[:limit]

    def units_between(self, slots: np.ndarray, first_day: int, last_day: int) -> np.ndarray:
        cols = np.arange(first_day, last_day + 1) % self.ring
        return self.units[np.ix_(slots, cols)].sum(axis=1)
