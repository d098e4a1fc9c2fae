"""Simulated time against the wall clock: when a simulated event may be sent.

Simulators run faster than real time from a start in the past (at demo rates a machine reads
every simulated 30 minutes, twice a second). Their events must never be ahead of the wall clock:
workers dead-letter events stamped beyond now + MAX_FUTURE_SKEW_S. Nor can a stream start its
clock over in the past, because for a worker event time only moves forward: demand closes days
on a partition's newest event time (older sales become `sales_event_too_old`), the supply-chain
graph ages nodes and lots, and a machine's readings older than its newest change nothing.

What stays true however long a simulator runs: events go out in time order at the stream's
rate, but never before their own timestamp. A stream runs at full speed until its clock reaches
the present (how long that takes is its lookback over its speed: streams.py), then at the wall
clock's pace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

# Ground truth and calendars go out as they come; the rate applies to the event stream itself.
UNPACED_KINDS = frozenset({"outcome", "verdict"})


def is_paced(event: Any) -> bool:
    return event.kind not in UNPACED_KINDS


def event_time(event: Any) -> float:
    """A simulated event's `ts` (ISO 8601, as every simulator writes it) in seconds since the epoch."""
    return datetime.fromisoformat(event.value["ts"].replace("Z", "+00:00")).timestamp()


class SendSchedule:
    """When each event of one stream goes out, in wall-clock seconds since the epoch: the n-th
    paced event at `start + n / rate`, but never before the event's own timestamp and never
    before the event before it. The producer sleeps until then; a test computes a day of it
    without waiting."""

    def __init__(self, rate: float, start: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate!r}")
        self.rate, self.start = rate, start
        self.paced = 0
        self.last = start
        # The first moment an event had to wait for the wall clock: the stream's simulated
        # time reached the present and follows the wall clock from then on.
        self.caught_up_at: Optional[float] = None

    def next(self, event: Any) -> float:
        at = self.last
        if is_paced(event):
            at = max(at, self.start + self.paced / self.rate)
            self.paced += 1
        due = event_time(event)
        if due > at:
            at = due
            if self.caught_up_at is None:
                self.caught_up_at = at
        self.last = at
        return at
