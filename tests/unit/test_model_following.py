"""A stream's scorer follows the registry without a restart: promotions and rollbacks switch
the served version between batches, a candidate scores in shadow and, once promoted, takes
over warm; live counters of both versions are written for the promotion gate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.maintenance import ScorerHandle
from stream_app.lifecycle.live import read_live
from stream_app.registry import ModelRegistry
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


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """v1 and v3: the trained model; v2: other (random) weights. v1 current."""
    model, features = trained_model()
    registry = write_artifact(tmp_path / "store", model, features)
    write_artifact(tmp_path / "store", random_model(features, seed=3), features)
    write_artifact(tmp_path / "store", model, features)
    registry.promote("maintenance", "v1", actor="test")
    return registry


def _batches():
    raw, _, _ = fleet(4, 60, seed=2)
    readings = interleave([readings_for(f"M{k}", raw[k]) for k in range(4)])
    return [readings[i : i + 20] for i in range(0, len(readings), 20)]


def test_promotion_rollback_and_shadow_take_effect_between_batches(registry: ModelRegistry) -> None:
    handle = ScorerHandle(registry, Settings(model_dir=registry.root))
    batches = _batches()

    async def scenario() -> dict[str, list]:
        seen: dict[str, list] = {}
        await handle.get()
        score = lambda batch: handle.run(handle.score_batch, batch)  # noqa: E731
        seen["v1"] = await score(batches[0])
        registry.promote("maintenance", "v2", actor="test")
        await handle.sync()
        seen["v2"] = await score(batches[1])
        registry.rollback("maintenance", actor="test")
        await handle.sync()
        seen["rollback"] = await score(batches[2])
        registry.set_candidate("maintenance", "v3", actor="test")
        await handle.sync()
        shadow = handle.shadow
        seen["shadowed"] = [r for b in batches[3:9] for r in await score(b)]
        registry.promote("maintenance", "v3", actor="test")
        await handle.sync()
        assert handle.serving is shadow, "the promoted candidate takes over with its state"
        assert handle.shadow is None
        seen["v3"] = await score(batches[9])
        return seen

    seen = asyncio.run(scenario())
    versions = {k: {r.prediction.model_version for r in v} for k, v in seen.items()}
    assert versions == {"v1": {"v1"}, "v2": {"v2"}, "rollback": {"v1"}, "shadowed": {"v1"}, "v3": {"v3"}}
    # v3 shadowed from batch 3 with v1's weights: each shadow result is a full prediction of
    # the candidate, tagged with its version, and equal to what v1 served (same weights, same
    # readings since the shadow started; v1's machines also saw batches 0 and 2 before).
    shadow = [r.shadow for r in seen["shadowed"]]
    assert all(s is not None and s.prediction.model_version == "v3" for s in shadow)
    assert {r.shadow for r in seen["v1"] + seen["v2"] + seen["v3"]} == {None}
    # Live counters of both versions, over the same window, for the gate.
    v1, v3 = read_live(registry, "maintenance", "v1"), read_live(registry, "maintenance", "v3")
    assert v1 is not None and v3 is not None and v1.since == v3.since
    assert v1.scored == v3.scored == len(seen["shadowed"])


def test_an_unusable_promoted_version_leaves_the_served_one_in_place(registry: ModelRegistry) -> None:
    (registry.root / "maintenance" / "v2" / "model.pt").write_bytes(b"not a model")
    handle = ScorerHandle(registry, Settings(model_dir=registry.root))

    async def scenario() -> str:
        await handle.get()
        registry.promote("maintenance", "v2", actor="test")
        await handle.sync()
        await handle.sync()  # not retried on every poll
        return (await handle.run(handle.score_batch, _batches()[0]))[0].prediction.model_version

    assert asyncio.run(scenario()) == "v1"
