"""The alert trail end to end on the broker: the maintenance pipeline publishes alerts,
explanations and their links; a second worker taking the partition over goes on from the
chain's tail; `stream-app audit verify` finds every chain whole, anchors its heads, and then
catches an alert forged onto the topic. (Every kind of forgery, one by one:
tests/unit/test_audit_chain.py.)"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from agents.maintenance import pipeline
from agents.publish import Outbox
from schemas import Alert
from stream_app import audit_cli
from stream_app.audit.chain import AlertChain
from stream_app.audit.topic import read_tail
from stream_app.intake import RawMessage
from stream_app.kafka_io import encode_json, ensure_topics
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import Settings
from tests.integration.test_outbox import FaustProducer

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
TOPICS = ["alerts", "explanations", "alert-audit", "maintenance-predictions", "dead-letters", "drift-events"]


def _readings(start: int, n: int, partition: int) -> list[RawMessage]:
    """Readings whose bearing runs far over its physical limit every few readings: rule alerts
    (the cooldown is off, so each one alerts)."""
    out = []
    for i in range(start, start + n):
        machine = f"m-{partition}-{i % 3}"
        reading = {"event_id": f"r-{partition}-{i}", "machine_id": machine, "ts": (T0 + timedelta(minutes=10 * i)).isoformat(),
                   "sensors": {"bearing_temp": 130.0 if i % 4 == 0 else 70.0, "vibration_rms": 2.0}}
        out.append(RawMessage("sensor-readings", partition, i, machine.encode(), encode_json(reading)))
    return out


async def _worker(settings: Settings, producer: AIOKafkaProducer, batches: list[list[RawMessage]]) -> None:
    scorer = MaintenanceScorer.load(ModelRegistry(Path("/nonexistent-model-store")), settings.maintenance)
    chain = AlertChain("maintenance", partial(read_tail, settings))
    run = pipeline(settings, scorer.score_batch, Outbox(FaustProducer(producer)), ThreadPoolExecutor(1), audit=chain)
    for batch in batches:
        await run.process(batch)


def _verify(settings: Settings, *flags: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    audit_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["audit", "verify", *flags])
    out = io.StringIO()
    return audit_cli.run(args, settings, out), out.getvalue()


def test_the_trail_verifies_and_forgeries_are_caught(broker, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap, drift={"enabled": False},
                        maintenance={"alert_cooldown_s": 0})

    async def publish() -> None:
        await ensure_topics(broker.bootstrap, TOPICS, 4)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            # partitions 0 and 1, then a second worker takes partition 0 over: its chain goes on
            await _worker(settings, producer, [_readings(0, 40, 0), _readings(0, 40, 1)])
            await _worker(settings, producer, [_readings(40, 40, 0)])
        finally:
            await producer.stop()

    asyncio.run(publish())
    anchors = tmp_path / "heads.jsonl"
    rc, text = _verify(settings, "--write-anchor", str(anchors))
    assert rc == 0, text
    heads = [json.loads(line) for line in anchors.read_text().splitlines()]
    assert {h["chain"]: h["seq"] for h in heads} == {"maintenance/0": 20, "maintenance/1": 10}, "one chain per partition, 0 went on"

    async def forge() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        # An alert nobody linked, as anyone with write access could produce it.
        fake = Alert(alert_id="forged", kind="maintenance.failure_risk", entity_id="m-0-1", event_ids=["r-0-5"],
                     severity="critical", score=1.0, confidence=1.0, decision_source="model", reason="forged",
                     model_name="maintenance", model_version="v1", created_at=T0, event_ts=T0, explanation="forged")
        await producer.send_and_wait("alerts", fake.model_dump_json().encode(), key=b"m-0-1")
        await producer.stop()

    asyncio.run(forge())
    rc, text = _verify(settings, "--anchor", str(anchors))
    assert rc == 1 and "inserted: chain forged" in text and "alert forged has no link" in text, text
