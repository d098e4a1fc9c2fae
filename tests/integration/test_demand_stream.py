"""The whole demand path on a real broker: a real producer (librdkafka) sends 40 days of sales for
three series (with duplicates, a late sale within the allowed lateness, one after its day closed,
one too old, bad input and a spike) and a calendar; a real worker process rolls them into days,
forecasts at each day's close and alerts on the spike; the outputs are read back from the topics."""

from __future__ import annotations

import json
import random
import signal
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from schemas import Alert, DeadLetter, DemandForecast, Explanation, deterministic_id
from stream_app.registry import ModelRegistry
from tests.conftest import wait_for
from tests.integration.kafka_clients import OutputReader, committed_offsets, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
OUTPUT_TOPICS = ["demand-forecasts", "alerts", "explanations", "dead-letters"]
SERIES = [("bk-9001", "DE", 6), ("bk-9002", "US", 10), ("bk-9003", "JP", 3)]
DAYS = 40
SPIKE_DAY, SPIKE_UNITS = 36, 60
START = datetime.now(timezone.utc).date() - timedelta(days=DAYS + 30)  # well in the past


@pytest.fixture(scope="module")
def demand_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stream_app.training.demand import TrainConfig, simulated_history, train_demand

    root = tmp_path_factory.mktemp("demand_models")
    sales, calendar = simulated_history(n_skus=10, days=400, seed=3)
    # A quick training need not beat the rule on validation; the test exercises the model's path.
    train_demand(ModelRegistry(root), sales, calendar, TrainConfig.quick(serve="model"))
    return root


def _ts(day: int, seconds: float) -> str:
    moment = datetime.combine(START, datetime.min.time(), tzinfo=timezone.utc) + timedelta(days=day, seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sale(sku: str, market: str, day: int, n: int, seconds: float, units: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"{sku}-{market}-{day}-{n}", "ts": _ts(day, seconds), "sku": sku, "market": market,
            "units": units, "unit_price": 12.5, **extra}


def _daily_sales() -> dict[int, list[dict[str, Any]]]:
    """Each series' sales per day: a weekly pattern with noise, and a spike of bk-9001 on SPIKE_DAY."""
    rng = random.Random(5)
    per_day: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for sku, market, base in SERIES:
        for day in range(DAYS):
            n = max(0, int(base * (1.4 if (START + timedelta(days=day)).weekday() >= 5 else 1.0) + rng.randint(-2, 2)))
            if sku == "bk-9001" and day == SPIKE_DAY:
                n += SPIKE_UNITS
            per_day[day] += [_sale(sku, market, day, k, 600 + k * (80000 / max(n, 1))) for k in range(n)]
    for day in per_day:
        per_day[day].sort(key=lambda e: e["ts"])
    return per_day


def _truth(per_day: dict[int, list[dict[str, Any]]]) -> dict[tuple[str, int], list[float]]:
    truth: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0])
    for day, events in per_day.items():
        for e in events:
            t = truth[(f"{e['sku']}/{e['market']}", day)]
            t[0] += 1
            t[1] += e["units"]
    return truth


def _stream() -> tuple[list[dict[str, Any]], dict[tuple[str, int], tuple[int, float]], dict[str, Any]]:
    """(messages in send order, truth per (series, day) at its close: (events, units), specials)."""
    per_day = _daily_sales()
    late_ok = _sale("bk-9002", "US", 10, 900, 86000)  # 23:53 on day 10, sent after day 11 03:00
    late_corrected = _sale("bk-9003", "JP", 15, 901, 43200)  # sent after day 20: day 15 closed long ago
    too_old = _sale("bk-9001", "DE", 2, 902, 43200)  # sent after day 30: beyond the correction window
    messages: list[dict[str, Any]] = []
    for day in range(DAYS):
        events = per_day[day]
        if day == 11:
            early = [e for e in events if e["ts"] <= _ts(11, 3 * 3600)]
            events = early + [late_ok] + events[len(early):]
        messages += events
        if day == 20:
            messages.append(late_corrected)
        if day == 25:
            messages += events[:15]  # at-least-once resends
        if day == 30:
            messages.append(too_old)
    truth = _truth(per_day)
    truth[("bk-9002/US", 10)][0] += 1
    truth[("bk-9002/US", 10)][1] += 1.0
    return messages, {k: (int(v[0]), v[1]) for k, v in truth.items()}, {"late_ok": late_ok, "too_old": too_old}


def _send(bootstrap: str, messages: list[dict[str, Any]]) -> None:
    produce(bootstrap, "sales-events", [(f"{m['sku']}/{m['market']}".encode(), json.dumps(m).encode()) for m in messages])


def _closed(reader: OutputReader) -> set[tuple[str, int]]:
    return {(f["series_id"], (date.fromisoformat(f["day"]) - START).days) for f in reader.messages["demand-forecasts"]}


BAD = [
    (b"bk-9001/DE", json.dumps(_sale("bk-9001", "DE", 3, 990, 100, units=-2.0)).encode(), "invalid_fields"),  # a return as negative units
    (b"bk-9001/XX", json.dumps(_sale("bk-9001", "XX", 3, 991, 100)).encode(), "unknown_market"),
    (b"bk-9001/DE", b"{not json", "not_json"),
]
CALENDAR = [
    {"event_id": "cal-1", "ts": _ts(0, 0), "kind": "campaign", "market": "US", "sku": "bk-9002",
     "start": (START + timedelta(days=38)).isoformat(), "end": (START + timedelta(days=45)).isoformat(), "intensity": 1.2},
    {"event_id": "cal-bad", "ts": _ts(0, 0), "market": "US", "start": START.isoformat(), "end": START.isoformat()},
]


def test_sales_in_daily_forecasts_interval_alerts_and_dead_letters_out(broker, start_worker, demand_model_dir: Path) -> None:
    messages, truth, special = _stream()
    produce(broker.bootstrap, "demand-calendar", [(b"US", json.dumps(c).encode()) for c in CALENDAR])
    worker = start_worker(demand_model_dir, DEMAND__CORRECTION_DAYS="10", DEMAND__CALENDAR_WAIT_S="5")
    _send(broker.bootstrap, messages[:400])
    produce(broker.bootstrap, "sales-events", [(key, value) for key, value, _ in BAD])
    _send(broker.bootstrap, messages[400:])

    closed_days = range(DAYS - 1)  # the last day stays open: nothing after it closes it
    expected = {(f"{sku}/{market}", d) for sku, market, _ in SERIES for d in closed_days}
    reader = OutputReader(broker.bootstrap, OUTPUT_TOPICS, PARTITIONS)
    try:
        def complete(r: OutputReader) -> bool:
            return expected <= _closed(r) and len(r.messages["dead-letters"]) >= len(BAD) + 2
        assert reader.until(complete, timeout=75, alive=worker.alive), f"outputs incomplete; worker log:\n{worker.log()[-4000:]}"
        reader.poll(1.0)
    finally:
        reader.close()
    assert worker.alive(), "the worker died"

    forecasts = {}
    for raw in reader.messages["demand-forecasts"]:
        f = DemandForecast.model_validate(raw)
        forecasts.setdefault((f.series_id, (f.day - START).days), f)  # at-least-once: duplicates share the id
    assert set(forecasts) == expected
    for (series, day), f in forecasts.items():
        assert f.forecast_id == deterministic_id("demand-forecast", f.sku, f.market, (START + timedelta(days=day)).isoformat(), "v1")
        # every sale counted once: duplicates not twice, the late one within the lateness in its day
        assert (f.events_counted, f.units) == truth.get((series, day), (0, 0.0)), (series, day)
        assert len(f.horizon) == 30 and all(h.p10 <= h.p50 <= h.p90 for h in f.horizon)
        assert f.total_7d.p10 <= f.total_7d.p50 <= f.total_7d.p90 and f.total_30d.days == 30
        assert 0.0 <= f.confidence <= 1.0 and f.reason
        expected_source = "rule" if day < 13 else "model"  # 14 days of history before the model decides
        assert f.decision_source == expected_source, (series, day, f.reason)
    assert "days of history < 14" in forecasts[("bk-9001/DE", 3)].reason
    # the sale that came after its day had closed corrected that day and says so in the next forecast
    assert forecasts[("bk-9003/JP", 20)].late_events == 1 and "late sales events" in forecasts[("bk-9003/JP", 20)].reason

    letters = [DeadLetter.model_validate(d) for d in reader.messages["dead-letters"]]
    sales_codes = sorted(d.error_code for d in letters if d.source_topic == "sales-events")
    assert sales_codes == sorted([code for _, _, code in BAD] + ["sales_event_too_old"])
    too_old = next(d for d in letters if d.error_code == "sales_event_too_old")
    assert json.loads(too_old.payload)["event_id"] == special["too_old"]["event_id"] and too_old.offset is not None
    assert [d.error_code for d in letters if d.source_topic == "demand-calendar"] == ["invalid_fields"]

    alerts = [Alert.model_validate(a) for a in reader.messages["alerts"]]
    explanations = {e["alert_id"]: Explanation.model_validate(e) for e in reader.messages["explanations"]}
    spike = [a for a in alerts if a.kind == "demand.stockout_risk" and a.entity_id == "bk-9001/DE"
             and a.event_ts.date() == START + timedelta(days=SPIKE_DAY + 1) and " sold on " in a.reason]
    assert spike, f"no stock-out alert on the spike; alerts: {[(a.kind, a.entity_id, a.event_ts) for a in alerts]}"
    alert = spike[0]
    assert alert.decision_source == "model" and alert.model_version == "v1" and alert.event_ids
    assert all(e.startswith(f"bk-9001-DE-{SPIKE_DAY}-") for e in alert.event_ids)
    explanation = explanations[alert.alert_id]
    assert explanation.time_steps and explanation.rules and explanation.rules[0].fired
    assert "above P90" in explanation.text


def test_a_worker_killed_mid_stream_is_replaced_by_one_that_rebuilds_the_history(broker, start_worker, demand_model_dir: Path) -> None:
    """Kill -9 after 20 days; the next worker replays the partitions' retained sales up to the
    committed offsets, so its forecasts see the whole history and count every sale once."""
    per_day = _daily_sales()
    truth = _truth(per_day)
    first = start_worker(demand_model_dir, DEMAND__CALENDAR_WAIT_S="1")
    _send(broker.bootstrap, [e for day in range(20) for e in per_day[day]])
    reader = OutputReader(broker.bootstrap, OUTPUT_TOPICS, PARTITIONS)
    try:
        before = {(f"{sku}/{market}", d) for sku, market, _ in SERIES for d in range(19)}
        assert reader.until(lambda r: before <= _closed(r), timeout=60, alive=first.alive), first.log()[-3000:]
        # Killed once it committed something (Faust commits every ~3 s): the next worker must
        # rebuild what lies before the committed offsets by replaying them.
        assert wait_for(lambda: max(committed_offsets(broker.bootstrap, "stream-app", "sales-events", PARTITIONS)) > 0, 30), \
            committed_offsets(broker.bootstrap, "stream-app", "sales-events", PARTITIONS)
        first.stop(signal.SIGKILL)
        second = start_worker(demand_model_dir, DEMAND__CALENDAR_WAIT_S="1")
        _send(broker.bootstrap, [e for day in range(20, DAYS) for e in per_day[day]])
        expected = {(f"{sku}/{market}", d) for sku, market, _ in SERIES for d in range(DAYS - 1)}
        assert reader.until(lambda r: expected <= _closed(r), timeout=75, alive=second.alive), second.log()[-3000:]
    finally:
        reader.close()
    assert "state rebuilt from" in second.log()
    by_key: dict[tuple[str, int], set[str]] = defaultdict(set)
    for raw in reader.messages["demand-forecasts"]:
        f = DemandForecast.model_validate(raw)
        day = (f.day - START).days
        by_key[(f.series_id, day)].add(f.forecast_id)
        assert (f.events_counted, f.units) == tuple(truth[(f.series_id, day)]), (f.series_id, day)
        assert f.history_days == min(day + 1, 90), (f.series_id, day, f.history_days)  # no day forgotten
    assert all(len(ids) == 1 for ids in by_key.values()), "a re-published forecast changed its id"
