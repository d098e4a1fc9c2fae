"""Simulated clocks against the wall clock: the send schedule, the producer that follows it, and a
fleet that starts healthy."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any

import pytest

from stream_app.settings import Settings
from stream_app.simulation import producer as producer_module
from stream_app.simulation.clock import SendSchedule, event_time
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator, SimEvent
from stream_app.simulation.streams import STREAMS


def _event(kind: str, epoch: float) -> SimEvent:
    ts = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return SimEvent(kind, "k", {"event_id": f"e-{epoch}", "ts": ts})  # type: ignore[arg-type]


def test_schedule_paces_events_and_never_sends_one_before_its_timestamp() -> None:
    start = 1_000_000.0
    s = SendSchedule(rate=10.0, start=start)
    past = [s.next(_event("reading", start - 3600)) for _ in range(3)]
    assert past == [start, start + 0.1, start + 0.2]  # at the rate
    assert s.next(_event("outcome", start - 60)) == start + 0.2  # unpaced: at once, not counted
    assert s.caught_up_at is None
    assert s.next(_event("reading", start + 50)) == start + 50  # ahead of the wall clock: waits for it
    assert s.caught_up_at == start + 50
    assert s.next(_event("reading", start + 10)) == start + 50  # never before the event before it
    assert s.next(_event("reading", start + 51)) == start + 51
    with pytest.raises(ValueError):
        SendSchedule(rate=0.0, start=start)


class _RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[float, dict[str, Any]]] = []

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes, key: bytes) -> None:
        import json

        self.sent.append((time.time(), json.loads(value)))


def test_producer_holds_an_event_until_the_wall_clock_reaches_its_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _RecordingProducer()
    monkeypatch.setattr(producer_module, "json_producer", lambda bootstrap: fake)
    now = time.time()
    events = [("t", _event("reading", now - 7200 + i)) for i in range(5)]
    events += [("t", _event("reading", now + 0.3 + 0.1 * i)) for i in range(3)]
    caught_up: list[float] = []
    stats = asyncio.run(producer_module.produce(Settings(), iter(events), rate=1000.0, on_caught_up=caught_up.append))
    assert sum(stats.sent.values()) == 8
    for sent_at, value in fake.sent:
        assert sent_at >= event_time(SimEvent("reading", "k", value)) - 0.005  # timer granularity
    assert fake.sent[4][0] - now < 0.2  # the past went out at the rate, without waiting
    assert len(caught_up) == 1 and caught_up[0] == pytest.approx(now + 0.3, abs=0.01)


def test_producer_stops_at_its_duration_rather_than_waiting_for_a_far_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _RecordingProducer()
    monkeypatch.setattr(producer_module, "json_producer", lambda bootstrap: fake)
    events = iter([("t", _event("reading", time.time() + 3600))])
    started = time.monotonic()
    asyncio.run(producer_module.produce(Settings(), events, rate=10.0, duration=0.5))
    assert time.monotonic() - started < 0.4 and not fake.sent


def test_a_healthy_start_staggers_ages_and_lets_the_first_failure_wait_for_a_whole_fault() -> None:
    n = 40
    config = FleetConfig(n_machines=n, seed=3, healthy_start=True)
    events = list(islice(FleetSimulator(config).live(), 400 * n))
    first_ages = [e.value["cycle"] for e in events[:n]]
    assert len(set(first_ages)) > n // 2  # staggered, not all new
    readings_before: dict[str, int] = {}
    failed: set[str] = set()
    for e in events:
        mid = e.value["machine_id"]
        if mid in failed:
            continue
        if e.kind == "reading":
            readings_before[mid] = readings_before.get(mid, 0) + 1
        else:
            failed.add(mid)
            assert readings_before[mid] >= 48, (mid, readings_before[mid])  # 24 h of its readings at least
    assert len(failed) > n // 4
    first_failure = next(e for e in events if e.kind == "outcome")
    assert event_time(first_failure) - event_time(events[0]) >= 24 * 3600
    # The default live stream still starts some machines near failure (for other users of it).
    plain = list(islice(FleetSimulator(FleetConfig(n_machines=n, seed=3)).live(), 24 * n))
    assert any(e.kind == "outcome" for e in plain)


@pytest.mark.parametrize("name", ["maintenance", "supply-chain", "demand"])
def test_live_streams_start_their_clock_a_lookback_before_now(name: str) -> None:
    stream = STREAMS[name]
    first = next(e for _, e in stream.live(Settings(), 1, None) if e.kind in ("reading", "transaction"))
    back = datetime.now(timezone.utc) - datetime.fromtimestamp(event_time(first), timezone.utc)
    assert stream.lookback - timedelta(days=2) < back <= stream.lookback + timedelta(days=1)


def test_failures_are_reported_after_the_last_readings_were_sent_and_before_the_machine_runs_again() -> None:
    from stream_app.simulation.producer import REPORT_DELAY_S, maintenance_events

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    events = [e for _, e in islice(maintenance_events(Settings(), 10, seed=4, start=start), 20_000)]
    last_reading: dict[str, SimEvent] = {}
    reported: set[str] = set()
    outcomes = 0
    for i, e in enumerate(events):
        machine = e.value["machine_id"]
        if e.kind == "outcome":
            outcomes += 1
            assert event_time(events[i + 1]) >= event_time(e) + REPORT_DELAY_S  # the stream had moved on
            assert event_time(last_reading[machine]) < event_time(e)
            reported.add(machine)
        else:
            if machine in reported:  # the first reading after its failure report: a new life
                assert e.value["cycle"] == 0
                reported.discard(machine)
            elif machine in last_reading:
                assert e.value["cycle"] == last_reading[machine].value["cycle"] + 1  # no life ends unreported
            last_reading[machine] = e
    assert outcomes >= 5
