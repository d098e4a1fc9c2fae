"""Promotion gate: may a candidate version replace the current one? A pure decision from two
metric dicts measured on the same data, under a per-model list of the metrics that matter,
which direction is better, and how much worse the candidate may be (absolute tolerance).

Only what was measured for both versions decides. A metric the data cannot measure (no labelled
attacks, so no detection or ranking; a current version trained on other data or another feature
set, which cannot be fed this data at all) is reported and left out: it never refuses by itself.
A refusal names both versions' figures of every metric that was worse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence


@dataclass(frozen=True)
class MetricRule:
    key: str  # the name in comparison and live metric dicts
    higher_is_better: bool
    tolerance: float  # the candidate may be worse by at most this much
    # Where a version's own training evaluation keeps it: a dotted path into manifest.json,
    # else report.json (e.g. the Brier score lives only in the report).
    path: str = ""

    def worse_by(self, candidate: float, current: float) -> float:
        return current - candidate if self.higher_is_better else candidate - current

    def describe(self) -> str:
        return f"{'higher' if self.higher_is_better else 'lower'} is better, tolerance {self.tolerance:g}"


@dataclass(frozen=True)
class ModelGate:
    offline: tuple[MetricRule, ...]  # compared on a retraining evaluation (manifest "comparison")
    live: tuple[MetricRule, ...]  # compared on live counters of both versions over the same window
    # Live evidence counts only when both versions have this much ground truth, counted by
    # `live_basis`: "outcomes" (incidents alerted + missed) or "evaluated" (e.g. realised days).
    min_outcomes: int
    live_basis: str = "outcomes"


# Live metrics every alerting stream derives from its counters (stream_app.lifecycle.live).
LIVE_RECALL = MetricRule("recall", True, 0.05)
LIVE_FALSE_ALERTS = MetricRule("false_alerts_per_1k", False, 0.5)

GATES: dict[str, ModelGate] = {
    "maintenance": ModelGate(
        offline=(
            MetricRule("roc_auc", True, 0.005, "metrics.model.roc_auc"),
            MetricRule("brier", False, 0.002, "calibration.brier.test.calibrated"),
        ),
        live=(LIVE_RECALL, LIVE_FALSE_ALERTS),
        min_outcomes=20,
    ),
    "supply-chain": ModelGate(
        # What users get (ensemble + rules): attack shipments flagged, normal ones flagged,
        # and the ensemble's threshold-free ranking (detection alone saturates near 1).
        offline=(
            MetricRule("detection", True, 0.01, "metrics.test.product.detection"),
            MetricRule("flag_rate_normal", False, 0.002, "metrics.test.product.flag_rate_normal"),
            MetricRule("ensemble_auc", True, 0.005, "metrics.ranking.ensemble_auc"),
        ),
        live=(LIVE_RECALL, LIVE_FALSE_ALERTS),
        min_outcomes=20,
    ),
    "demand": ModelGate(
        # Daily forecasts over the whole 30-day horizon, as the training target measures them.
        offline=(
            MetricRule("wape", False, 0.01, "metrics.model.1-30.wape"),
            MetricRule("pinball", False, 0.005, "metrics.model.1-30.pinball"),
        ),
        # Live (agents/demand.py): both versions' forecasts of each realised day, on the forecast
        # days (one horizon day of one forecast) both made; `evaluated` counts those days.
        live=(MetricRule("wape", False, 0.01), MetricRule("pinball", False, 0.005)),
        min_outcomes=200,
        live_basis="evaluated",
    ),
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: list[str]
    comparison: dict[str, Any] = field(default_factory=dict)
    unmeasured: list[str] = field(default_factory=list)  # metrics left out: not measured for both


def metric_value(metrics: Mapping[str, Any], rule: MetricRule) -> Optional[float]:
    """A flat key first, else the rule's dotted path, so a comparison may hold either flat
    metrics or metrics shaped like a manifest's."""
    value: Any = metrics.get(rule.key)
    if value is None and rule.path:
        value = lookup(metrics, rule.path)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def lookup(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def compare(
    candidate: Mapping[str, Any], current: Mapping[str, Any], rules: Sequence[MetricRule],
    names: tuple[str, str] = ("candidate", "current"),
) -> Decision:
    """The candidate may be no worse than the current beyond the tolerance on every rule's
    metric measured for both; a metric either lacks is left out (Decision.unmeasured). Reasons:
    the failures, each with both figures (the candidate's first), when refused; else every check
    and what was left out. `names`: the two versions' ids, for what was left out."""
    new_name, old_name = names
    rows: dict[str, Any] = {}
    passed, failed, unmeasured = [], [], []
    for rule in rules:
        new, old = metric_value(candidate, rule), metric_value(current, rule)
        if new is None or old is None:
            lacking = " and ".join(n for n, v in ((new_name, new), (old_name, old)) if v is None)
            unmeasured.append(f"{rule.key} not measured for {lacking}")
            continue
        ok = rule.worse_by(new, old) <= rule.tolerance
        rows[rule.key] = {"candidate": new, "current": old, "higher_is_better": rule.higher_is_better,
                          "tolerance": rule.tolerance, "ok": ok}
        line = f"{rule.key} {new:.4g} vs {old:.4g} ({rule.describe()})"  # candidate's figure first
        (passed if ok else failed).append(line)
    if not rules:
        failed.append("no metrics to compare")
    if failed:
        return Decision(False, failed, rows, unmeasured)
    if not passed:
        passed.append(f"no metric measured for both on this data, so nothing shows {new_name} is worse than {old_name}")
    return Decision(True, passed + [f"left out: {u}" for u in unmeasured], rows, unmeasured)
