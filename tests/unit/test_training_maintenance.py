"""Training of the maintenance model: lives and labels (censoring, the cutoff leak), the
time-ordered split, baselines and metrics, and a tiny end-to-end run that writes a loadable
registry version which beats a coin on held-out data."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest
import torch

from schemas.sensor import MaintenanceOutcome, SensorReading
from stream_app.features.maintenance import MaintenanceFeatures
from stream_app.models.maintenance_lstm import MaintenanceLSTM
from stream_app.registry import ModelRegistry
from stream_app.training import maintenance as mt
from stream_app.training.baselines import rolling_features
from stream_app.training.maintenance import TTF_EXACT, TTF_LOWER, TTF_NONE, TrainConfig, life_labels
from stream_app.scoring.confidence import Calibration
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import MaintenanceSettings
from stream_app.scoring.operating_point import OperatingPoint, choose
from stream_app.training import baseline_store
from stream_app.training import evaluate_policy as ep
from stream_app.training.report import Report, average_precision, roc_auc, threshold_metrics

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
H = 24.0
CAP = 96.0

MANIFEST_KEYS = {
    "hyperparameters",
    "features",
    "horizon_hours",
    "ttf_cap_hours",
    "interval_minutes",
    "rule_limits",
    "warmup_steps",
    "metrics",
    "data_fingerprint",
    "train_config",
    "split",
    "calibration",
    "confidence",
    "decision",
    "baselines",
    "rule_rates",
}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- a tiny synthetic fleet: one sensor ramps over the last `ramp` readings before a failure ----
def reading(machine: str, step: int, cycle: Optional[int], values: dict[str, Optional[float]], mode: str = "run") -> SensorReading:
    return SensorReading(
        event_id=f"{machine}-{step}",
        machine_id=machine,
        ts=T0 + timedelta(minutes=30 * step),
        machine_type="pump",
        operating_mode=mode,
        cycle=cycle,
        sensors=values,
    )


def outcome(machine: str, hours: float, kind: str = "failure", suffix: str = "") -> MaintenanceOutcome:
    return MaintenanceOutcome(
        event_id=f"{machine}-{kind}-{hours}{suffix}", machine_id=machine, ts=T0 + timedelta(hours=hours), outcome=kind
    )


def synthetic_fleet(
    n_machines: int = 12, lives: int = 3, seed: int = 0, ramp: int = 60
) -> tuple[list[SensorReading], list[MaintenanceOutcome]]:
    """Machines run lives of 150-300 readings back to back (30 min apart); before each failure
    `temp` ramps up by 4 sd over `ramp` readings; `noise` is noise. The last life of every second
    machine ends in the data end (censored) instead of a failure."""
    rng = np.random.default_rng(seed)
    readings, outcomes = [], []
    for m in range(n_machines):
        machine = f"m{m:02d}"
        step = int(rng.integers(0, 40))
        for life in range(lives):
            length = int(rng.integers(150, 300))
            censored = life == lives - 1 and m % 2 == 1
            for c in range(length):
                to_end = length - c
                temp = 60 + rng.normal() + (4.0 * max(0, ramp - to_end) / ramp if not censored else 0.0)
                readings.append(reading(machine, step, c, {"temp": float(temp), "noise": float(rng.normal())}))
                step += 1
            if not censored:
                outcomes.append(outcome(machine, (step - 1) * 0.5 + 0.25))
            step += 4  # repair downtime
    return readings, outcomes


# --- lives ----------------------------------------------------------------------------------------
def test_lives_split_at_outcomes_and_cycle_resets() -> None:
    m = "a"
    readings = [reading(m, s, c, {"x": 1.0}) for s, c in [(0, 0), (1, 1), (2, 2), (3, 0), (4, 1), (5, 0), (6, 1), (7, 2)]]
    outcomes = [
        outcome(m, -5.0, suffix="before-first-reading"),  # attaches to no life
        outcome(m, 1.0),  # exactly at step 2's time: step 2 still belongs to the ending life
        outcome(m, 1.2, suffix="second-in-gap"),  # a second outcome with no reading in between
        outcome(m, 2.1, "repair"),  # between steps 4 and 5
    ]
    lives, stats = mt.split_lives(readings, outcomes)
    assert [len(l) for l in lives] == [3, 2, 3]
    assert [l.end for l in lives] == ["failure", "repair", "censored"]
    assert lives[0].end_t == (T0 + timedelta(hours=1.0)).timestamp()
    assert lives[2].end_t == readings[-1].ts.timestamp()  # censored at its last reading
    assert stats.unattached_outcomes == 2
    assert (stats.failures, stats.repairs, stats.censored) == (1, 1, 1)

    # a cycle reset without an outcome ends a life too (end unknown: censored)
    lives, stats = mt.split_lives(readings, [])
    assert [len(l) for l in lives] == [3, 2, 3]
    assert all(l.end == "censored" for l in lives)
    assert stats.cycle_resets_without_outcome == 2


def test_lives_sort_by_time_and_keep_machines_apart() -> None:
    readings = [reading("b", 1, 1, {"x": 1.0}), reading("a", 0, 0, {"x": 1.0}), reading("b", 0, 0, {"x": 1.0})]
    lives, _ = mt.split_lives(readings, [outcome("a", 10.0)])
    by_machine = {l.machine_id: l for l in lives}
    assert [readings[i].event_id for i in by_machine["b"].rows] == ["b-0", "b-1"]
    assert by_machine["a"].end == "failure" and by_machine["b"].end == "censored"


# --- labels ---------------------------------------------------------------------------------------
def _times(hours_before_end: list[float], end: float = 1000.0) -> np.ndarray:
    return np.array([(end - h) * 3600.0 for h in hours_before_end])


def test_failure_labels_horizon_and_cap() -> None:
    t = _times([200.0, 96.0, 24.5, 24.0, 3.0, 0.0])
    lab = life_labels(t, "failure", 1000.0 * 3600, H, CAP)
    assert lab.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert lab.y_mask.all()
    assert (lab.ttf_kind == TTF_EXACT).all()
    np.testing.assert_allclose(lab.ttf, [1.0, 1.0, 24.5 / CAP, 24.0 / CAP, 3.0 / CAP, 0.0], rtol=1e-6)
    np.testing.assert_allclose(lab.ttf_hours, [200.0, 96.0, 24.5, 24.0, 3.0, 0.0])


@pytest.mark.parametrize("end", ["censored", "repair"])
def test_censored_labels_are_masked_near_the_end(end: str) -> None:
    t = _times([200.0, 50.0, 24.5, 24.0, 10.0, 0.0])
    lab = life_labels(t, end, 1000.0 * 3600, H, CAP)
    assert lab.y.sum() == 0  # a censored life never gives a positive
    assert lab.y_mask.tolist() == [True, True, True, False, False, False]  # known only beyond the horizon
    assert (lab.ttf_kind == TTF_LOWER).all()  # TTF is only a lower bound
    np.testing.assert_allclose(lab.ttf, [1.0, 50 / CAP, 24.5 / CAP, 24 / CAP, 10 / CAP, 0.0], rtol=1e-6)
    assert np.isnan(lab.ttf_hours).all()


def test_cutoff_masks_labels_that_depend_on_a_later_failure() -> None:
    """The leak: a reading before the cutoff whose label comes from a failure after it."""
    failure = 1000.0 * 3600
    cutoff = failure - 10 * 3600  # failure 10 h after the cutoff
    t = _times([100.0, 40.0, 34.5, 30.0, 20.0, 11.0, 5.0])
    full = life_labels(t, "failure", failure, H, CAP)
    known = life_labels(t, "failure", failure, H, CAP, known_until=cutoff)
    assert full.y.tolist() == [0, 0, 0, 0, 1, 1, 1]
    # as known at the cutoff: no failure yet; negatives certain only > H before the cutoff
    assert known.y.sum() == 0
    assert known.y_mask.tolist() == [True, True, True, False, False, False, False]
    # readings at/after the cutoff carry nothing at all
    assert known.ttf_kind.tolist()[-1] == TTF_NONE and not known.y_mask[-1]
    # the TTF before the cutoff is a lower bound up to the cutoff, not the true TTF
    assert (known.ttf_kind[:-1] == TTF_LOWER).all()
    np.testing.assert_allclose(known.ttf[:2], [90 / CAP, 30 / CAP], rtol=1e-6)
    # a failure before the cutoff is known: labels exact
    early = life_labels(t, "failure", failure, H, CAP, known_until=failure + 3600)
    assert early.y.tolist() == full.y.tolist() and early.y_mask.all()


def test_time_cutoff_is_a_reading_time_at_the_quantile() -> None:
    t = np.repeat(np.arange(100.0), 3)  # a fleet of 3: readings share timestamps
    cutoff = mt.time_cutoff(np.random.default_rng(0).permutation(t), 0.25)
    assert cutoff in t
    assert (t < cutoff).mean() == pytest.approx(0.75)
    assert mt.time_cutoff(np.full(5, 1.0), 0.25) > 1.0  # nothing later: every reading is training


def test_training_sequences_never_see_the_test_period_or_leaked_labels() -> None:
    readings, outcomes = synthetic_fleet(n_machines=6, lives=2)
    cfg = TrainConfig(test_fraction=0.3, val_fraction=0.2, offset_copies=2, heads=3)
    lives, _ = mt.split_lives(readings, outcomes)
    all_t = np.concatenate([l.t for l in lives])
    cutoff = mt.time_cutoff(all_t, cfg.test_fraction)
    val_cut = mt.time_cutoff(all_t[all_t < cutoff], cfg.val_fraction)
    assert (all_t < cutoff).mean() == pytest.approx(0.7, abs=0.01)
    assert val_cut < cutoff
    feats = MaintenanceFeatures.fit(np.zeros((2, 2)) + [[0, 0], [1, 1]], ["temp", "noise"], ["pump"], ["run"])
    encoded = mt.encode_lives(feats, readings, lives)
    train, val = mt.build_sequences(encoded, feats, val_cut, cutoff, val_cut, cfg, np.random.default_rng(0))
    assert len(train) > len(lives)  # whole lives plus mid-life starts
    for seq in train:
        assert seq.t.max() < val_cut  # no reading of the validation or test period
        life = lives[seq.life]
        expected = life_labels(life.t, life.end, life.end_t, H, CAP, known_until=val_cut)
        start = int(np.searchsorted(life.t, seq.t[0]))
        stop = start + len(seq.t)
        np.testing.assert_array_equal(seq.y_mask, expected.y_mask[start:stop])
        np.testing.assert_array_equal(seq.y, expected.y[start:stop])
        # no positive from a failure not yet seen at the fit cutoff
        if life.end_t >= val_cut:
            assert seq.y.sum() == 0
    for seq in val:
        assert seq.t.max() < cutoff
        scored = seq.y_mask | (seq.ttf_kind > 0)
        assert scored.any() and (seq.t[scored] >= val_cut).all()
    assert len({s.weight.tobytes() for s in train}) > 1  # per-life bootstrap weights differ


# --- metrics and baselines ---------------------------------------------------------------------------
def test_metrics_match_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, s) == pytest.approx(0.75)
    assert average_precision(y, s) == pytest.approx((1.0 + 2 / 3) / 2)
    assert roc_auc(y, np.full(4, 0.5)) == pytest.approx(0.5)  # ties count one half
    assert roc_auc(np.zeros(3), np.arange(3.0)) is None
    m = threshold_metrics(y, s, 0.38)
    assert (m["precision"], m["recall"], m["false_positive_rate"]) == (0.5, 0.5, 0.5)


def test_rolling_features_mean_and_slope() -> None:
    x = np.zeros((10, 3), dtype=np.float32)
    x[:, 0] = np.arange(10) * 2.0  # sensor 0 rises 2 per reading
    x[:, 1] = 5.0
    f = rolling_features(x, n_sensors=2, window=6)
    assert f.shape == (10, 3 + 4)
    np.testing.assert_allclose(f[:, 3], [np.mean(x[max(0, i - 5) : i + 1, 0]) for i in range(10)], rtol=1e-6)
    np.testing.assert_allclose(f[1:, 5], 2.0, rtol=1e-5)  # slope of sensor 0
    np.testing.assert_allclose(f[:, 6], 0.0, atol=1e-6)  # flat sensor 1
    assert f[0, 5] == 0.0  # one point has no slope


def test_per_failure_metrics_and_false_alerts() -> None:
    cfg = TrainConfig(alert_cooldown_hours=6.0)
    hours = np.arange(0, 100.0, 0.5)
    t = hours * 3600
    fail = 100.0 * 3600
    life = mt.Life("m", 0, np.arange(len(t)), t, "failure", fail)
    enc = mt.Encoded(life, np.zeros((len(t), 1)), np.zeros(len(t), int), np.zeros(len(t), int), np.zeros((len(t), 1)))
    lab = life_labels(t, "failure", fail, H, CAP)
    prob = np.zeros(len(t))
    prob[(hours >= 90.0)] = 0.9  # alerts from 10 h before the failure
    prob[(hours >= 60.0) & (hours < 61.0)] = 0.9  # a false alarm 40 h before, 2 readings
    scored = mt.Scored([prob], [np.full(len(t), 50.0)])
    m = mt.evaluate(scored, [enc], [lab], cutoff=50 * 3600, config=cfg, interval_minutes=30.0)
    assert (m["failures"], m["failures_caught"]) == (1, 1)
    assert m["median_lead_hours"] == pytest.approx(10.0)
    # the false alarm counts once (cooldown); the true one fires at 90 h and again at 96 h
    assert m["false_alerts"] == 1 and m["alerts"] == 3
    assert m["machine_days"] == pytest.approx(100 * 0.5 / 24)
    assert m["ttf_rmse_hours"] is not None and m["ttf_n"] > 0
    # below the threshold nothing is caught
    m = mt.evaluate(mt.Scored([prob * 0.5], [np.full(len(t), 50.0)]), [enc], [lab], 50 * 3600, cfg, 30.0)
    assert m["failures_caught"] == 0 and m["median_lead_hours"] is None and m["alerts"] == 0


def test_rule_limits_learned_and_merged_with_physical_defaults() -> None:
    rng = np.random.default_rng(0)
    healthy = np.c_[rng.normal(2.0, 0.2, 5000), rng.normal(50.0, 1.0, 5000), np.r_[rng.normal(1, 0.1, 100), np.full(4900, np.nan)]]
    learned = mt.rule_limits(["vibration_rms", "custom", "sparse"], healthy, (0.0005, 0.9995), 0.1, 200)
    assert learned["sparse"] == {"low": None, "high": None}
    q = np.quantile(healthy[:, 1], [0.0005, 0.9995])
    assert learned["custom"]["low"] == pytest.approx(q[0] - 0.1 * (q[1] - q[0]), rel=1e-5)
    assert learned["custom"]["high"] == pytest.approx(q[1] + 0.1 * (q[1] - q[0]), rel=1e-5)
    limits, notes = mt.manifest_rule_limits(learned, {"custom": {"high": 99.0}})
    # the physical default (vibration_rms high 7.1) stays: null in the manifest; the other side is learned
    assert limits["vibration_rms"]["high"] is None and limits["vibration_rms"]["low"] == learned["vibration_rms"]["low"]
    assert limits["custom"] == {"low": learned["custom"]["low"], "high": 99.0}  # the user's override wins
    assert notes == []
    # a learned low above the default high (other units) would make the scorer refuse the limits
    limits, notes = mt.manifest_rule_limits({"vibration_rms": {"low": 20.0, "high": 40.0}})
    assert limits["vibration_rms"] == {"low": None, "high": None} and notes


def test_rate_limits_learned_from_consecutive_healthy_readings() -> None:
    hours = np.arange(0.0, 600.0, 0.5)
    rng = np.random.default_rng(0)
    raw = np.c_[60 + np.cumsum(rng.normal(0, 0.2, len(hours))), np.full(len(hours), np.nan)]
    raw[100, 0] = np.nan  # a gap: the pairs around it are skipped
    t = hours * 3600
    t[300:] += 10 * 3600  # a pause longer than the gap: the pair across it is skipped
    raw[-100, 0] += 50.0  # a jump near the end of the life, which is not healthy: it does not count
    healthy = np.ones(len(t), bool)
    healthy[-200:] = False
    life = mt.Life("m", 0, np.arange(len(t)), t, "censored", t[-1])
    enc = mt.Encoded(life, raw.astype(np.float32), np.zeros(len(t), int), np.zeros(len(t), int), np.zeros((len(t), 1)))
    rates = mt.rule_rates(["temp", "never"], [enc], [healthy], 1.0, 0.999, 0.25, 200)
    keep = np.ones(len(t) - 1, bool)
    keep[[99, 100, 299]] = False
    keep[-200:] = False
    expected = np.quantile(np.abs(np.diff(raw[:, 0]))[keep] / 0.5, 0.999) * 1.25
    assert rates["temp"] == pytest.approx(expected, rel=1e-5)
    assert rates["never"] is None  # no observed pair: no limit


def test_report_renders_markdown_and_json(tmp_path: Path) -> None:
    report = Report("Title", data={"value": np.float32(1.5), "nan": float("nan")})
    report.text("Intro", "hello").kv("Facts", {"a": 1, "b": None}).table("T", ["x", "y"], [["r|1", 0.123456]])
    md, js = report.write(tmp_path)
    text = md.read_text()
    assert "# Title" in text and "| r\\|1 | 0.123 |" in text and "- **b**: –" in text
    data = json.loads(js.read_text())
    assert data["value"] == 1.5 and data["nan"] is None
    assert [s["heading"] for s in data["sections"]] == ["Intro", "Facts", "T"]


# --- end to end -----------------------------------------------------------------------------------
TINY = dict(hidden=16, layers=1, heads=3, epochs=6, chunk_len=48, batch_size=8, lr=1e-2, patience=6, offset_copies=1)


def _heldout_auc(version: Any, readings: list[SensorReading], outcomes: list[MaintenanceOutcome]) -> float:
    """Re-score the held-out period with the saved artifacts only (as the scorer would load them)."""
    man = version.manifest
    features = MaintenanceFeatures.from_dict(man["features"])
    model = MaintenanceLSTM(**man["hyperparameters"])
    model.load_state_dict(torch.load(version.file("model.pt")))
    model.eval()
    cutoff = datetime.fromisoformat(man["split"]["cutoff"]).timestamp()
    lives, _ = mt.split_lives(readings, outcomes)
    ys, ps = [], []
    for enc, (prob, _) in zip(
        mt.encode_lives(features, readings, lives),
        mt.predict_sequences(model, [e.x for e in mt.encode_lives(features, readings, lives)]),
    ):
        lab = life_labels(enc.life.t, enc.life.end, enc.life.end_t, man["horizon_hours"], man["ttf_cap_hours"])
        m = (enc.life.t >= cutoff) & lab.y_mask
        ys.append(lab.y[m])
        ps.append(prob.mean(axis=1)[m])
    auc = roc_auc(np.concatenate(ys), np.concatenate(ps))
    assert auc is not None
    return auc


def test_tiny_training_on_synthetic_fleet_writes_a_loadable_version(tmp_path: Path) -> None:
    readings, outcomes = synthetic_fleet(n_machines=12, lives=3)
    registry = ModelRegistry(tmp_path)
    version = mt.train_maintenance(registry, readings, outcomes, TrainConfig(**TINY, test_fraction=0.3))
    assert registry.current("maintenance").version == version.version == "v1"
    man = version.manifest
    assert MANIFEST_KEYS <= set(man)
    assert man["features"]["sensors"] == ["noise", "temp"]
    assert man["interval_minutes"] == pytest.approx(30.0)
    assert isinstance(man["warmup_steps"], int)
    assert man["horizon_hours"] == H and man["ttf_cap_hours"] == CAP
    for name in ("model.pt", "report.md", "report.json", "manifest.json"):
        assert version.file(name).is_file()
    # the model learnt the ramp: held-out AUC from the saved artifacts alone
    auc = _heldout_auc(version, readings, outcomes)
    assert auc > 0.8
    assert man["metrics"]["model"]["roc_auc"] == pytest.approx(auc, abs=1e-6)
    # baseline evaluated on the same readings
    base = man["metrics"]["baseline"]
    assert base["n"] == man["metrics"]["model"]["n"] > 0
    for key in ("roc_auc", "average_precision", "precision", "recall", "false_positive_rate", "ttf_rmse_hours",
                "failures", "failures_caught", "false_alerts_per_machine_day"):
        assert key in base and key in man["metrics"]["model"]
    assert base["roc_auc"] > 0.8  # the ramp is visible in the current value too
    # the split: nothing after the cutoff was used for training
    cutoff = datetime.fromisoformat(man["split"]["cutoff"])
    assert man["split"]["train_readings"] == sum(1 for r in readings if r.ts < cutoff)
    assert man["split"]["test_readings"] == sum(1 for r in readings if r.ts >= cutoff)
    # fingerprint: stable for the same data in another order, different for other data
    fp = mt.data_fingerprint(list(reversed(readings)), outcomes)
    assert fp["sha256"] == man["data_fingerprint"]["sha256"] and fp["readings"] == len(readings)
    assert mt.data_fingerprint(readings[1:], outcomes)["sha256"] != fp["sha256"]
    report = json.loads(version.file("report.json").read_text())
    assert report["metrics"]["model"]["roc_auc"] == pytest.approx(auc, abs=1e-6)
    assert "Test-period metrics" in version.file("report.md").read_text()
    # calibration and the spread reference, from the validation slice
    cal = Calibration.from_manifest(man["calibration"])
    assert cal.method == "platt" and cal.a > 0
    assert man["confidence"]["spread_reference"] > 0
    brier_scores = report["calibration"]["brier"]
    assert brier_scores["validation"]["calibrated"] <= brier_scores["validation"]["raw"]  # fitted there: never worse
    assert report["calibration"]["fit"]["readings"] == man["split"]["validation_readings"] - _unlabelled_validation(
        readings, outcomes, man)
    _check_policy_section(version, report, man)
    _check_operating_point_and_baselines(version, readings, outcomes)


def _check_operating_point_and_baselines(version: Any, readings: list[SensorReading],
                                         outcomes: list[MaintenanceOutcome]) -> None:
    """The stored threshold is the curve's choice for the budget; the stored baselines, scored
    again from their files, reproduce the test-period figures of the report."""
    man = version.manifest
    point = OperatingPoint.from_manifest(man["decision"])
    assert point.curve and point.threshold == choose(point.curve, 0.1) == man["metrics"]["model"]["alert_threshold"]
    stored = baseline_store.load_stored(version)
    assert set(stored) == {"linear", "trees"}
    cutoff = datetime.fromisoformat(man["split"]["cutoff"]).timestamp()
    y, test = np.zeros(len(readings)), np.zeros(len(readings), bool)
    for life in mt.split_lives(readings, outcomes)[0]:
        lab = life_labels(life.t, life.end, life.end_t, H, CAP)
        y[life.rows], test[life.rows] = lab.y, (life.t >= cutoff) & lab.y_mask
    for name, key in (("linear", "baseline"), ("trees", "trees")):
        p, ttf = baseline_store.score_readings(version, stored[name], readings, outcomes)
        assert roc_auc(y[test], p[test]) == pytest.approx(man["metrics"][key]["roc_auc"], abs=1e-9)
        assert stored[name].threshold == man["baselines"][name]["decision"]["threshold"]
        assert ((ttf >= 0) & (ttf <= CAP)).all()


def _unlabelled_validation(readings: list[SensorReading], outcomes: list[MaintenanceOutcome], man: dict) -> int:
    """Validation readings whose label is unknown at the test cutoff (censored tails)."""
    cutoff = datetime.fromisoformat(man["split"]["cutoff"]).timestamp()
    val_cut = datetime.fromisoformat(man["split"]["validation_cutoff"]).timestamp()
    lives, _ = mt.split_lives(readings, outcomes)
    n = 0
    for life in lives:
        lab = life_labels(life.t, life.end, life.end_t, H, CAP, known_until=cutoff)
        n += int(((life.t >= val_cut) & (life.t < cutoff) & ~lab.y_mask).sum())
    return n


def _check_policy_section(version: Any, report: dict, man: dict) -> None:
    """The decision-policy evaluation: present in report.json and report.md, with its figures."""
    policy = report["policy"]
    assert policy["model_version"] == version.version
    assert policy["test_readings"] == man["split"]["test_readings"]
    threshold = man["decision"]["threshold"]
    assert policy["settings"] == {"alert_threshold": threshold, "false_alert_budget": 0.1, "min_confidence": 0.85,
                                  "alert_cooldown_hours": 6.0, "policy": "operating point"}
    assert policy["thresholds"]["model_only"] == threshold == man["metrics"]["model"]["alert_threshold"]
    assert policy["thresholds"]["baseline"] == man["baselines"]["linear"]["decision"]["threshold"]
    pols = policy["policies"]
    assert set(pols) == {"product", "model_only", "rules_only", "baseline", "trees"}
    for name, m in pols.items():
        assert m["failures"] == man["metrics"]["model"]["failures"] > 0
        assert 0 <= m["failures_caught"] <= m["failures"]
        assert m["alerts"] == m["true_alerts"] + m["false_alerts"] + m["unverifiable_alerts"]
        assert m["false_alerts_per_machine_day"] == pytest.approx(m["false_alerts"] / m["machine_days"])
        assert 0 <= m["decisions_right"] <= 1
    assert pols["rules_only"]["rule_decided_share"] == 1.0 and pols["model_only"]["rule_decided_share"] == 0.0
    assert 0 < pols["product"]["rule_decided_share"] < 1  # warm-up readings at least
    assert pols["product"]["alerts"] == sum(policy["product_alerts_by_source"].values())
    assert pols["model_only"]["failures_caught"] > 0 and pols["model_only"]["median_lead_hours"] > 0
    bands = policy["reliability"]
    assert [b["band"] for b in bands] == ["[0, 0.5)", "[0.5, 0.7)", "[0.7, 0.85)", "[0.85, 0.95)", "[0.95, 1]"]
    labelled = man["metrics"]["model"]["n"]
    assert sum(b["readings"] for b in bands) == labelled
    # the gate is competence, not confidence: confident readings are the model's, and moderate
    # probabilities (confidence below the gate) are decided by the model too once it is in its depth
    for b in bands:
        assert 0 <= b["decided_by_model"] <= b["readings"]
        if b["low"] >= 0.85:
            assert b["decided_by_model"] == b["readings"]
    assert sum(b["decided_by_model"] for b in bands if b["high"] <= 0.85) > 0
    text = version.file("report.md").read_text()
    for heading in ("## Decision policy on the test period", "## Confidence reliability (test period)",
                    "## Calibration", "## Head spread and decision accuracy", "## Operating point (validation slice)"):
        assert heading in text
    assert "Pending" not in text
    product = pols["product"]
    assert f"{product['failures_caught']} / {product['failures']}" in text


def test_alert_metrics_and_cooldown_by_hand() -> None:
    hours = np.arange(0, 100.0, 0.5)
    t = hours * 3600
    lab = life_labels(t, "failure", 100.0 * 3600, H, CAP)
    life = ep.LifeView("m", np.arange(len(t)), t, "failure", 100.0 * 3600, lab.y, lab.y_mask)
    want = (hours >= 90.0) | ((hours >= 60.0) & (hours < 61.0)) | (hours == 10.0)  # 10 h: before the cutoff
    alerts = ep.with_cooldown(t, want, 6 * 3600)
    assert hours[alerts].tolist() == [10.0, 60.0, 90.0, 96.0]
    ruled = hours < 60.0
    m = ep.alert_metrics([alerts], [life], 50 * 3600, H, 30.0, rule_decided=[ruled], decisions=[want])
    assert (m["failures"], m["failures_caught"]) == (1, 1)
    assert m["median_lead_hours"] == pytest.approx(10.0)
    assert (m["alerts"], m["true_alerts"], m["false_alerts"]) == (3, 2, 1)  # the 10 h alert is before the cutoff
    assert m["alert_precision"] == pytest.approx(2 / 3)
    assert m["machine_days"] == pytest.approx(100 * 0.5 / 24)
    assert m["false_alerts_per_machine_day"] == pytest.approx(1 / m["machine_days"])
    assert m["rule_decided_share"] == pytest.approx(20 / 100)
    # decisions: 48 positives (76 h onwards) of which 20 wanted; 52 negatives of which 2 wanted
    assert m["decisions_right"] == pytest.approx((20 + 50) / 100)
    # an alert only 25 h before the failure is neither a catch nor a true alert
    late = ep.alert_metrics([hours == 75.0], [life], 50 * 3600, H, 30.0)
    assert late["failures_caught"] == 0 and late["false_alerts"] == 1 and late["median_lead_hours"] is None
    # a failure 4 h after the cutoff, warned about 10 h before it (before the cutoff): caught,
    # though the cooldown keeps the test readings silent; the alert itself is not counted
    early = ep.alert_metrics([ep.with_cooldown(t, hours >= 86.0, 24 * 3600)], [life], 96 * 3600, H, 30.0)
    assert (early["failures"], early["failures_caught"], early["alerts"]) == (1, 1, 0)
    assert early["median_lead_hours"] == pytest.approx(14.0)
    # a failure with no test reading within the horizon before it is not a test-period failure
    assert ep.alert_metrics([alerts], [life], 100.5 * 3600, H, 30.0)["failures"] == 0


def test_policy_stream_resets_machines_on_outcomes(tmp_path: Path) -> None:
    """Without cycle numbers only the outcomes start a new life: streamed through the scorer in
    batches, every life's probabilities equal an offline pass from the life's first reading."""
    readings, outcomes = synthetic_fleet(n_machines=4, lives=3, seed=2)
    readings = [r.model_copy(update={"cycle": None}) for r in readings]
    version = mt.train_maintenance(ModelRegistry(tmp_path), readings, outcomes, TrainConfig(**{**TINY, "epochs": 2}))
    lives, _ = mt.split_lives(readings, outcomes)
    assert len(lives) == 12
    features = MaintenanceFeatures.from_dict(version.manifest["features"])
    model = MaintenanceLSTM(**version.manifest["hyperparameters"])
    model.load_state_dict(torch.load(version.file("model.pt")))
    model.eval()
    cal = Calibration.from_manifest(version.manifest["calibration"])
    offline = [cal.ensemble(p) for p, _ in mt.predict_sequences(model, [e.x for e in mt.encode_lives(features, readings, lives)])]
    views = [ep.LifeView(l.machine_id, l.rows, l.t, l.end, l.end_t, np.zeros(len(l)), np.ones(len(l), bool)) for l in lives]
    scorer = MaintenanceScorer.from_version(version, MaintenanceSettings(), explain=False)
    got = ep.stream(scorer, readings, outcomes, views, batch_size=7)
    for p_stream, p_off in zip(got.p, offline):
        np.testing.assert_allclose(p_stream, p_off, atol=1e-5)
    # decisions before the cooldown: the model's (at the version's threshold) where it decided;
    # emitted alerts are a subset
    assert scorer.threshold == version.manifest["decision"]["threshold"]
    for p, by_model, want, alert in zip(got.p, got.by_model, got.want, got.alert):
        np.testing.assert_array_equal(want[by_model], p[by_model] >= scorer.threshold)
        assert not (alert & ~want).any()
    assert sum(int(w.sum()) for w in got.want) > sum(int(a.sum()) for a in got.alert) > 0  # the cooldown suppressed some
    # without the outcomes the state runs on across lives: different probabilities
    scorer = MaintenanceScorer.from_version(version, MaintenanceSettings(), explain=False)
    carried = ep.stream(scorer, readings, [], views, batch_size=7)
    assert max(np.abs(a - b).max() for a, b in zip(carried.p, offline)) > 1e-3


def test_training_on_simulated_history_beats_a_coin(tmp_path: Path) -> None:
    readings, outcomes = mt.simulated_history(n_machines=14, seed=3, lives_per_machine=2)
    version = mt.train_maintenance(ModelRegistry(tmp_path), readings, outcomes, TrainConfig(**TINY), promote=False)
    assert ModelRegistry(tmp_path).current("maintenance") is not None  # the only version, though not promoted
    assert not (tmp_path / "maintenance" / "CURRENT").exists()
    _check_policy_section(version, json.loads(version.file("report.json").read_text()), version.manifest)
    assert _heldout_auc(version, readings, outcomes) > 0.8
    assert version.manifest["metrics"]["model"]["failures"] > 0
    # standard sensors keep the scorer's physical limits (null in the manifest)
    assert version.manifest["rule_limits"]["vibration_rms"]["high"] is None


def test_training_is_seeded(tmp_path: Path) -> None:
    readings, outcomes = synthetic_fleet(n_machines=6, lives=2, seed=1)
    cfg = TrainConfig(**{**TINY, "epochs": 2})
    a = mt.train_maintenance(ModelRegistry(tmp_path / "a"), readings, outcomes, cfg)
    b = mt.train_maintenance(ModelRegistry(tmp_path / "b"), readings, outcomes, cfg)
    sa, sb = torch.load(a.file("model.pt")), torch.load(b.file("model.pt"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_without_failures_is_refused(tmp_path: Path) -> None:
    readings, _ = synthetic_fleet(n_machines=3, lives=1)
    with pytest.raises(ValueError, match="no failure"):
        mt.train_maintenance(ModelRegistry(tmp_path), readings, [], TrainConfig(**TINY))
    assert ModelRegistry(tmp_path).versions("maintenance") == []


def test_sensor_selection_by_coverage() -> None:
    readings = [reading("a", i, i, {"x": 1.0, "rare": 1.0 if i < 3 else None, "half": 1.0 if i % 2 else None}) for i in range(10)]
    chosen, coverage = mt.select_sensors(readings, 0.5)
    assert chosen == ["half", "x"]
    assert coverage == {"half": 0.5, "rare": 0.3, "x": 1.0}
    assert math.isclose(mt.median_interval_minutes(mt.split_lives(readings, [])[0]), 30.0)
