"""The decision policy of a version with a stored operating point: the model decides whenever it
is in its depth and alerts at the version's threshold (a moderate probability is an answer);
the rules take over on warm-up, an unseen regime or poor data, and check learned
rate-of-change limits. Versions without an operating point keep the older policy."""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
import pytest

from schemas.sensor import SensorReading
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import MaintenanceSettings
from tests.unit.maintenance_fixtures import (
    T0,
    fleet,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    readings_for,
    trained_model,
    write_artifact,
)

CURVE = [[0.05, 0.9, 1.0, 0.2], [0.2, 0.3, 1.0, 0.5], [0.3, 0.08, 1.0, 0.7], [0.6, 0.02, 0.8, 0.9],
         [0.9, 0.0, 0.5, 1.0]]
DECISION = {"threshold": 0.3, "false_alert_budget": 0.1, "min_precision": None, "curve": CURVE}
NO_COOLDOWN = MaintenanceSettings(alert_cooldown_s=0)


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    model, features = trained_model()
    return write_artifact(tmp_path / "store", model, features, decision=DECISION)


def _failing_readings(machine: str = "F1", mode: str = "run") -> list[SensorReading]:
    raw, failing, _ = fleet(2, 100, seed=21)
    assert failing[0]
    return [r.model_copy(update={"operating_mode": mode}) for r in readings_for(machine, raw[0])]


def test_the_model_decides_in_its_depth_and_alerts_at_the_stored_threshold(registry):
    scorer = MaintenanceScorer.load(registry, NO_COOLDOWN)
    assert scorer.threshold == 0.3
    out = scorer.score_batch(_failing_readings())
    p = np.array([o.prediction.failure_probability for o in out])
    by_model = np.array([o.prediction.decision_source == "model" for o in out])
    # warm-up (11 of 12 readings = 0.92 >= 0.85) is the only hand-over: the heads agree, no data is missing
    assert not by_model[:10].any() and by_model[10:].all()
    moderate = by_model & (p > 0.15) & (p < 0.85)
    assert moderate.any(), "the ramp must pass through moderate probabilities"
    np.testing.assert_array_equal([o.prediction.alert for o in out], by_model & (p >= 0.3))
    first = next(o for o in out if o.alert is not None)
    assert first.alert.decision_source == "model"
    assert "(the alert threshold for 0.1 false alerts per machine-day) at competence" in first.prediction.reason
    # confidence still ranks: the calibrated chance the decision is right, times competence
    conf = np.array([o.prediction.confidence for o in out])
    assert (conf[by_model & (p >= 0.3)] <= p[by_model & (p >= 0.3)] + 1e-9).all()


def test_the_older_policy_hands_moderate_probabilities_to_the_rules(tmp_path):
    model, features = trained_model()
    old = MaintenanceScorer.load(write_artifact(tmp_path, model, features), NO_COOLDOWN)
    assert old.threshold == 0.5
    out = old.score_batch(_failing_readings())
    p = np.array([o.prediction.failure_probability for o in out])
    by_model = np.array([o.prediction.decision_source == "model" for o in out])
    assert not by_model[(p > 0.2) & (p < 0.8)].any()  # decisiveness gates: the rules decide there


def test_another_budget_reads_its_threshold_off_the_stored_curve(registry):
    assert MaintenanceScorer.load(registry, MaintenanceSettings(false_alert_budget=0.5)).threshold == 0.2
    assert MaintenanceScorer.load(registry, MaintenanceSettings(false_alert_budget=0.05)).threshold == 0.6
    assert MaintenanceScorer.load(registry, MaintenanceSettings(min_precision=0.95)).threshold == 0.9


def test_an_unseen_operating_mode_is_out_of_the_models_depth(registry):
    scorer = MaintenanceScorer.load(registry, NO_COOLDOWN)
    out = scorer.score_batch(_failing_readings(mode="overload"))
    assert all(o.prediction.decision_source == "rule" for o in out)
    assert "unseen regime: machine type 'press', operating mode 'overload'" in out[-1].prediction.reason
    assert out[-1].prediction.reason.startswith("rules decided (model out of its depth: competence 0.00 < 0.85")
    assert out[-1].prediction.failure_probability > 0.5  # what the model thought is still reported
    # a reading without a mode is not unfamiliar
    none = scorer.score_batch([r.model_copy(update={"operating_mode": None, "machine_id": "N"})
                               for r in _failing_readings()])
    assert none[-1].prediction.decision_source == "model"


def test_a_malformed_operating_point_makes_the_version_unusable(tmp_path, caplog):
    model, features = trained_model()
    registry = write_artifact(tmp_path, model, features, decision={"threshold": "high"})
    with caplog.at_level(logging.WARNING):
        scorer = MaintenanceScorer.load(registry, MaintenanceSettings())
    assert scorer.model_version is None
    assert any("decision threshold" in r.message for r in caplog.records)


def _reading(machine: str, minutes: float, **sensors) -> SensorReading:
    return SensorReading(event_id=f"{machine}-{minutes}", machine_id=machine, ts=T0 + timedelta(minutes=minutes),
                         sensors=sensors)


def test_rules_check_learned_rates_of_change_between_consecutive_readings(tmp_path):
    _, features = trained_model()
    registry = write_artifact(tmp_path, None, features, rule_rates={"bearing_temp": 4.0}, rule_rate_max_gap_hours=1.0)
    scorer = MaintenanceScorer.load(registry, NO_COOLDOWN)  # the weights are missing: rules only
    assert scorer.model_version is None
    out = scorer.score_batch([
        _reading("A", 0, bearing_temp=60.0), _reading("A", 30, bearing_temp=61.0),  # 2 °C/h: fine
        _reading("A", 60, bearing_temp=65.0),  # 8 °C/h: twice the limit
        _reading("B", 0, bearing_temp=60.0), _reading("B", 30, bearing_temp=None),
        _reading("B", 60, bearing_temp=64.0),  # the previous reading lacked it: no rate
        _reading("C", 0, bearing_temp=60.0), _reading("C", 120, bearing_temp=70.0),  # 2 h apart: beyond the gap
    ])
    alerts = [o.prediction.alert for o in out]
    assert alerts == [False, False, True, False, False, False, False, False]
    fired = out[2]
    assert "bearing_temp changed 8/h > 4/h (trained rate-of-change limit, +100%)" in fired.prediction.reason
    checks = {c.rule: c for c in fired.explanation.rules}
    rate = checks["bearing_temp rate of change per hour (trained)"]
    assert rate.fired and rate.value == pytest.approx(8.0) and rate.limit == 4.0
    assert "changed by at most 4 per hour" in fired.explanation.counterfactuals[0].text


def test_model_alerts_with_trend_columns_are_explained_per_sensor(tmp_path):
    """A spec with per-mode scaling and the trend memory: a sensor's contribution gathers its
    value, flag and trend columns, and the values are read back in the reading's mode's units."""
    from stream_app.features.maintenance import MaintenanceFeatures
    from tests.unit.maintenance_fixtures import SENSORS, random_model

    rng = np.random.default_rng(0)
    modes = ["idle", "run"] * 150
    raw = rng.normal([2.5, 60.0, 75.0, 3.0, 0.4], [0.3, 2.0, 3.0, 0.1, 0.08], (300, 5))
    features = MaintenanceFeatures.fit(raw, SENSORS, ["press"], ["idle", "run"], modes=modes,
                                       trend_alphas=[0.3, 0.05], baseline_steps=6)
    model = random_model(features, hidden=8, layers=1, heads=3)
    decision = {**DECISION, "threshold": 0.0}  # every reading the model decides alerts
    registry = write_artifact(tmp_path, model, features, decision=decision, warmup_steps=1)
    scorer = MaintenanceScorer.load(registry, MaintenanceSettings(alert_cooldown_s=0, explain_window=8))
    readings = [r.model_copy(update={"machine_type": "press"}) for r in _failing_readings()[:20]]
    out = scorer.score_batch(readings)
    last = out[-1]
    assert last.alert is not None and last.explanation is not None
    e = last.explanation
    assert {c.name for c in e.features} <= set(SENSORS) and len(e.features) == 5
    # every input column the explanation moves belongs to one sensor: the five sensors'
    # contributions add up to the whole change in probability the text states
    import re

    change = float(re.search(r"p\(input\)-p\(baseline\) = ([-+]?\d+\.\d+)", e.text).group(1))
    assert sum(c.contribution for c in e.features) == pytest.approx(change, abs=max(0.03 * abs(change), 2e-3))
    reading = readings[-1].sensors
    for c in e.features:  # values in the sensor's units (per-mode scaling undone)
        assert c.value == pytest.approx(reading[c.name], rel=1e-2, abs=1e-2)
    assert "attributions sum to" in e.text
