"""Daily aggregation of one partition's sales: counting, duplicates, lateness, corrections, the
event-time close, and agreement with a plain dictionary over a long random stream."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest

from stream_app.scoring.demand_aggregation import DAY_S, PartitionDays

D0 = 20_000  # a day index
LATENESS = 6 * 3600


def _ts(day: int, hour: float) -> float:
    return (D0 + day) * DAY_S + hour * 3600


def _feed(days: PartitionDays, event_id: str, day: int, hour: float, units: float = 1.0, sku: str = "a", market: str = "DE") -> tuple[list[int], str]:
    due = days.advance(_ts(day, hour))
    for d in due:
        days.close(d)
    return due, days.add(event_id, sku, market, _ts(day, hour), units, 10.0, False)


def test_a_day_closes_once_the_watermark_passes_its_end_plus_the_lateness() -> None:
    days = PartitionDays(history_days=30, correction_days=7, lateness_s=LATENESS)
    assert _feed(days, "e1", 0, 10) == ([], "counted")
    assert _feed(days, "e2", 1, 5.9) == ([], "counted")  # day 0 still open at 05:54 of day 1
    due, outcome = _feed(days, "e3", 1, 6.0)
    assert [d - D0 for d in due] == [0] and outcome == "counted"
    assert days.next_close == D0 + 1


def test_late_within_lateness_counts_in_its_day_and_after_close_is_a_correction() -> None:
    days = PartitionDays(history_days=30, correction_days=7, lateness_s=LATENESS)
    _feed(days, "e1", 0, 10)
    _feed(days, "e2", 1, 3)
    assert _feed(days, "late-ok", 0, 23)[1] == "counted"  # 3 h after, within 6 h
    closed = days.closing(D0)
    assert closed.units.tolist() == [2.0] and closed.events.tolist() == [2]
    _feed(days, "e3", 1, 7)  # closes day 0
    assert _feed(days, "late", 0, 22)[1] == "corrected"
    assert days.units[0, D0 % days.ring] == 3.0
    closed = days.close(D0 + 1) if days.advance(_ts(2, 7)) else None
    assert closed is not None and closed.late_events.tolist() == [1]
    assert days.late_pending[0] == 0  # reported once


def test_duplicates_count_once_and_events_older_than_the_correction_window_are_refused() -> None:
    days = PartitionDays(history_days=30, correction_days=3, lateness_s=LATENESS)
    _feed(days, "e1", 0, 10, units=5)
    assert _feed(days, "e1", 0, 10, units=5)[1] == "duplicate"
    _feed(days, "e9", 10, 12)
    assert days.next_close == D0 + 10
    assert _feed(days, "old", 6, 12)[1] == "too_old"  # before day 7 = 10 - 3
    assert _feed(days, "ok", 7, 12)[1] == "corrected"
    assert _feed(days, "ok", 7, 12)[1] == "duplicate"
    assert days.units[0, D0 % days.ring] == 5.0


def test_every_series_of_the_partition_closes_including_the_ones_without_sales_that_day() -> None:
    days = PartitionDays(history_days=30, correction_days=3, lateness_s=0)
    _feed(days, "a0", 0, 1, sku="a")
    _feed(days, "b0", 0, 2, sku="b", units=4)
    _feed(days, "a1", 1, 1, sku="a")
    closed = days.close(D0 + 1) if days.advance(_ts(2, 0)) else None
    assert closed is not None and closed.units.tolist() == [1.0, 0.0]
    units, price, promo, active = days.window(closed.slots, D0 + 1)
    assert units.shape == (2, 30) and active[:, -2:].all() and not active[:, :-2].any()
    assert units[:, -2:].tolist() == [[1.0, 1.0], [4.0, 0.0]]
    assert np.isnan(price[1, -1]) and price[0, -1] == 10.0


def test_event_ids_of_a_series_and_day_are_kept_for_alerts() -> None:
    days = PartitionDays(history_days=30, correction_days=3, lateness_s=0)
    _feed(days, "x2", 0, 1, sku="a")
    _feed(days, "x1", 0, 2, sku="a")
    _feed(days, "y1", 0, 3, sku="b")
    assert days.event_ids(days.slots["a/DE"], D0, D0) == ["x1", "x2"]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_long_shuffled_stream_agrees_with_a_plain_dictionary(seed: int) -> None:
    """200 days, 5 series, events up to 3 h late, resends: every day's close equals the sum of
    its distinct events that arrived by then, across many wraps of the ring buffer."""
    rng = random.Random(seed)
    days = PartitionDays(history_days=20, correction_days=2, lateness_s=LATENESS)
    stream = []
    for day in range(200):
        for k in range(rng.randint(0, 12)):
            stream.append((_ts(day, rng.uniform(0, 24)), f"e{day}-{k}", rng.choice("abcde"), float(rng.randint(1, 3))))
    arrival = sorted(stream, key=lambda e: e[0] + rng.uniform(0, 3 * 3600))
    arrival += rng.sample(arrival, 50)  # resends, late
    truth: dict[tuple[str, int], float] = defaultdict(float)
    seen: set[str] = set()
    closed_at: dict[int, dict[str, float]] = {}
    for ts, eid, sku, units in arrival:
        for d in days.advance(ts):
            c = days.close(d)
            closed_at[d] = {days.skus[s]: u for s, u in zip(c.slots, c.units)}
            expected = {sku_: v for (sku_, dd), v in truth.items() if dd == d}
            assert {k: v for k, v in closed_at[d].items() if v} == expected, d
        outcome = days.add(eid, sku, "DE", ts, units, 1.0, False)
        if eid in seen:
            assert outcome in ("duplicate", "too_old")
            continue
        if outcome != "too_old":
            seen.add(eid)
            truth[(sku, int(ts // DAY_S))] += units
    assert len(closed_at) > 190
