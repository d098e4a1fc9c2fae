"""The alert threshold a maintenance version serves: the validation sweep that measures false
alerts and caught failures per threshold, the choice for a false-alert budget, its manifest
form, and a worker with another budget reading its threshold off the stored curve."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.scoring.operating_point import NEVER, CurvePoint, OperatingPoint, choose
from stream_app.settings import MaintenanceSettings
from stream_app.training.alert_threshold import ValidationLife, operating_point, sweep

CURVE = (
    CurvePoint(0.1, 0.50, 1.0, 0.2),
    CurvePoint(0.2, 0.12, 1.0, 0.5),
    CurvePoint(0.3, 0.08, 0.9, 0.6),  # within 0.1 ...
    CurvePoint(0.4, 0.11, 0.9, 0.6),  # ... but a higher threshold is not: a lucky dip, not chosen
    CurvePoint(0.5, 0.06, 0.8, 0.7),
    CurvePoint(0.7, 0.02, 0.6, 0.9),
    CurvePoint(0.9, 0.00, 0.2, None),
)


def test_choose_the_lowest_threshold_that_keeps_the_budget_from_there_up() -> None:
    assert choose(CURVE, 0.1) == 0.5
    assert choose(CURVE, 0.2) == 0.2
    assert choose(CURVE, 1.0) == 0.1
    assert choose(CURVE, 0.1, min_precision=0.8) == 0.7
    assert choose(CURVE, 0.1, min_precision=0.95) == NEVER  # no threshold reaches it: nothing alerts
    assert choose((CurvePoint(0.5, 0.3, 1.0, 0.5),), 0.1) == NEVER


def test_manifest_round_trip_and_another_budget_reads_the_same_curve() -> None:
    point = OperatingPoint(0.5, 0.1, None, CURVE)
    again = OperatingPoint.from_manifest(point.to_manifest())
    assert again == point
    assert again.threshold_for(MaintenanceSettings()) == 0.5  # the budget it was chosen for
    assert again.threshold_for(MaintenanceSettings(false_alert_budget=0.2)) == 0.2
    assert again.threshold_for(MaintenanceSettings(min_precision=0.8)) == 0.7
    assert "0.06 false alerts per machine-day, 80% of failures alerted" in again.describe(0.5)


@pytest.mark.parametrize("bad", [
    {"threshold": 1.5, "false_alert_budget": 0.1},
    {"threshold": 0.5, "false_alert_budget": "0.1"},
    {"threshold": 0.5, "false_alert_budget": 0.1, "curve": [[0.5, 0.1]]},
    {"threshold": 0.5, "false_alert_budget": 0.1, "min_precision": 2},
    [0.5],
])
def test_malformed_decisions_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        OperatingPoint.from_manifest(bad)


def _life(hours: np.ndarray, failure_h, in_val_from: float, horizon: float = 24.0) -> ValidationLife:
    t = hours * 3600.0
    y = np.zeros(len(t))
    if failure_h is not None:
        y = ((failure_h - hours) <= horizon).astype(float)
    return ValidationLife(t, hours >= in_val_from, y, np.ones(len(t), bool), None if failure_h is None else failure_h * 3600.0)


def test_sweep_counts_alerts_as_a_worker_emits_them() -> None:
    """Two machines over 100 h of validation, readings every hour. The failing one's probability
    rises from 40 h before its failure at 100 h; the healthy one has a 3-hour blip at 50 h."""
    hours = np.arange(0.0, 100.0)
    failing, healthy = _life(hours, 100.0, 0.0), _life(hours, None, 0.0)
    p_fail = np.clip((hours - 60.0) / 40.0, 0.0, 1.0)
    p_ok = np.where((hours >= 50) & (hours < 53), 0.6, 0.01)
    curve = sweep([failing, healthy], [p_fail, p_ok], horizon_hours=24.0, interval_minutes=60.0, cooldown_s=6 * 3600)
    machine_days = 200 / 24
    # at 0.5: the failing machine alerts from 80 h (20 h before failure: a true alert) every 6 h,
    # the healthy blip once (false)
    point = min(curve, key=lambda c: abs(c.threshold - 0.5))
    assert point.failure_recall == 1.0
    assert point.false_alerts_per_machine_day == pytest.approx(1 / machine_days)
    assert point.precision == pytest.approx(4 / 5)  # alerts at 80, 86, 92, 98 h and the blip
    # above the blip, no false alert; near 0.3 the failing machine alerts 28 h before (one early
    # alert, then every 6 h within the horizon) and the blip alerts too
    high = min(curve, key=lambda c: abs(c.threshold - 0.7))
    assert high.false_alerts_per_machine_day == 0.0 and high.failure_recall == 1.0
    near = min(curve, key=lambda c: abs(c.threshold - 0.3))
    assert 0.275 < near.threshold <= 0.3
    assert near.false_alerts_per_machine_day == pytest.approx(2 / machine_days)
    thresholds = [c.threshold for c in curve]
    assert thresholds == sorted(set(thresholds))
    # a budget of 0.1 per machine-day allows no false alert here: above the blip
    assert 0.6 < operating_point(curve, 0.1, None, fallback=0.5).threshold <= 0.7
    # 0.15 allows one: the blip, but no early alert on the failing machine (from 24 h before it)
    assert 0.35 < operating_point(curve, 0.15, None, fallback=0.5).threshold <= 0.4
    assert operating_point([], 0.1, None, fallback=0.5).threshold == 0.5  # no validation slice


def test_sweep_ignores_readings_outside_the_validation_slice() -> None:
    hours = np.arange(0.0, 200.0)
    healthy = _life(hours, None, 150.0)
    p = np.where(hours < 100, 0.9, 0.01)  # alarms long before the slice do not count
    (point,) = [c for c in sweep([healthy], [p], 24.0, 60.0, 6 * 3600) if c.threshold == pytest.approx(0.5, abs=0.4)][:1]
    assert point.false_alerts_per_machine_day == 0.0
