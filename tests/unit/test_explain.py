from datetime import datetime, timezone

import numpy as np
import pytest
import torch

from stream_app.scoring.explain import (
    AlertContext,
    ReplayedAlert,
    explain_model_alert,
    explain_model_alerts,
    explain_rule_alert,
    integrated_gradients,
    mean_baseline,
)
from stream_app.scoring.rules import RuleSet
from tests.unit.maintenance_fixtures import (
    SENSORS,
    encode,
    features_for,
    fleet,
    full_sequence_probabilities,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    random_model,
    trained_model,
)

NOW = datetime(2024, 3, 3, tzinfo=timezone.utc)


def _ctx(**kw) -> AlertContext:
    base = dict(alert_id="a-1", machine_id="M1", event_id="M1-99", event_ts=NOW, model_version="v7",
                probability=0.9, confidence=0.95, decision="p=0.90 >= 0.50 at confidence 0.95 >= 0.85", created_at=NOW)
    return AlertContext(**{**base, **kw})


def _split(model, x: np.ndarray, start: int):
    """State after x[:start] and the inputs from there: what the scorer's checkpoint holds."""
    with torch.no_grad():
        _, _, state = model(torch.from_numpy(x[None, :start])) if start else (None, None, model.init_state(1))
    return state, x[start:]


def _failing_sequence(length: int = 90):
    model, features = trained_model()
    raw, failing, _ = fleet(2, 100, seed=11)
    assert failing[0]
    return model, features, raw[0, :length], encode(features, raw[:1, :length])[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attributions_sum_to_the_output_difference_random_model(seed):
    raw, _, _ = fleet(1, 40, seed=seed, missing=0.1)
    features = features_for(raw)
    model = random_model(features, seed=seed)
    state, x = _split(model, encode(features, raw)[0], 10)
    x = x + np.random.default_rng(seed).normal(0, 1.5, x.shape).astype(np.float32)  # move it off the baseline
    attr = integrated_gradients(model, x, mean_baseline(x, features.n_sensors), state)
    diff = attr.f_input - attr.f_baseline
    assert abs(diff) > 1e-3
    assert attr.values.sum() == pytest.approx(diff, abs=max(0.03 * abs(diff), 1e-3))
    with torch.no_grad():
        logits, _, _ = model(torch.from_numpy(x[None]), state)
    assert attr.f_input == pytest.approx(float(torch.sigmoid(logits[0, -1]).mean()), abs=1e-6)


def test_checkpoint_state_reproduces_the_full_sequence():
    model, features, raw, x = _failing_sequence(80)
    state, tail = _split(model, x, 48)
    attr = integrated_gradients(model, tail, mean_baseline(tail, features.n_sensors), state)
    assert attr.f_input == pytest.approx(float(full_sequence_probabilities(model, features, raw)[-1]), abs=1e-5)


def test_completeness_on_a_saturated_trained_model_refines_the_grid():
    model, features, _, x = _failing_sequence(75)
    state, tail = _split(model, x, 20)
    attr = integrated_gradients(model, tail, mean_baseline(tail, features.n_sensors), state)
    diff = attr.f_input - attr.f_baseline
    assert diff > 0.5  # the ramp makes failure likely; the baseline does not
    assert abs(attr.gap) <= max(0.03 * diff, 1e-3), attr.steps


def test_identical_input_and_baseline_attribute_nothing():
    model, features, _, x = _failing_sequence(40)
    state, tail = _split(model, x, 0)
    attr = integrated_gradients(model, tail, tail.copy(), state)
    assert np.abs(attr.values).max() == 0
    assert attr.f_input == attr.f_baseline


def _model_explanation(length: int = 75):
    # The buffer (last 40 readings) starts before the ramp (the last 60 of 100 readings), so the
    # checkpoint state has not seen any of it.
    model, features, _, x = _failing_sequence(length)
    state, tail = _split(model, x, length - 40)
    ids = [f"M1-{k}" for k in range(length - 40, length)]
    ts = 1.7e9 + 1800.0 * np.arange(len(tail))
    return explain_model_alert(_ctx(), model, features, 24.0, tail, state, ids, ts)


def test_the_ramping_sensor_gets_the_top_attribution_and_a_lowering_counterfactual():
    exp = _model_explanation()
    assert exp.features[0].name == "vibration_hf"
    assert exp.features[0].contribution > 5 * max(abs(c.contribution) for c in exp.features[1:])
    cf = exp.counterfactuals[0]
    assert cf.feature == "vibration_hf"
    assert cf.score_alternative < cf.score_actual - 0.3
    assert cf.actual > cf.alternative  # it ramped up: the typical value is lower
    assert "vibration_hf" in exp.summary and "rising" in exp.summary
    # The most influential readings are the ramp's, and each names its event.
    assert all(t.event_id.startswith("M1-") and t.steps_ago < 40 for t in exp.time_steps)


def test_model_explanation_is_auditable_and_deterministic():
    a, b = _model_explanation(), _model_explanation()
    assert a.decision_source == "model" and a.method == "integrated_gradients"
    assert "v7" in a.text and ">= 0.50" in a.text and "integrated gradients" in a.text
    assert a.inputs_sha256 == b.inputs_sha256 and len(a.inputs_sha256) == 64
    assert _model_explanation(76).inputs_sha256 != a.inputs_sha256
    a.model_validate(a.model_dump())


def test_rule_explanation_lists_every_limit_and_names_the_breached_one():
    rules = RuleSet.with_overrides(None)
    seen = {"vibration_rms": 9.0, "bearing_temp": 70.0, "oil_pressure": 2.0}
    values = np.array([seen.get(s, np.nan) for s in rules.sensors])
    exp = explain_rule_alert(_ctx(model_version=None), rules, values, "model unavailable: no trained model in x")
    assert exp.decision_source == "rule"
    assert len(exp.rules) == 4 and [r.rule for r in exp.rules if r.fired] == ["vibration_rms high limit (physical)"]
    assert exp.counterfactuals[0].feature == "vibration_rms" and exp.counterfactuals[0].alternative == 7.1
    assert "7.1" in exp.summary and "model unavailable" in exp.text
    assert exp.inputs_sha256 != explain_rule_alert(_ctx(), rules, values * 1.01, "x").inputs_sha256


def test_sensor_contributions_combine_value_and_missing_flag():
    """A sensor that is only missing (value imputed at the mean, flag 1) still gets credit."""
    raw, _, _ = fleet(1, 30, seed=3)
    features = features_for(raw)
    model = random_model(features, seed=5)
    x = encode(features, raw)[0]
    hf = SENSORS.index("vibration_hf")
    x[:, hf] = 0.0
    x[:, features.n_sensors + hf] = 1.0
    state, tail = _split(model, x, 0)
    exp = explain_model_alert(_ctx(), model, features, 24.0, tail, state, [f"e{k}" for k in range(30)],
                              1.7e9 + 60.0 * np.arange(30))
    hf_contribution = next(c.contribution for c in exp.features if c.name == "vibration_hf")
    attr = integrated_gradients(model, tail, mean_baseline(tail, features.n_sensors), state)
    assert hf_contribution == pytest.approx(float(attr.values[:, features.n_sensors + hf].sum()), abs=1e-6)
    assert hf_contribution != 0.0


def test_alerts_explained_together_get_what_each_gets_alone():
    """A batch's alerts share one integrated-gradients pass (grouped by replay length, each with
    its own state, refined only where its own gap asks for it): the same explanations."""
    model, features = trained_model()
    raw, _, _ = fleet(4, 90, seed=11)
    x = encode(features, raw)
    alerts = []
    for m, (start, end) in enumerate([(20, 75), (30, 60), (0, 16), (50, 90), (44, 60)]):
        state, tail = _split(model, x[m % 4, :end], start)
        ids = [f"M{m}-{k}" for k in range(start, end)]
        alerts.append(ReplayedAlert(_ctx(alert_id=f"a-{m}", machine_id=f"M{m}"), tail, state, ids,
                                    1.7e9 + 1800.0 * np.arange(len(tail))))
    together = explain_model_alerts(model, features, 24.0, alerts)
    alone = [explain_model_alert(a.ctx, model, features, 24.0, a.inputs, a.state, a.event_ids, a.event_ts) for a in alerts]
    assert [e.alert_id for e in together] == [f"a-{m}" for m in range(5)]
    for t, a in zip(together, alone):
        assert [c.name for c in t.features] == [c.name for c in a.features]
        assert [c.contribution for c in t.features] == pytest.approx([c.contribution for c in a.features], abs=1e-5)
        assert [s.event_id for s in t.time_steps] == [s.event_id for s in a.time_steps]
        assert [c.score_alternative for c in t.counterfactuals] == pytest.approx(
            [c.score_alternative for c in a.counterfactuals], abs=1e-5)
        assert t.inputs_sha256 == a.inputs_sha256
