"""Gathers the evidence for a promotion (the retraining job's comparison in the candidate's
manifest, live counters of both versions) and applies the gate; promotes, or records the
refusal, in the registry history.

A comparison written by retraining, in the candidate's manifest.json:

    "comparison": {"data": "what both were evaluated on",
                   "candidate": {"roc_auc": 0.98, "brier": 0.03},
                   "current": {"version": "v3", "roc_auc": 0.97, "brier": 0.03}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from stream_app.lifecycle.gate import GATES, Decision, ModelGate, compare, lookup, metric_value
from stream_app.lifecycle.live import read_live
from stream_app.registry import ModelRegistry, ModelVersion

REPORT_JSON = "report.json"


@dataclass(frozen=True)
class Evidence:
    source: str  # "offline" or "live"
    decision: Decision
    about: dict[str, Any]  # what was compared: data description, window, current version


def check_promotion(registry: ModelRegistry, name: str, version: str) -> Decision:
    """Whether `version` may replace the current version of `name`. The first version, or the
    current one again, always may; otherwise every available source must agree, and without
    any evidence the answer is no. `override()` is the command that promotes it anyway."""
    candidate = registry.get(name, version)
    current = registry.current(name)
    if current is None or (current.version == version and not _ever_promoted(registry, name)):
        return Decision(True, [f"first version of {name}"])
    if current.version == version:
        return Decision(True, [f"{version} is already current"])
    against = {"current": current.version}
    gate = GATES.get(name)
    if gate is None:
        return Decision(False, [f"no promotion rules for {name}; pass --force"], against)
    found = [e for e in (_offline(candidate, current, gate), _live(registry, name, candidate, current, gate)) if e]
    if not found:
        return Decision(False, [f"no comparison against {current.version}; run retraining evaluation or pass --force"], against)
    return Decision(
        all(e.decision.allowed for e in found),
        [f"{e.source}: {reason}" for e in found for reason in e.decision.reasons],
        {**against, **{e.source: {**e.about, "metrics": e.decision.comparison, "unmeasured": e.decision.unmeasured}
                       for e in found}},
    )


def override(name: str, version: str) -> str:
    """The command that promotes `version` whatever the gate says (recorded as forced)."""
    return f"stream-app models promote {name} {version} --force"


def _ever_promoted(registry: ModelRegistry, name: str) -> bool:
    return any(e.action == "promoted" for e in registry.history(name))


def promote_with_gate(
    registry: ModelRegistry, name: str, version: str, *, actor: Optional[str] = None, reason: str = "", force: bool = False
) -> Decision:
    """Promote when the gate allows it, or when forced (recorded as such with the gate's
    verdict); otherwise record the refusal. Returns the gate's decision."""
    decision = check_promotion(registry, name, version)
    if decision.allowed or force:
        verdict = "; ".join(decision.reasons)
        if decision.allowed:
            text = "; ".join(filter(None, (reason, verdict)))
        else:
            text = f"forced: {reason or 'no reason given'}; gate refused: {verdict}"
        registry.promote(
            name, version, actor=actor, reason=text, comparison=decision.comparison or None,
            forced=not decision.allowed, if_current=decision.comparison.get("current"),
        )
    else:
        registry.record_refusal(
            name, version, actor=actor, reason="; ".join(decision.reasons), comparison=decision.comparison or None
        )
    return decision


def own_metrics(version: ModelVersion) -> dict[str, float]:
    """The gate's offline metrics from the version's own training evaluation (manifest, else
    report.json): what `models list` shows, and a start for a retraining comparison."""
    gate = GATES.get(version.name)
    if gate is None:
        return {}
    report: Optional[dict[str, Any]] = None
    out = {}
    for rule in gate.offline:
        value = metric_value(version.manifest, rule)
        if value is None:
            report = _report(version) if report is None else report
            value = metric_value(report, rule)
        if value is not None:
            out[rule.key] = value
    return out


def _report(version: ModelVersion) -> dict[str, Any]:
    try:
        return json.loads(version.file(REPORT_JSON).read_text())
    except (OSError, ValueError):
        return {}


def _offline(candidate: ModelVersion, current: ModelVersion, gate: ModelGate) -> Optional[Evidence]:
    comparison = candidate.manifest.get("comparison")
    if not isinstance(comparison, dict) or lookup(comparison, "current.version") != current.version:
        return None  # none, or measured against a version that is no longer current
    decision = compare(comparison.get("candidate") or {}, comparison.get("current") or {}, gate.offline,
                       (candidate.version, current.version))
    about = {"data": comparison.get("data", "")}
    if isinstance(comparison.get("current"), dict) and comparison["current"].get("error"):
        about["current_error"] = comparison["current"]["error"]
    return Evidence("offline", decision, about)


def _live(
    registry: ModelRegistry, name: str, candidate: ModelVersion, current: ModelVersion, gate: ModelGate
) -> Optional[Evidence]:
    new, old = read_live(registry, name, candidate.version), read_live(registry, name, current.version)
    if new is None or old is None or new.since != old.since:
        return None  # counted over different events: not comparable
    truth = [new.ground_truth(gate.live_basis), old.ground_truth(gate.live_basis)]
    if min(truth) < gate.min_outcomes:
        return None
    decision = compare(new.derived(), old.derived(), gate.live, (candidate.version, current.version))
    return Evidence("live", decision, {"since": new.since, gate.live_basis: truth})
