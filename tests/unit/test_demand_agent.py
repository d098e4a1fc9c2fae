"""The demand agent's pipeline without a broker: what it publishes for batches of raw messages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agents.demand import DemandHandle, pipeline
from stream_app.intake import RawMessage
from agents.publish import Outbox
from stream_app import metrics
from stream_app.registry import ModelRegistry
from stream_app.scoring.demand import DemandScorer
from stream_app.settings import DemandSettings, Settings
from tests.unit.agent_fixtures import RecordingProducer
from tests.unit.demand_fixtures import sale


def _value(event_id: str, day: int, market: str = "DE") -> dict[str, Any]:
    return sale(event_id, day, market=market).model_dump(mode="json")


def _message(offset: int, value: Any, partition: int = 1) -> RawMessage:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return RawMessage("sales-events", partition, offset, b"bk-1/DE", raw, None)


def test_a_batch_publishes_forecasts_at_day_close_and_dead_letters_what_it_cannot_count(tmp_path: Any) -> None:
    settings = Settings(demand=DemandSettings(markets=["DE"], allowed_lateness_s=0))
    scorer = DemandScorer.load(ModelRegistry(tmp_path), settings.demand)
    handle = DemandHandle(ModelRegistry(tmp_path), settings)
    producer = RecordingProducer()
    before = metrics.DEMAND_SALES.labels("duplicate")._value.get()
    messages = [
        _message(0, _value("e0", 0)),
        _message(1, b"{oops"),
        _message(2, [_value("e1", 0), _value("x1", 0, market="ZZ"), _value("e0", 0)]),  # a gateway array
        _message(3, _value("e2", 1)),  # closes day 0
    ]
    asyncio.run(pipeline(settings, scorer, handle, Outbox(producer)).process(messages))
    handle.executor.shutdown()

    letters = producer.on("dead-letters")
    assert sorted((d["offset"], d["error_code"], d["item_index"]) for d in letters) == [(1, "not_json", None), (2, "unknown_market", 1)]
    forecasts = producer.on("demand-forecasts")
    assert [(f["series_id"], f["day"], f["events_counted"], f["units"]) for f in forecasts] == [("bk-1/DE", "2026-03-02", 2, 2.0)]
    assert [k for t, k, _ in producer.sent if t == "demand-forecasts"] == [b"bk-1/DE"]
    assert metrics.DEMAND_SALES.labels("duplicate")._value.get() == before + 1
