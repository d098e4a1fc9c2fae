"""The alert threshold a maintenance model version serves, and the operating point it was chosen for.

A planner does not think in probabilities; they think in false alarms they can afford and
failures they must not miss. So the trainer sweeps the alert threshold on the calibrated
failure probability over its (time-ordered) validation slice, streaming each life as a worker
would (one alert per machine per cooldown), and records per threshold: false alerts per
machine-day, the share of validation failures alerted within the horizon, and alert precision.
The served threshold is the lowest one whose false alerts stay within the budget
(`MAINTENANCE__FALSE_ALERT_BUDGET`, per machine-day) and, if set, whose precision reaches
`MAINTENANCE__MIN_PRECISION`: the most failures caught at the false-alert rate the user accepts.

The manifest stores the whole curve with the threshold ("decision"), so a worker whose settings
name another budget picks that budget's threshold from the same curve, without retraining.
A version without "decision" (trained before it existed) is served by the older policy
(settings.alert_probability, confidence gate including decisiveness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

# Above this the curve has no threshold left to offer: nothing alerts.
NEVER = 1.0


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    false_alerts_per_machine_day: float
    failure_recall: Optional[float]  # None: no validation failure to judge by
    precision: Optional[float]  # None: no alert

    def to_list(self) -> list[Optional[float]]:
        return [self.threshold, self.false_alerts_per_machine_day, self.failure_recall, self.precision]


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    false_alert_budget: float
    min_precision: Optional[float]
    curve: tuple[CurvePoint, ...]  # ascending thresholds

    @classmethod
    def from_manifest(cls, value: Any) -> "OperatingPoint":
        """Raises ValueError for anything but a well-formed "decision" object."""
        if not isinstance(value, Mapping):
            raise ValueError(f"manifest 'decision' must be an object, not {value!r}")
        threshold = _number(value.get("threshold"), "threshold", 0.0, 1.0)
        budget = _number(value.get("false_alert_budget"), "false_alert_budget", 0.0, math.inf)
        precision = value.get("min_precision")
        precision = None if precision is None else _number(precision, "min_precision", 0.0, 1.0)
        points = []
        for row in value.get("curve") or []:
            if not isinstance(row, (list, tuple)) or len(row) != 4:
                raise ValueError(f"manifest decision curve rows are [threshold, false/day, recall, precision], not {row!r}")
            points.append(CurvePoint(_number(row[0], "curve threshold", 0.0, 1.0),
                                     _number(row[1], "curve false alerts", 0.0, math.inf),
                                     None if row[2] is None else _number(row[2], "curve recall", 0.0, 1.0),
                                     None if row[3] is None else _number(row[3], "curve precision", 0.0, 1.0)))
        return cls(threshold, budget, precision, tuple(sorted(points, key=lambda p: p.threshold)))

    def to_manifest(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "false_alert_budget": self.false_alert_budget,
            "min_precision": self.min_precision,
            "curve": [p.to_list() for p in self.curve],
        }

    def threshold_for(self, settings: Any) -> float:
        """The threshold for the settings' operating point: the stored one when they name the
        budget it was chosen for, else the curve's choice for theirs."""
        budget = float(getattr(settings, "false_alert_budget", self.false_alert_budget))
        precision = getattr(settings, "min_precision", self.min_precision)
        if math.isclose(budget, self.false_alert_budget) and precision == self.min_precision:
            return self.threshold
        return choose(self.curve, budget, precision) if self.curve else self.threshold

    def describe(self, threshold: float) -> str:
        """Where a threshold stands on the validation curve, in a planner's words."""
        point = next((p for p in self.curve if p.threshold >= threshold - 1e-12), None)
        if point is None:
            return f"alert threshold {threshold:.3g}"
        recall = "" if point.failure_recall is None else f", {point.failure_recall:.0%} of failures alerted"
        return (f"alert threshold {threshold:.3g} (validation: {point.false_alerts_per_machine_day:.3g} false alerts "
                f"per machine-day{recall})")


def choose(curve: Sequence[CurvePoint], budget: float, min_precision: Optional[float] = None) -> float:
    """The lowest threshold of `curve` within the false-alert budget (and reaching min_precision,
    if given) from which every higher threshold stays within the budget too, so that a lucky
    dip of the validation counts does not pick a threshold whose neighbours break the budget.
    NEVER when no threshold qualifies."""
    chosen = NEVER
    for point in sorted(curve, key=lambda p: -p.threshold):
        if point.false_alerts_per_machine_day > budget:
            break
        if min_precision is None or (point.precision is not None and point.precision >= min_precision):
            chosen = point.threshold
    return chosen


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"manifest decision {name} must be a number in [{low:g}, {high:g}], not {value!r}")
    return float(value)
