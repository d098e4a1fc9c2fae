"""Model versions change under a live worker: a candidate scores in shadow, is promoted and
rolled back while readings stream in; nothing is lost and every output names its version."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from stream_app.registry import ModelRegistry
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator
from tests.conftest import wait_for
from tests.faults.verifier import verify
from tests.integration.kafka_clients import OutputReader, SteadyProducer
from tests.model_store import register_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPICS = ["maintenance-predictions", "alerts", "explanations", "dead-letters", "maintenance-shadow-predictions"]


def _two_versions(trained: Path, root: Path) -> ModelRegistry:
    """The trained store plus v2: the same model registered again."""
    shutil.copytree(trained, root)
    registry = ModelRegistry(root)
    assert register_copy(registry, "maintenance") == "v2"
    return registry


def test_shadow_promotion_and_rollback_under_load_lose_nothing(broker, start_worker, trained_model_dir: Path, tmp_path: Path) -> None:
    registry = _two_versions(trained_model_dir, tmp_path / "store")
    events = FleetSimulator(FleetConfig(n_machines=40, seed=5)).live_readings(6000)
    worker = start_worker(registry.root, MODEL_POLL_S="0.5")
    # The timeline starts once the worker serves v1 (one starting slowly on a busy machine must
    # not find the candidate already promoted when it first loads its model).
    assert wait_for(lambda: "maintenance scorer ready" in worker.log(), 120), worker.log()[-3000:]
    time.sleep(2)  # joined
    producer = SteadyProducer(broker.bootstrap, events, rate=400)
    producer.start()
    time.sleep(3)
    registry.set_candidate("maintenance", "v2", actor="test")
    time.sleep(4)
    registry.promote("maintenance", "v2", actor="test", reason="shadowed without trouble")
    time.sleep(4)
    registry.rollback("maintenance", actor="test", reason="checking rollback")
    producer.join(timeout=60)
    assert not producer.failed

    reader = OutputReader(broker.bootstrap, TOPICS, 4)
    expected = [e["event_id"] for e in events]
    try:
        reader.until(lambda r: not verify(r, expected, producer.broken).missing, timeout=90, alive=worker.alive)
        verdict = verify(reader, expected, producer.broken)
    finally:
        reader.close()
    assert not verdict.missing, f"{verdict.summary()}; log:\n{worker.log()[-3000:]}"

    predictions = reader.messages["maintenance-predictions"]
    shadow = reader.messages["maintenance-shadow-predictions"]
    assert not any(p["shadow"] for p in predictions)
    assert shadow and all(p["shadow"] and p["model_version"] == "v2" for p in shadow)
    # Per machine, in reading order: v1, then v2 from the promotion, then v1 again from the
    # rollback; a switch happens between batches, so never back and forth.
    first: dict[str, dict[str, Any]] = {}
    for p in predictions:
        first.setdefault(p["event_id"], p)
    order = {e["event_id"]: i for i, e in enumerate(events)}
    by_machine: dict[str, list[str]] = {}
    for p in sorted(first.values(), key=lambda p: order[p["event_id"]]):
        by_machine.setdefault(p["machine_id"], []).append(p["model_version"])
    for machine, versions in by_machine.items():
        runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
        assert runs in (["v1"], ["v1", "v2"], ["v1", "v2", "v1"]), f"{machine}: {runs}"
    switched_back = [vs for vs in by_machine.values() if "v2" in vs and vs[-1] == "v1"]
    assert len(switched_back) > len(by_machine) // 2, "most machines saw both switches"
    log = worker.log()
    assert "now serves maintenance v2 (was v1; warm from shadow)" in log
    assert "now serves maintenance v1 (was v2; loaded)" in log
    actions = [h.action for h in registry.history("maintenance")]
    assert [a for a in actions if a in ("candidate_set", "promoted", "rolled_back")][-3:] == ["candidate_set", "promoted", "rolled_back"]
