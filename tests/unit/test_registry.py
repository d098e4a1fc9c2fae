from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import pytest

from stream_app.lifecycle.gate import GATES, MetricRule, compare
from stream_app.lifecycle.live import LiveStats, read_live, write_live
from stream_app.lifecycle.promotion import check_promotion, own_metrics, promote_with_gate
from stream_app.registry import (
    CurrentChanged,
    ModelNotFound,
    ModelRegistry,
    NoRollbackTarget,
    PointerState,
)

NAME = "maintenance"


def _add(
    registry: ModelRegistry,
    promote: bool = False,
    *,
    roc_auc: float = 0.98,
    brier: float = 0.03,
    comparison: Optional[dict[str, Any]] = None,
) -> str:
    """A maintenance version shaped as training writes it: AUC in the manifest, Brier in the report."""
    manifest: dict[str, Any] = {"metrics": {"model": {"roc_auc": roc_auc}}}
    if comparison is not None:
        manifest["comparison"] = comparison
    with registry.new_version(NAME, manifest, promote=promote, actor="retrain") as staging:
        (staging / "report.json").write_text(json.dumps({"calibration": {"brier": {"test": {"calibrated": brier}}}}))
    return registry.versions(NAME)[-1].version


def _comparison(against: str, candidate: dict[str, float], current: dict[str, float]) -> dict[str, Any]:
    return {"data": "last 30 days", "candidate": candidate, "current": {"version": against, **current}}


def _actions(registry: ModelRegistry) -> list[tuple[str, Optional[str], Optional[str]]]:
    return [(e.action, e.version, e.previous) for e in registry.history(NAME)]


# -- versions and pointers -----------------------------------------------------------------


def test_versions_count_up_and_the_newest_is_promoted(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.current("maintenance") is None
    for i in range(2):
        with registry.new_version("maintenance", {"metrics": {"auc": i}}) as staging:
            (staging / "model.pt").write_bytes(b"w%d" % i)
    versions = registry.versions("maintenance")
    assert [v.version for v in versions] == ["v1", "v2"]
    current = registry.current("maintenance")
    assert current is not None and current.version == "v2"
    assert current.manifest["metrics"] == {"auc": 1} and current.manifest["name"] == "maintenance"
    assert current.file("model.pt").read_bytes() == b"w1"


def test_promote_and_unpromoted_versions(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with registry.new_version("maintenance", {}):
        pass
    with registry.new_version("maintenance", {}, promote=False):
        pass
    assert registry.current("maintenance").version == "v1"
    registry.promote("maintenance", "v2")
    assert registry.current("maintenance").version == "v2"
    with pytest.raises(ModelNotFound):
        registry.promote("maintenance", "v9")
    with pytest.raises(ModelNotFound):
        registry.get("maintenance", "../maintenance/v1")


def test_a_failed_write_leaves_no_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(RuntimeError):
        with registry.new_version("maintenance", {}) as staging:
            (staging / "model.pt").write_bytes(b"half")
            raise RuntimeError("disk full")
    assert registry.versions("maintenance") == []
    assert not [p for p in (tmp_path / "maintenance").iterdir() if not p.name.startswith(".")]
    assert registry.history("maintenance") == []


def test_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ModelRegistry(tmp_path).versions("../etc")


def test_pointer_state_follows_promotions_and_the_candidate(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.pointer_state(NAME) == PointerState(None, None)
    _add(registry)
    assert registry.pointer_state(NAME) == PointerState("v1", None)  # never promoted: newest served
    _add(registry, promote=True)
    _add(registry)
    registry.set_candidate(NAME, "v3")
    assert registry.pointer_state(NAME) == PointerState("v2", "v3")
    assert registry.names() == [NAME]


# -- history -------------------------------------------------------------------------------


def test_history_records_registration_and_promotion(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    _add(registry, promote=False)
    registry.promote(NAME, "v2", actor="alice", reason="better on March")
    assert _actions(registry) == [
        ("registered", "v1", None), ("promoted", "v1", None), ("registered", "v2", None), ("promoted", "v2", "v1")
    ]
    last = registry.history(NAME)[-1]
    assert (last.actor, last.reason, last.forced) == ("alice", "better on March", False)
    assert registry.history(NAME)[0].actor == "retrain"
    assert datetime.fromisoformat(last.time).utcoffset().total_seconds() == 0
    # The file is what an auditor reads: one JSON object a line.
    lines = (tmp_path / NAME / "HISTORY.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["action"] == "promoted"


def test_concurrent_appends_do_not_interleave(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    threads, per_thread = 16, 40
    # Long lines: a buffered writer would split them into several writes.
    reasons = [f"{t}:" + chr(ord("a") + t) * 20000 for t in range(threads)]

    def refuse_many(t: int) -> None:
        for _ in range(per_thread):
            registry.record_refusal(NAME, "v1", actor=f"worker-{t}", reason=reasons[t])

    workers = [threading.Thread(target=refuse_many, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    lines = (tmp_path / NAME / "HISTORY.jsonl").read_text().splitlines()
    refusals = [json.loads(line) for line in lines if '"refused"' in line]
    assert len(refusals) == threads * per_thread
    assert all(r["reason"] == reasons[int(r["actor"].split("-")[1])] for r in refusals)


def test_a_torn_history_line_is_skipped(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    with open(tmp_path / NAME / "HISTORY.jsonl", "a") as f:
        f.write('{"action": "promo')
    assert [e.action for e in registry.history(NAME)] == ["registered", "promoted"]


# -- rollback ------------------------------------------------------------------------------


def test_rollback_restores_the_previous_version_step_by_step(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    for _ in range(3):
        _add(registry, promote=True)
    assert registry.rollback(NAME, actor="ops", reason="alert storm").version == "v2"
    assert registry.current(NAME).version == "v2"
    assert registry.history(NAME)[-1].action == "rolled_back"
    assert (registry.history(NAME)[-1].version, registry.history(NAME)[-1].previous) == ("v2", "v3")
    assert registry.rollback(NAME).version == "v1"
    with pytest.raises(NoRollbackTarget, match="no version of maintenance was current before v1"):
        registry.rollback(NAME)
    assert registry.current(NAME).version == "v1"


def test_rollback_after_a_repromotion_returns_to_the_version_it_replaced(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    for _ in range(3):
        _add(registry, promote=True)
    registry.promote(NAME, "v1")  # v3 -> v1
    assert registry.rollback(NAME).version == "v3"


def test_rollback_without_history_is_an_error(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(NoRollbackTarget, match="no current version"):
        registry.rollback(NAME)
    _add(registry, promote=True)
    with pytest.raises(NoRollbackTarget, match="no version"):
        registry.rollback(NAME)
    # A store made current before the history existed (CURRENT written by hand).
    _add(registry)
    (tmp_path / NAME / "CURRENT").write_text("v2\n")
    with pytest.raises(NoRollbackTarget, match="does not say how v2 became current"):
        registry.rollback(NAME)


def test_rollback_works_from_a_store_older_than_the_history(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry)
    _add(registry)
    (tmp_path / NAME / "CURRENT").write_text("v1\n")
    (tmp_path / NAME / "HISTORY.jsonl").unlink()
    registry.promote(NAME, "v2")
    assert registry.rollback(NAME).version == "v1"


def test_promote_refuses_when_the_current_version_changed_meanwhile(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    _add(registry, promote=True)
    _add(registry)
    with pytest.raises(CurrentChanged):
        registry.promote(NAME, "v3", if_current="v1")
    assert registry.current(NAME).version == "v2"


# -- candidate -----------------------------------------------------------------------------


def test_candidate_round_trip(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    _add(registry)
    assert registry.candidate(NAME) is None
    assert registry.set_candidate(NAME, "v2", actor="alice").version == "v2"
    assert registry.candidate(NAME).version == "v2"
    assert registry.clear_candidate(NAME) == "v2"
    assert registry.candidate(NAME) is None and registry.clear_candidate(NAME) is None
    assert _actions(registry)[-2:] == [("candidate_set", "v2", None), ("candidate_cleared", None, "v2")]
    with pytest.raises(ValueError, match="already current"):
        registry.set_candidate(NAME, "v1")
    with pytest.raises(ModelNotFound):
        registry.set_candidate(NAME, "v7")


def test_promoting_the_candidate_clears_it(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    _add(registry)
    registry.set_candidate(NAME, "v2")
    registry.promote(NAME, "v2")
    assert registry.pointer_state(NAME) == PointerState("v2", None)
    assert _actions(registry)[-1] == ("candidate_cleared", None, "v2")


# -- gate ----------------------------------------------------------------------------------

RULES = GATES[NAME].offline


def test_gate_refuses_a_worse_candidate_and_allows_within_tolerance() -> None:
    current = {"roc_auc": 0.98, "brier": 0.030}
    worse = compare({"roc_auc": 0.95, "brier": 0.030}, current, RULES)
    assert not worse.allowed
    assert worse.reasons == ["roc_auc 0.95 vs 0.98 (higher is better, tolerance 0.005)"]
    assert worse.comparison["roc_auc"]["ok"] is False and worse.comparison["brier"]["ok"] is True
    assert compare({"roc_auc": 0.977, "brier": 0.031}, current, RULES).allowed
    assert not compare({"roc_auc": 0.99, "brier": 0.040}, current, RULES).allowed  # lower Brier is better


def test_an_unmeasured_metric_never_refuses_by_itself_and_manifest_shaped_metrics_are_read() -> None:
    missing = compare({"roc_auc": 0.99}, {"roc_auc": 0.98, "brier": 0.03}, RULES, ("v2", "v1"))
    assert missing.allowed and missing.unmeasured == ["brier not measured for v2"]
    assert missing.reasons == ["roc_auc 0.99 vs 0.98 (higher is better, tolerance 0.005)",
                               "left out: brier not measured for v2"]
    nothing = compare({"error": "v1 could not be evaluated"}, {}, RULES, ("v2", "v1"))
    assert nothing.allowed and "nothing shows v2 is worse than v1" in nothing.reasons[0]
    # what is measured still decides, whatever is left out
    worse = compare({"roc_auc": 0.90}, {"roc_auc": 0.98}, RULES, ("v2", "v1"))
    assert not worse.allowed and worse.reasons == ["roc_auc 0.9 vs 0.98 (higher is better, tolerance 0.005)"]
    rule = MetricRule("roc_auc", True, 0.0, "metrics.model.roc_auc")
    nested = compare({"metrics": {"model": {"roc_auc": 0.97}}}, {"metrics": {"model": {"roc_auc": 0.98}}}, [rule])
    assert not nested.allowed


def test_every_stream_has_promotion_rules() -> None:
    assert set(GATES) == {"maintenance", "supply-chain", "demand"}


def test_own_metrics_come_from_manifest_and_report(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, roc_auc=0.97, brier=0.04)
    assert own_metrics(registry.get(NAME, "v1")) == {"roc_auc": 0.97, "brier": 0.04}


# -- promotion through the gate ------------------------------------------------------------


def test_first_version_is_always_allowed_and_no_evidence_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry)
    assert check_promotion(registry, NAME, "v1").allowed
    registry.promote(NAME, "v1")
    _add(registry)
    decision = check_promotion(registry, NAME, "v2")
    assert not decision.allowed
    assert decision.reasons == ["no comparison against v1; run retraining evaluation or pass --force"]


def test_offline_comparison_decides(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    _add(registry, comparison=_comparison("v1", {"roc_auc": 0.95, "brier": 0.03}, {"roc_auc": 0.98, "brier": 0.03}))
    _add(registry, comparison=_comparison("v1", {"roc_auc": 0.99, "brier": 0.03}, {"roc_auc": 0.98, "brier": 0.03}))
    refused = check_promotion(registry, NAME, "v2")
    assert not refused.allowed and refused.reasons[0].startswith("offline: roc_auc 0.95 vs 0.98")
    assert refused.comparison["offline"]["data"] == "last 30 days"
    assert check_promotion(registry, NAME, "v3").allowed


def test_a_comparison_against_an_older_version_is_no_evidence(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    _add(registry, promote=True)
    _add(registry, comparison=_comparison("v1", {"roc_auc": 0.99, "brier": 0.03}, {"roc_auc": 0.98, "brier": 0.03}))
    assert not check_promotion(registry, NAME, "v3").allowed


def test_refusal_and_forced_promotion_are_recorded(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    _add(registry, comparison=_comparison("v1", {"roc_auc": 0.95, "brier": 0.03}, {"roc_auc": 0.98, "brier": 0.03}))
    assert not promote_with_gate(registry, NAME, "v2", actor="alice").allowed
    assert registry.current(NAME).version == "v1"
    refused = registry.history(NAME)[-1]
    assert (refused.action, refused.version, refused.previous) == ("refused", "v2", "v1")
    assert refused.comparison["offline"]["metrics"]["roc_auc"]["ok"] is False
    promote_with_gate(registry, NAME, "v2", actor="alice", reason="new sensors", force=True)
    assert registry.current(NAME).version == "v2"
    forced = registry.history(NAME)[-1]
    assert forced.action == "promoted" and forced.forced
    assert forced.reason.startswith("forced: new sensors; gate refused: offline: roc_auc")


# -- live evidence -------------------------------------------------------------------------

WINDOW = "2026-11-22T08:00:00+00:00"


def _live(version: str, alerted: int, missed: int, false_alerts: int, since: str = WINDOW) -> LiveStats:
    return LiveStats(version, since, scored=100_000, alerts=alerted + false_alerts,
                     outcomes_alerted=alerted, outcomes_missed=missed, false_alerts=false_alerts)


def test_live_counters_from_several_workers_are_summed(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    write_live(registry, NAME, LiveStats("v2", WINDOW, scored=10, evaluated=10, metrics={"wape": 0.2}), worker="w1")
    write_live(registry, NAME, LiveStats("v2", WINDOW, scored=30, evaluated=30, metrics={"wape": 0.4}), worker="w2")
    write_live(registry, NAME, LiveStats("v2", "2026-01-01T00:00:00+00:00", scored=999), worker="w3")  # older window
    merged = read_live(registry, NAME, "v2")
    assert merged is not None and merged.scored == 40 and merged.metrics["wape"] == pytest.approx(0.35)
    assert read_live(registry, NAME, "v9") is None
    with pytest.raises(ValueError):
        write_live(registry, NAME, _live("v2", 1, 1, 1), worker="../x")


def test_live_evidence_decides_once_both_have_enough_outcomes(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _add(registry, promote=True)
    _add(registry)
    write_live(registry, NAME, _live("v1", alerted=18, missed=2, false_alerts=10))
    write_live(registry, NAME, _live("v2", alerted=10, missed=5, false_alerts=10))
    assert "no comparison" in check_promotion(registry, NAME, "v2").reasons[0]  # 15 outcomes < 20
    write_live(registry, NAME, _live("v2", alerted=12, missed=10, false_alerts=10))
    decision = check_promotion(registry, NAME, "v2")
    assert not decision.allowed and decision.reasons[0].startswith("live: recall 0.5455 vs 0.9")
    write_live(registry, NAME, _live("v2", alerted=20, missed=1, false_alerts=5))
    assert check_promotion(registry, NAME, "v2").allowed
    # Counted over different events: not comparable.
    write_live(registry, NAME, _live("v2", alerted=20, missed=1, false_alerts=5, since="2026-11-23T00:00:00+00:00"))
    assert not check_promotion(registry, NAME, "v2").allowed
