import math

import numpy as np
import pytest

from stream_app.scoring.rules import DEFAULT_LIMITS, RuleSet


def _values(rules: RuleSet, **given: float) -> np.ndarray:
    return np.array([given.get(s, math.nan) for s in rules.sensors])


def test_defaults_cover_the_standard_sensors():
    rules = RuleSet.with_overrides(None)
    assert set(rules.sensors) == set(DEFAULT_LIMITS)
    checks = {c.rule: c.limit for c in rules.checks(_values(rules))}
    assert checks == {
        "vibration_rms high limit (physical)": 7.1,
        "bearing_temp high limit (physical)": 95.0,
        "motor_temp high limit (physical)": 110.0,
        "oil_pressure low limit (physical)": 1.2,
    }


def test_manifest_numbers_win_per_side_and_nulls_keep_the_defaults():
    rules = RuleSet.with_overrides({
        "vibration_rms": {"high": 9.0},  # high overridden
        "oil_pressure": {"low": None, "high": 6.0},  # low unknown to the trainer: default stays; high added
        "vibration_hf": {"low": None, "high": 1.0},  # a sensor without default
        "motor_temp": {"low": None, "high": None},  # nothing known: the default stays
        "humidity": {"low": None, "high": None},  # nothing known, no default: not checked
    })
    limits = {c.rule: c.limit for c in rules.checks(_values(rules))}
    assert limits == {
        "vibration_rms high limit (trained)": 9.0,
        "bearing_temp high limit (physical)": 95.0,
        "motor_temp high limit (physical)": 110.0,
        "oil_pressure low limit (physical)": 1.2,
        "oil_pressure high limit (trained)": 6.0,
        "vibration_hf high limit (trained)": 1.0,
    }
    assert "humidity" not in rules.sensors


@pytest.mark.parametrize(
    "bad", [{"x": {"high": "7"}}, {"x": {"high": math.inf}}, {"x": {"low": 5, "high": 1}}, {"x": 3}]
)
def test_malformed_limits_are_rejected(bad):
    with pytest.raises(ValueError):
        RuleSet.with_overrides(bad)


def test_exceedance_is_normalised_by_the_limit_and_zero_inside():
    rules = RuleSet.with_overrides(None)
    values = np.stack([
        _values(rules, vibration_rms=7.1, oil_pressure=1.2),  # exactly at the limits: fine
        _values(rules, vibration_rms=8.52),  # 20 % above
        _values(rules, oil_pressure=0.9),  # 25 % below
        _values(rules),  # nothing observed: nothing to check
    ])
    got = rules.exceedance(values)
    vib, oil = rules.sensors.index("vibration_rms"), rules.sensors.index("oil_pressure")
    assert got[0].max() == 0
    assert got[1, vib] == pytest.approx(0.2)
    assert got[2, oil] == pytest.approx(0.25)
    assert got[3].max() == 0 and not np.isnan(got).any()


def test_violations_sorted_and_checks_list_every_limit():
    rules = RuleSet.with_overrides(None)
    row = _values(rules, vibration_rms=7.5, bearing_temp=120.0, motor_temp=80.0)
    found = rules.violations(row)
    assert [v.sensor for v in found] == ["bearing_temp", "vibration_rms"]
    assert "bearing_temp 120 > 95 (physical high limit, +26%)" == found[0].describe()
    checks = rules.checks(row)
    assert len(checks) == 4
    fired = {c.rule for c in checks if c.fired}
    assert fired == {"bearing_temp high limit (physical)", "vibration_rms high limit (physical)"}
    oil = next(c for c in checks if c.rule.startswith("oil_pressure"))
    assert oil.value is None and not oil.fired
