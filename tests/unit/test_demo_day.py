"""A day of `stream-app demo`, without waiting: every message the three simulators would send over
24 hours of wall time, at the demo's rates, decoded by the worker's own intake at the moment it
would be sent. Nothing may be dead-lettered but what the simulators send as bad input on purpose."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Optional

import pytest

import stream_app.decoding as decoding
from schemas import CalendarEntry, MaintenanceOutcome, SalesEvent, SensorReading, SupplyChainTransaction, SupplyChainVerdict
from stream_app.intake import RawMessage, decode_batch, limits_from_settings
from stream_app.kafka_io import encode_json
from stream_app.settings import Settings
from stream_app.simulation.clock import SendSchedule, event_time
from stream_app.simulation.streams import STREAMS

DAY_S = 86400.0
CHUNK = 500


class _SendClock(datetime):
    """The clock the worker's future-timestamp check reads (decoding.py: `datetime.now`), set to
    when the message would be sent. A chunk is decoded at its first message's send time: earlier
    than the rest, so the check is, if anything, stricter."""

    at = 0.0

    @classmethod
    def now(cls, tz: Optional[Any] = None) -> datetime:  # type: ignore[override]
        return datetime.fromtimestamp(cls.at, tz or timezone.utc)


def _models(settings: Settings) -> dict[str, Any]:
    t = settings.topics
    return {t.sensor_readings: SensorReading, t.maintenance_outcomes: MaintenanceOutcome,
            t.supply_chain_transactions: SupplyChainTransaction, t.supply_chain_verdicts: SupplyChainVerdict,
            t.sales_events: SalesEvent, t.demand_calendar: CalendarEntry}


def _on_purpose(letter: Any) -> bool:
    """The bad input the simulators send deliberately: demand's returns sent as negative units."""
    return letter.source_topic == "sales-events" and letter.error_code == "invalid_fields" and '"units":-' in letter.payload


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maintenance", "supply-chain", "demand"])
def test_a_day_of_demo_sends_nothing_the_worker_refuses(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    models, limits = _models(settings), limits_from_settings(settings)
    monkeypatch.setattr(decoding, "datetime", _SendClock)
    stream = STREAMS[name]
    t0 = datetime.now(timezone.utc).timestamp()
    start = datetime.fromtimestamp(t0, timezone.utc) - stream.lookback
    schedule = SendSchedule(stream.demo_rate, t0)
    events = stream.live(settings, 11, 40 if name == "maintenance" else None, start)

    sent: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    on_purpose = 0
    newest_sale, last_at = -math.inf, t0
    chunks: dict[str, list[RawMessage]] = {}
    chunk_at: dict[str, float] = {}

    def decode(topic: str) -> None:
        nonlocal on_purpose
        _SendClock.at = chunk_at[topic]
        for letter in decode_batch(chunks.pop(topic), models[topic], limits).dead_letters:
            if _on_purpose(letter):
                on_purpose += 1
            else:
                refused[f"{topic}: {letter.error_code}: {letter.error_message[:120]}"] += 1

    for topic, event in events:
        at = schedule.next(event)
        if at > t0 + DAY_S:
            break
        ts = event_time(event)
        assert ts <= at, f"{event.value['event_id']} sent {ts - at:.0f} s before its own timestamp"
        if topic == settings.topics.sales_events:
            # The demand agent refuses sales older than correction_days before a partition's
            # oldest open day; that day trails the newest sale of the whole stream.
            newest_sale = max(newest_sale, ts)
            oldest_open = math.floor((newest_sale - settings.demand.allowed_lateness_s) / DAY_S)
            assert ts // DAY_S >= oldest_open - settings.demand.correction_days, event.value
        sent[topic] += 1
        last_at = at
        message = RawMessage(topic, 0, sent[topic], event.key.encode(), encode_json(event.value))
        chunk_at.setdefault(topic, at)
        chunks.setdefault(topic, []).append(message)
        if len(chunks[topic]) >= CHUNK:
            decode(topic)
            del chunk_at[topic]
    for topic in list(chunks):
        decode(topic)

    assert not refused, refused.most_common(5)
    assert sum(sent.values()) > 100_000, sent
    # Full speed for over an hour at the demo's rates, then the wall clock's pace to the day's end.
    assert schedule.caught_up_at is not None and schedule.caught_up_at - t0 > 3600
    assert last_at > t0 + DAY_S - 6 * 3600
    if name == "demand":
        assert on_purpose > 0  # the returns are there, and recognised as the ones sent on purpose
