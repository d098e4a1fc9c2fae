"""Demand shadow: a candidate version forecasts beside the served one at every day close, on the
served scorer's daily histories, without changing what is served; its forecasts are published
tagged to the shadow topic and never alert; both versions' forecasts of each realised day are
checked into live counters per version, which the promotion gate compares; promoting the
candidate hands its model and forecast memory to the served scorer in place."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch

from agents.demand import DemandHandle, pipeline
from agents.publish import Outbox
from schemas.sales import SalesEvent
from stream_app.intake import RawMessage
from stream_app.lifecycle.gate import GATES
from stream_app.lifecycle.live import LiveStats, read_live, write_live
from stream_app.lifecycle.promotion import check_promotion
from stream_app.models.demand_transformer import DemandTransformer
from stream_app.registry import ModelRegistry
from stream_app.scoring.demand import EventResult
from stream_app.scoring.demand_model import WEIGHTS_FILE
from stream_app.settings import DemandSettings, Settings
from tests.model_store import register_copy
from tests.unit.agent_fixtures import RecordingProducer
from tests.unit.demand_fixtures import DAY0, quick_model_dir, sale
from tests.unit.maintenance_fixtures import one_torch_thread  # noqa: F401 (autouse fixture)

NAME = "demand"
SKUS = ("bk-1", "bk-2", "bk-3", "bk-4")
DAYS = 40




@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """demand v1 (trained, current) and v2: the same artifact registered again."""
    shutil.copytree(quick_model_dir(), tmp_path / "store")
    registry = ModelRegistry(tmp_path / "store")
    assert registry.pointer_state(NAME).current == "v1"
    assert register_copy(registry, NAME) == "v2"
    return registry


def _worse(registry: ModelRegistry) -> str:
    """Another version of the same shape with untrained (random) weights: a worse forecaster."""
    version = register_copy(registry, NAME)
    torch.manual_seed(7)
    model = DemandTransformer(**registry.get(NAME, version).manifest["hyperparameters"])
    torch.save(model.state_dict(), registry.get(NAME, version).file(WEIGHTS_FILE))
    return version


def _settings(registry: ModelRegistry, **demand: Any) -> Settings:
    return Settings(model_dir=registry.root, demand=DemandSettings(**demand))


def _sales(days: int = DAYS, spike: Optional[int] = 30) -> list[tuple[SalesEvent, int]]:
    """Weekly-patterned daily sales of SKUS on two partitions, in time order, with a spike
    (stockout risk) on day `spike` for bk-1."""
    rng = np.random.default_rng(5)
    out = []
    for day in range(days):
        for k, sku in enumerate(SKUS):
            level = (6 + 3 * k) * (1.5 if day % 7 >= 5 else 1.0) * (8 if day == spike and sku == "bk-1" else 1)
            n = 3
            for i in range(n):
                units = float(max(1, round(rng.poisson(level / n))))
                out.append((sale(f"{sku}-{day}-{i}", day, 2 + 6 * i + k, units, sku), k % 2))
    out.sort(key=lambda item: item[0].ts)
    return out


def _batches(items: list[Any], size: int = 40) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _score(handle: DemandHandle, batches: list[list[tuple[SalesEvent, int]]]) -> list[EventResult]:
    results: list[EventResult] = []
    for batch in batches:
        results += await handle.run(handle.score_batch, [e for e, _ in batch], [c for _, c in batch])
    return results


def _served(results: list[EventResult]) -> list[dict[str, Any]]:
    """Everything published as served, minus the wall-clock time of publishing."""
    out = []
    for r in results:
        for fr in r.forecasts:
            out.append(fr.forecast.model_dump(mode="json", exclude={"created_at"}))
            out += [a.model_dump(mode="json", exclude={"created_at"}) for a in fr.alerts]
            out += [e.model_dump(mode="json", exclude={"created_at"}) for e in fr.explanations]
        out += [[a.forecasts.tolist(), a.covered.tolist(), a.abs_error.tolist(), a.pinball.tolist()] for a in r.accuracy]
    return out


def _run(registry: ModelRegistry, settings: Settings, candidate_at: Optional[int], then: Any = None) -> tuple[DemandHandle, list[EventResult]]:
    """Score _sales() in batches; the candidate v2 is set before batch `candidate_at`."""
    handle = DemandHandle(registry, settings)
    batches = _batches(_sales())

    async def scenario() -> list[EventResult]:
        await handle.get()
        results = []
        for i, batch in enumerate(batches):
            if i == candidate_at:
                registry.set_candidate(NAME, "v2", actor="test")
                await handle.sync()
                assert handle.shadow is not None and handle.shadow.model_version == "v2"
            results += await _score(handle, [batch])
        await handle.sync()  # writes the live counters
        if then is not None:
            await then(handle)
        return results

    try:
        return handle, asyncio.run(scenario())
    finally:
        handle.executor.shutdown()


def test_a_candidate_in_shadow_leaves_the_served_forecasts_unchanged(registry: ModelRegistry) -> None:
    settings = _settings(registry, min_history_days=0, min_confidence=0.0)
    _, plain = _run(registry, settings, candidate_at=None)
    registry.clear_candidate(NAME)
    handle, shadowed = _run(registry, settings, candidate_at=3)

    assert _served(shadowed) == _served(plain), "the served forecasts, alerts and accuracy do not depend on a shadow"
    served = [fr.forecast for r in shadowed for fr in r.forecasts]
    shadow = [fr.forecast for r in shadowed if r.shadow is not None for fr in r.shadow.forecasts]
    assert {f.model_version for f in served} == {"v1"} and {f.model_version for f in shadow} == {"v2"}
    assert {f.decision_source for f in shadow} == {"model"}
    # The shadow saw the same histories: v2 is v1's artifact, so each of its forecasts equals
    # the one served for the same series and day (only the version, and so the id, differ).
    by_key = {(f.series_id, f.day): f for f in served}
    assert len(shadow) > 100 and len({(f.series_id, f.day) for f in shadow}) == len(shadow)
    for f in shadow:
        ref = by_key[(f.series_id, f.day)]
        assert f.forecast_id != ref.forecast_id
        assert (f.units, f.history_days, f.horizon, f.total_7d, f.confidence) == (ref.units, ref.history_days, ref.horizon, ref.total_7d, ref.confidence)
    # A shadow builds no alert or explanation, only the kinds it would have raised.
    shadow_results = [fr for r in shadowed if r.shadow is not None for fr in r.shadow.forecasts]
    assert not any(fr.alerts or fr.explanations for fr in shadow_results)
    assert any(fr.would_alert for fr in shadow_results)
    # Shared, not copied: the shadow holds no daily totals, only its forecast memory.
    assert handle.shadow is not None and handle.shadow.series_count() == 0 and not handle.shadow.clocks
    assert handle.serving is not None and handle.serving.series_count() == len(SKUS)
    assert set(handle.shadow._shadow_memory) == handle.serving.clocks == {0, 1}


def test_shadow_forecasts_are_published_tagged_and_never_alert(registry: ModelRegistry) -> None:
    settings = _settings(registry, markets=["DE"], min_history_days=0, min_confidence=0.0)
    registry.set_candidate(NAME, "v2", actor="test")
    handle = DemandHandle(registry, settings)
    producer = RecordingProducer()
    items = _sales()
    messages = [RawMessage("sales-events", p, i, f"{e.sku}/DE".encode(), e.model_dump_json().encode(), None)
                for i, (e, p) in enumerate(items)]

    async def scenario() -> None:
        scorer = await handle.get()
        await handle.sync()
        run = pipeline(settings, scorer, handle, Outbox(producer))
        for batch in _batches(messages, 200):
            await run.process(batch)

    asyncio.run(scenario())
    handle.executor.shutdown()
    served, shadowed = producer.on("demand-forecasts"), producer.on("demand-shadow-forecasts")
    assert served and len(shadowed) == len(served)
    assert {f["model_version"] for f in served} == {"v1"} and not any(f["shadow"] for f in served)
    assert {f["model_version"] for f in shadowed} == {"v2"} and all(f["shadow"] for f in shadowed)
    assert [k for t, k, _ in producer.sent if t == "demand-shadow-forecasts"] == [f["series_id"].encode() for f in shadowed]
    alerts = producer.on("alerts")
    assert alerts and {a["model_version"] for a in alerts} == {"v1"}, "a shadow never alerts"
    assert {e["model_version"] for e in producer.on("explanations")} == {"v1"}
    # ... though it counts what it would have alerted, as the served version does.
    live = {v: (c.scored, c.alerts) for v, c in handle.live.items()}
    assert live["v1"] == live["v2"] == (len(served), len(alerts))


def test_both_versions_live_accuracy_is_recorded_on_the_same_forecast_days(registry: ModelRegistry) -> None:
    settings = _settings(registry, min_history_days=0, min_confidence=0.0)
    handle, results = _run(registry, settings, candidate_at=3)
    v1, v2 = read_live(registry, NAME, "v1"), read_live(registry, NAME, "v2")
    assert v1 is not None and v2 is not None and v1.since == v2.since == handle.live_since.isoformat()
    # Only forecast days both made count (the shadow started late: v1's earlier forecasts are
    # left out), so the same artifact scores the same.
    assert v1.evaluated == v2.evaluated >= GATES[NAME].min_outcomes
    served_checked = sum(int(a.forecasts.sum()) for r in results for a in r.accuracy)
    assert v1.evaluated < served_checked
    assert set(v1.metrics) == {"wape", "pinball", "coverage"}
    for key in v1.metrics:
        assert v1.metrics[key] == pytest.approx(v2.metrics[key])
    assert 0 < v1.metrics["wape"] < 1 and 0 <= v1.metrics["coverage"] <= 1
    assert v1.scored == v2.scored == sum(len(r.shadow.forecasts) for r in results if r.shadow is not None)
    # With equal live evidence, the gate lets the candidate through.
    assert check_promotion(registry, NAME, "v2").allowed


def test_a_worse_candidate_is_refused_by_the_gate_on_live_evidence(registry: ModelRegistry) -> None:
    worse = _worse(registry)
    registry.set_candidate(NAME, worse, actor="test")
    handle = DemandHandle(registry, _settings(registry, min_history_days=0, min_confidence=0.0))

    async def scenario() -> None:
        await handle.get()
        await handle.sync()
        assert handle.shadow is not None and handle.shadow.model_version == worse
        await _score(handle, _batches(_sales()))
        await handle.sync()

    asyncio.run(scenario())
    handle.executor.shutdown()
    current, candidate = read_live(registry, NAME, "v1"), read_live(registry, NAME, worse)
    assert current is not None and candidate is not None
    assert candidate.evaluated == current.evaluated >= GATES[NAME].min_outcomes
    assert candidate.metrics["wape"] > current.metrics["wape"] + 0.01
    decision = check_promotion(registry, NAME, worse)
    assert not decision.allowed
    assert any(r.startswith("live: wape") for r in decision.reasons), decision.reasons
    assert decision.comparison["live"]["metrics"]["wape"]["ok"] is False


def test_promoting_the_candidate_swaps_in_the_warm_shadow_and_keeps_the_histories(registry: ModelRegistry) -> None:
    settings = _settings(registry, min_history_days=0, min_confidence=0.0)
    items = _sales(DAYS + 3)
    cut = next(i for i, (e, _) in enumerate(items) if (e.ts - DAY0).days >= DAYS)
    seen: dict[str, Any] = {}

    async def promote(handle: DemandHandle) -> None:
        serving, shadow = handle.serving, handle.shadow
        assert serving is not None and shadow is not None
        seen["memory"] = dict(shadow._shadow_memory)
        registry.promote(NAME, "v2", actor="test")
        await handle.sync()
        seen["same"] = handle.serving is serving
        seen["shadow"] = handle.shadow
        seen["after"] = await _score(handle, _batches(items[cut:]))

    handle = DemandHandle(registry, settings)
    registry.set_candidate(NAME, "v2", actor="test")

    async def scenario() -> list[EventResult]:
        await handle.get()
        await handle.sync()
        before = await _score(handle, _batches(items[:cut]))
        await promote(handle)
        return before

    before = asyncio.run(scenario())
    handle.executor.shutdown()
    serving = handle.serving
    assert serving is not None
    assert seen["same"], "the served scorer stays one object: the pipeline and calendar reader keep it"
    assert seen["shadow"] is None and serving.model_version == "v2" and serving.candidate is None
    assert {p: part.memory for p, part in serving._parts.items()} == seen["memory"], "warm: the shadow's forecast memory"
    after = [fr.forecast for r in seen["after"] for fr in r.forecasts]
    assert after and {f.model_version for f in after} == {"v2"}
    last = {f.series_id: f.history_days for r in before for fr in r.forecasts for f in [fr.forecast]}
    assert all(f.history_days >= last[f.series_id] for f in after), "the daily histories were kept"
    # v2's live accuracy goes on at once from the forecasts it made in shadow (all horizons).
    first = [a for r in seen["after"] for a in r.live]
    assert first and {a.version for a in first} == {"v2"} and all(a.forecasts[-1] > 0 for a in first)


def test_a_version_loaded_cold_is_credited_only_with_its_own_forecasts(registry: ModelRegistry) -> None:
    """Promotion without a shadow: the histories and forecast memory stay, but the earlier
    version's forecasts are not counted as the new version's live accuracy."""
    settings = _settings(registry, min_history_days=0, min_confidence=0.0)
    items = _sales(DAYS)
    cut = next(i for i, (e, _) in enumerate(items) if (e.ts - DAY0).days >= 20)
    handle = DemandHandle(registry, settings)
    v1: dict[str, int] = {}

    async def scenario() -> list[EventResult]:
        await handle.get()
        await _score(handle, _batches(items[:cut]))
        v1["before"] = handle.live["v1"].evaluated
        registry.promote(NAME, "v2", actor="test")
        await handle.sync()
        return await _score(handle, _batches(items[cut:]))

    after = asyncio.run(scenario())
    handle.executor.shutdown()
    first_day = next(r for r in after if r.live)
    assert int(first_day.accuracy[0].forecasts.sum()) > 0, "the served accuracy (metrics) still checks v1's forecasts"
    assert [int(a.forecasts.sum()) for a in first_day.live] == [0] * len(first_day.live)
    counted = sum(int(a.forecasts.sum()) for r in after for a in r.live)
    assert 0 < counted == handle.live["v2"].evaluated
    assert handle.live["v1"].evaluated == v1["before"] > 0, "v1 keeps what its own forecasts earned"


def test_a_failing_candidate_never_touches_the_served_forecasts(registry: ModelRegistry) -> None:
    settings = _settings(registry, min_history_days=0, min_confidence=0.0)
    _, plain = _run(registry, settings, candidate_at=None)

    handle = DemandHandle(registry, settings)
    registry.set_candidate(NAME, "v2", actor="test")

    async def scenario() -> list[EventResult]:
        await handle.get()
        await handle.sync()
        assert handle.shadow is not None and handle.shadow._model is not None

        def broken(*_: Any, **__: Any) -> Any:
            raise RuntimeError("candidate weights corrupted")

        handle.shadow._model.model.forward = broken  # type: ignore[method-assign]
        return await _score(handle, _batches(_sales()))

    results = asyncio.run(scenario())
    handle.executor.shutdown()
    assert _served(results) == _served(plain)
    shadows = [r.shadow for r in results if r.shadow is not None]
    assert shadows and not any(s.forecasts for s in shadows) and any(s.failed_days for s in shadows)
    assert handle.shadow is not None and handle.shadow.model_version == "v2", "not turned into rules under v2's name"


def test_a_revoked_partition_drops_the_candidates_forecast_memory_too(registry: ModelRegistry) -> None:
    settings = _settings(registry)
    registry.set_candidate(NAME, "v2", actor="test")
    handle = DemandHandle(registry, settings)

    async def scenario() -> tuple[set[int], set[int]]:
        await handle.get()
        await handle.sync()
        items = _sales(5)
        handle.warm |= {0, 1}
        await _score(handle, [items])
        assert handle.shadow is not None
        before = set(handle.shadow._shadow_memory)
        await handle.revoked({1})
        return before, set(handle.shadow._shadow_memory)

    before, after = asyncio.run(scenario())
    handle.executor.shutdown()
    assert before == {0, 1} and after == {0}
    assert handle.serving is not None and handle.serving.clocks == {0}


def test_the_demand_gate_compares_live_wape_and_pinball_once_enough_days_are_realised(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    for _ in range(2):
        with registry.new_version(NAME, {"features": {}}, promote=False, actor="test"):
            pass
    registry.promote(NAME, "v1", actor="test")
    since = "2026-11-22T08:00:00+00:00"

    def live(version: str, evaluated: int, wape: float, pinball: float) -> None:
        write_live(registry, NAME, LiveStats(version, since, scored=evaluated, evaluated=evaluated,
                                             metrics={"wape": wape, "pinball": pinball, "coverage": 0.8}))

    live("v1", 500, 0.30, 0.10)
    live("v2", 150, 0.50, 0.10)
    assert not check_promotion(registry, NAME, "v2").allowed  # too few realised days: no evidence
    assert "no comparison" in check_promotion(registry, NAME, "v2").reasons[0]
    live("v2", 500, 0.50, 0.10)
    refused = check_promotion(registry, NAME, "v2")
    assert not refused.allowed and refused.reasons == ["live: wape 0.5 vs 0.3 (lower is better, tolerance 0.01)"]
    live("v2", 500, 0.305, 0.12)
    refused = check_promotion(registry, NAME, "v2")
    assert not refused.allowed and refused.reasons[0].startswith("live: pinball 0.12 vs 0.1")
    live("v2", 500, 0.305, 0.104)
    assert check_promotion(registry, NAME, "v2").allowed
