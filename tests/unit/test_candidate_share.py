"""A/B: a candidate set with a share serves that share of entities, picked by a stable hash of
the entity id; the current version shadows it there. Everything else is as in shadow mode."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import pytest

from agents.maintenance import ScorerHandle
from stream_app.lifecycle.live import read_live
from stream_app.registry import MAX_CANDIDATE_SHARE, ModelRegistry
from stream_app.settings import Settings
from tests.unit.maintenance_fixtures import (
    interleave,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    fleet,
    random_model,
    readings_for,
    trained_model,
    write_artifact,
)

MACHINES = 12


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """v1: random weights, current; v2: the trained model, so the two versions' outputs differ."""
    model, features = trained_model()
    registry = write_artifact(tmp_path / "store", random_model(features, seed=3), features)
    write_artifact(tmp_path / "store", model, features)
    registry.promote("maintenance", "v1", actor="test")
    return registry


def _score(registry: ModelRegistry, batches: list) -> tuple[list, float]:
    handle = ScorerHandle(registry, Settings(model_dir=registry.root))

    async def run() -> list:
        await handle.get()
        await handle.sync()
        results = [r for b in batches for r in await handle.run(handle.score_batch, b)]
        handle.write_live()
        return results

    results = asyncio.run(run())
    return results, handle.share


def test_the_candidate_serves_its_share_of_machines_and_the_current_version_shadows_it(registry: ModelRegistry) -> None:
    raw, _, _ = fleet(MACHINES, 120, seed=2)
    readings = interleave([readings_for(f"M{k}", raw[k]) for k in range(MACHINES)])
    batches = [readings[i : i + 40] for i in range(0, len(readings), 40)]

    registry.set_candidate("maintenance", "v2", actor="test")
    shadowed, _ = _score(registry, batches)
    registry.set_candidate("maintenance", "v2", share=0.5, actor="test")
    split, share = _score(registry, batches)
    assert share == 0.5

    treated = {f"M{k}" for k in range(MACHINES) if zlib.crc32(f"M{k}".encode()) < 0.5 * 2**32}
    assert 0 < len(treated) < MACHINES, "the test needs machines on both sides"
    for a, b in zip(split, shadowed):
        machine = a.prediction.machine_id
        served, shadow = (b.shadow, b) if machine in treated else (b, b.shadow)
        assert a.prediction.model_version == ("v2" if machine in treated else "v1")
        assert a.shadow.prediction.model_version == ("v1" if machine in treated else "v2")
        # The same predictions as in shadow mode, only the roles swapped.
        assert a.prediction.failure_probability == pytest.approx(served.prediction.failure_probability, abs=1e-6)
        assert a.shadow.prediction.failure_probability == pytest.approx(shadow.prediction.failure_probability, abs=1e-6)
    # What the candidate serves is published as is: its alerts come with explanations.
    candidate_alerts = [a for a in split if a.prediction.machine_id in treated and a.alert is not None]
    assert candidate_alerts and all(a.explanation is not None for a in candidate_alerts)
    # Both versions are counted on every event, as in shadow mode, for the gate.
    v1, v2 = read_live(registry, "maintenance", "v1"), read_live(registry, "maintenance", "v2")
    assert v1 is not None and v2 is not None and v1.scored == v2.scored == len(split)


def test_the_share_is_recorded_bounded_and_cleared_with_the_candidate(registry: ModelRegistry) -> None:
    registry.set_candidate("maintenance", "v2", share=0.2, actor="test")
    assert registry.pointer_state("maintenance") == ("v1", "v2", 0.2)
    assert "20%" in registry.history("maintenance")[-1].reason
    with pytest.raises(ValueError, match="promotion"):
        registry.set_candidate("maintenance", "v2", share=MAX_CANDIDATE_SHARE + 0.1, actor="test")
    registry.set_candidate("maintenance", "v2", actor="test")
    assert registry.pointer_state("maintenance").candidate_share == 0.0
    registry.set_candidate("maintenance", "v2", share=0.3, actor="test")
    registry.promote("maintenance", "v2", actor="test")
    assert registry.pointer_state("maintenance") == ("v2", None, 0.0)
