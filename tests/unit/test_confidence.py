"""Confidence factors and calibration: what a prediction's confidence and probability mean."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.scoring.confidence import (
    MIN_SPREAD_REFERENCE,
    SPREAD_PENALTY,
    Calibration,
    confidence,
    decisiveness,
    spread_reference_from,
)
from stream_app.training.maintenance import fit_platt
from stream_app.training.report import brier, reliability_bins
from tests.unit.maintenance_fixtures import one_torch_thread  # noqa: F401 (autouse fixture)

NONE4 = np.zeros((3, 4), dtype=bool)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_confidence_factors_multiply():
    heads = np.array([[0.5, 0.5, 0.5, 0.5], [0.425, 0.575, 0.425, 0.575], [0.0, 1.0, 0.0, 1.0]])
    got = confidence(heads, NONE4, NONE4, np.array([12, 12, 12]), 12)
    # no spread reference (an older manifest): agreement = 1 - 2 std
    np.testing.assert_allclose(got.agreement, [1.0, 0.85, 0.0])
    np.testing.assert_allclose(got.decisiveness, [0.5, 0.5, 0.5])  # every row averages 0.5: a coin
    assert np.isnan(got.spread_ratio).all()
    imputed = NONE4.copy()
    imputed[0, 0] = True
    clipped = NONE4.copy()
    clipped[1, :] = True
    sure = np.full((3, 4), 0.02)
    got = confidence(sure, imputed, clipped, np.array([3, 12, 40]), 12)
    np.testing.assert_allclose(got.data_quality, [0.9, 0.75, 1.0])
    np.testing.assert_allclose(got.warm_up, [0.25, 1.0, 1.0])
    np.testing.assert_allclose(got.decisiveness, 0.98)
    np.testing.assert_allclose(got.total, np.array([0.225, 0.75, 1.0]) * 0.98)


def test_confidence_is_low_near_one_half_and_high_far_from_it():
    p = np.array([0.02, 0.15, 0.4, 0.5, 0.52, 0.6, 0.85, 0.97])
    heads = np.repeat(p[:, None], 3, axis=1)  # heads agree exactly
    none = np.zeros((len(p), 2), dtype=bool)
    total = confidence(heads, none, none, np.full(len(p), 50), 12, spread_reference=0.04).total
    np.testing.assert_allclose(total, [0.98, 0.85, 0.6, 0.5, 0.52, 0.6, 0.85, 0.97])
    gate = total >= 0.85
    assert gate.tolist() == [True, True, False, False, False, False, True, True]
    # the decision at another threshold: p 0.6 is a "no alert" at 0.7, right with probability 0.4
    np.testing.assert_allclose(decisiveness(np.array([0.6, 0.75]), threshold=0.7), [0.4, 0.75])


def test_unusual_spread_lowers_agreement():
    ref = 0.04
    centre = 0.9
    # four heads at centre -/+ d have std d
    spreads = np.array([0.0, 0.004, ref, 2 * ref, 10 * ref])
    heads = np.stack([centre - spreads, centre + spreads, centre - spreads, centre + spreads], axis=1)
    none = np.zeros((len(spreads), 1), dtype=bool)
    got = confidence(heads, none, none, np.full(len(spreads), 50), 12, probability=np.full(len(spreads), centre),
                     spread_reference=ref)
    np.testing.assert_allclose(got.spread, spreads, atol=1e-12)
    np.testing.assert_allclose(got.spread_ratio, [0, 0.1, 1, 2, 10], atol=1e-9)
    np.testing.assert_allclose(got.agreement, [1.0, 1 - SPREAD_PENALTY * 0.1, 0.85, 0.70, 0.0], atol=1e-9)
    assert np.all(np.diff(got.total) < 0)  # more unusual, less confident, at the same probability
    # the same spreads on the old absolute scale barely register: that was the problem
    old = confidence(heads[:3], none[:3], none[:3], np.full(3, 50), 12)
    assert old.agreement[2] > 0.9
    # a reference is never below the noise floor
    tiny = confidence(heads[:2], none[:2], none[:2], np.full(2, 50), 12, spread_reference=1e-9)
    np.testing.assert_allclose(tiny.agreement[1], 1 - SPREAD_PENALTY * 0.004 / MIN_SPREAD_REFERENCE)
    assert spread_reference_from(np.r_[np.zeros(99), 5.0], 0.5) == MIN_SPREAD_REFERENCE
    assert spread_reference_from(np.linspace(0, 1, 101), 0.99) == pytest.approx(0.99)
    assert spread_reference_from(np.array([])) is None


def test_calibration_from_manifest():
    identity = Calibration.from_manifest(None)  # an older manifest
    heads = np.array([[0.1, 0.3], [0.999, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(identity.ensemble(heads), heads.astype(np.float64).mean(axis=1))
    platt = Calibration.from_manifest({"method": "platt", "a": 0.5, "b": -1.0})
    raw = heads.astype(np.float64).mean(axis=1)
    expected = _sigmoid(0.5 * np.log(raw / (1 - raw)) - 1.0)
    np.testing.assert_allclose(platt.ensemble(heads)[:1], expected[:1], rtol=1e-9)
    assert 0 < platt.ensemble(heads)[1] < 1  # a saturated head is clipped, not infinite
    np.testing.assert_allclose(platt.heads(heads)[0], _sigmoid(0.5 * np.log(heads[0] / (1 - heads[0])) - 1.0), rtol=1e-6)
    assert Calibration.from_manifest(platt.to_manifest()) == platt
    for bad in ({"method": "platt", "a": -1.0, "b": 0.0}, {"method": "platt", "a": 1.0}, {"method": "isotonic"},
                {"method": "platt", "a": float("nan"), "b": 0.0}, "platt", {"method": "platt", "a": True, "b": 0}):
        with pytest.raises(ValueError):
            Calibration.from_manifest(bad)


def _mis_scaled(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities sigmoid(z); a model reporting sigmoid(2 z + 1.5):
    overconfident and inflated, as pos_weight training makes it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.0, 1.5, n)
    y = (rng.random(n) < _sigmoid(z)).astype(np.float32)
    return _sigmoid(2.0 * z + 1.5), y


def test_platt_scaling_brings_a_mis_scaled_model_to_observed_rates():
    raw_fit, y_fit = _mis_scaled(20_000, seed=1)
    raw_test, y_test = _mis_scaled(20_000, seed=2)
    cal, info = fit_platt(raw_fit, y_fit)
    assert cal.method == "platt" and "note" not in info
    assert cal.a == pytest.approx(0.5, abs=0.05) and cal.b == pytest.approx(-0.75, abs=0.1)
    calibrated = cal.probability(raw_test)
    before, after = brier(y_test, raw_test), brier(y_test, calibrated)
    assert after < before - 0.01
    gap = {}
    for name, p in (("raw", raw_test), ("calibrated", calibrated)):
        rows = [r for r in reliability_bins(y_test, p) if r["n"] >= 200]
        gap[name] = max(abs(r["mean_predicted"] - r["observed"]) for r in rows)
    assert gap["calibrated"] < 0.05 < gap["raw"]


def test_platt_scaling_refuses_what_it_cannot_fit():
    raw, y = _mis_scaled(500, seed=3)
    y[:] = 0
    y[:3] = 1
    cal, info = fit_platt(raw, y, min_class=5)
    assert cal.identity and "fewer than 5" in info["note"]
    # an anti-correlated score would need a < 0: refused, identity
    raw, y = _mis_scaled(5000, seed=4)
    cal, info = fit_platt(1 - raw, y)
    assert cal.identity and "not increasing" in info["note"]


def test_reliability_bins_and_brier_by_hand():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.12, 0.95, 1.0])
    rows = reliability_bins(y, p, bins=2)
    assert [r["n"] for r in rows] == [3, 2]
    assert rows[0]["mean_predicted"] == pytest.approx(0.32 / 3) and rows[0]["observed"] == pytest.approx(1 / 3)
    assert rows[1]["observed"] == 1.0
    assert brier(y, p) == pytest.approx((0.05**2 + 0.15**2 + 0.88**2 + 0.05**2 + 0) / 5)
