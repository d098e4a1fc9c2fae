import json
import logging
from datetime import timedelta

import numpy as np
import pytest
import torch

from schemas.outputs import Alert, Explanation, MaintenancePrediction, deterministic_id
from schemas.sensor import SensorReading
from stream_app.registry import ModelRegistry
from stream_app.scoring.confidence import Calibration, confidence
from stream_app.features.maintenance import MaintenanceFeatures
from stream_app.scoring.maintenance import MaintenanceScorer, ScoredReading
from stream_app.settings import MaintenanceSettings
from tests.unit.maintenance_fixtures import (
    INTERVAL_MIN,
    SENSORS,
    T0,
    encode,
    fleet,
    full_sequence_probabilities,
    interleave,
    manifest_for,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    random_model,
    readings_for,
    trained_model,
    write_artifact,
)

NO_COOLDOWN = MaintenanceSettings(alert_cooldown_s=0)


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    model, features = trained_model()
    return write_artifact(tmp_path / "store", model, features)


def _scorer(registry: ModelRegistry, settings: MaintenanceSettings = MaintenanceSettings(), **kw) -> MaintenanceScorer:
    return MaintenanceScorer.load(registry, settings, **kw)


def _reading(machine: str, k: int, cycle=None, **sensors) -> SensorReading:
    return SensorReading(event_id=f"{machine}-x{k}", ts=T0 + timedelta(minutes=INTERVAL_MIN * k), machine_id=machine,
                         sensors=sensors, machine_type="press", operating_mode="run", cycle=cycle)


def _healthy(**override) -> dict:
    normal = {"vibration_rms": 2.5, "bearing_temp": 60.0, "motor_temp": 75.0, "oil_pressure": 3.0, "vibration_hf": 0.4}
    return {**normal, **override}


def _score_all(scorer: MaintenanceScorer, batches) -> list[ScoredReading]:
    return [r for batch in batches for r in scorer.score_batch(batch)]


def _failing_machine(length: int = 100, machine: str = "F1"):
    raw, failing, _ = fleet(2, length, seed=21)
    assert failing[0]
    return raw[0], readings_for(machine, raw[0])


# --- loading ---------------------------------------------------------------------------------
def test_load_serves_the_current_version(registry):
    assert _scorer(registry).model_version == "v1"
    model, features = trained_model()
    write_artifact(registry.root, model, features)
    assert _scorer(registry).model_version == "v2"


def _corrupt_manifest(path):
    (path / "manifest.json").write_text("{not json")


def _garbage_weights(path):
    (path / "model.pt").write_bytes(b"\x00not a torch file")


def _missing_weights(path):
    (path / "model.pt").unlink()


def _incompatible_weights(path):
    manifest = json.loads((path / "manifest.json").read_text())
    torch.save(random_model(trained_model()[1], hidden=5).state_dict(), path / "model.pt")
    assert manifest["hyperparameters"]["hidden"] != 5


def _missing_key(path):
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["ttf_cap_hours"]
    (path / "manifest.json").write_text(json.dumps(manifest))


def _dangling_current(path):
    (path.parent / "CURRENT").write_text("v9\n")


@pytest.mark.parametrize("damage", [_corrupt_manifest, _garbage_weights, _missing_weights, _incompatible_weights,
                                    _missing_key, _dangling_current])
def test_a_broken_model_means_rules_only_never_an_exception(registry, damage, caplog):
    damage(registry.root / "maintenance" / "v1")
    with caplog.at_level(logging.WARNING):
        scorer = _scorer(registry)
    assert scorer.model_version is None
    assert any("rules only" in r.message and "model unavailable" in r.message for r in caplog.records)
    (ok, hot) = scorer.score_batch([_reading("M", 0, **_healthy()), _reading("N", 0, **_healthy(bearing_temp=100.0))])
    for out in (ok, hot):
        assert out.prediction.decision_source == "rule" and out.prediction.model_version is None
        assert "model unavailable" in out.prediction.reason
    assert not ok.prediction.alert and ok.prediction.failure_probability == 0 and ok.prediction.confidence == 0
    assert hot.prediction.alert and hot.alert is not None and hot.alert.decision_source == "rule"


def test_manifest_rule_limits_apply_even_when_the_weights_are_unusable(tmp_path):
    model, features = trained_model()
    registry = write_artifact(tmp_path, None, features, rule_limits={"vibration_hf": {"low": None, "high": 1.0},
                                                                      "vibration_rms": {"high": 9.0}})
    scorer = _scorer(registry)
    assert scorer.model_version is None
    hf, rms = scorer.score_batch([_reading("A", 0, **_healthy(vibration_hf=1.5)),
                                  _reading("B", 0, **_healthy(vibration_rms=8.0))])
    assert hf.prediction.alert and "vibration_hf 1.5 > 1" in hf.prediction.reason
    assert not rms.prediction.alert  # 8.0 is within the manifest's 9.0 (the default 7.1 would fire)


def test_no_model_at_all(tmp_path):
    scorer = MaintenanceScorer.load(ModelRegistry(tmp_path), MaintenanceSettings())
    (out,) = scorer.score_batch([_reading("M", 0, **_healthy(bearing_temp=120.0, humidity=40.0))])
    p = out.prediction
    assert p.reason.startswith("rules decided (model unavailable: no trained model in")
    assert p.alert and p.failure_probability == 1.0 and p.confidence == 1.0 and p.time_to_failure_hours is None
    assert p.unknown_sensors == ["vibration_hf", "humidity"]  # without a model: sensors no rule checks
    a = out.alert
    assert a.severity == "critical" and a.confidence == 1.0 and a.score == pytest.approx(25 / 95)
    assert a.alert_id == deterministic_id("maintenance-alert", "M", "M-x0", None)
    assert len(out.explanation.rules) == 4
    assert [r.rule for r in out.explanation.rules if r.fired] == ["bearing_temp high limit (physical)"]


# --- outputs ---------------------------------------------------------------------------------
def test_one_valid_prediction_per_reading_in_input_order(registry):
    raw, _, _ = fleet(3, 20, seed=4, missing=0.1)
    readings = interleave([readings_for(f"M{k}", raw[k]) for k in range(3)])
    out = _scorer(registry).score_batch(readings)
    assert [o.prediction.event_id for o in out] == [r.event_id for r in readings]
    for o, r in zip(out, readings):
        p = o.prediction
        MaintenancePrediction.model_validate(p.model_dump())  # model_construct built only valid values
        json.loads(p.model_dump_json())
        assert p.prediction_id == deterministic_id("maintenance-prediction", r.event_id, "v1")
        assert (p.machine_id, p.event_ts, p.model_version, p.horizon_hours) == (r.machine_id, r.ts, "v1", 24.0)
        assert 0 <= p.time_to_failure_low_hours <= p.time_to_failure_hours <= p.time_to_failure_high_hours <= 168.0
        assert 0 <= p.confidence <= 1 and 0 <= p.failure_probability <= 1
        assert p.imputed_sensors == [s for s in SENSORS if r.sensors[s] is None]
    assert _scorer(registry).score_batch([]) == []


def test_scoring_is_deterministic(registry):
    raw, _, _ = fleet(4, 30, seed=5, missing=0.05)
    readings = interleave([readings_for(f"M{k}", raw[k]) for k in range(4)])

    def run():
        out = _score_all(_scorer(registry), [readings[:50], readings[50:]])
        return [o.prediction.model_dump(exclude={"created_at"}) for o in out]

    assert run() == run()


def test_micro_batches_publish_exactly_what_one_reading_at_a_time_publishes(registry):
    """The fast path (micro-batches, rounds of one machine's readings, shared per-batch
    arrays) against the unoptimised one (one reading per call): the same predictions, alerts
    and explanations, field for field, probabilities to float rounding."""
    raw, _, _ = fleet(6, 80, seed=8, missing=0.05)
    readings = interleave([readings_for(f"M{k}", raw[k]) for k in range(6)])
    readings = readings[:100] + sorted(readings[100:160], key=lambda r: r.machine_id) + readings[160:]

    def published(batches) -> list[dict]:
        out = []
        for o in _score_all(_scorer(registry, NO_COOLDOWN), batches):
            out.append(o.prediction.model_dump(exclude={"created_at"}))
            if o.alert is not None:
                out.append(o.alert.model_dump(exclude={"created_at"}))
            if o.explanation is not None:
                out.append(o.explanation.model_dump(exclude={"created_at"}))
        return out

    one_by_one = published([[r] for r in readings])
    batched = published([readings[i : i + 97] for i in range(0, len(readings), 97)])
    assert any("alert_id" in m for m in one_by_one), "the stream must exercise alerts too"
    assert len(batched) == len(one_by_one)
    texts = {"text", "summary", "explanation", "reason", "description"}  # numbers printed at 2-3 digits

    def same(fast, slow, where: str) -> None:
        if isinstance(fast, float):
            assert fast == pytest.approx(slow, rel=1e-5, abs=1e-5), where
        elif isinstance(fast, dict):
            assert fast.keys() == slow.keys(), where
            for key in fast.keys() - texts:
                same(fast[key], slow[key], f"{where}.{key}")
        elif isinstance(fast, list):
            assert len(fast) == len(slow), where
            for i, (f, s_) in enumerate(zip(fast, slow)):
                same(f, s_, f"{where}[{i}]")
        else:
            assert fast == slow, where

    for i, (fast, slow) in enumerate(zip(batched, one_by_one)):
        same(fast, slow, f"output {i}")


# --- state -----------------------------------------------------------------------------------
def test_stateful_steps_equal_one_pass_over_the_whole_sequence(registry):
    """Machines interleaved, several readings of one machine in one batch, uneven batches, and
    state storage growing from 2 slots: every probability equals the full-sequence pass."""
    model, features = trained_model()
    lengths = [45, 70, 30, 60, 5]
    raw = [fleet(1, n, seed=30 + k, missing=0.1)[0][0] for k, n in enumerate(lengths)]
    streams = [readings_for(f"M{k}", r) for k, r in enumerate(raw)]
    batches = [streams[0][:6] + streams[1][:3] + streams[0][6:9] + streams[4]]  # rounds of one machine
    rest = interleave([streams[0][9:], streams[1][3:], streams[2], streams[3]])
    batches += [rest[i : i + 37] for i in range(0, len(rest), 37)]  # 37 > 4 machines: rounds again
    assert sum(map(len, batches)) == sum(lengths)
    scorer = _scorer(registry, initial_capacity=2)
    got: dict[str, list[float]] = {}
    for o in _score_all(scorer, batches):
        got.setdefault(o.prediction.machine_id, []).append(o.prediction.failure_probability)
    for k, r in enumerate(raw):
        np.testing.assert_allclose(got[f"M{k}"], full_sequence_probabilities(model, features, r), atol=1e-5, rtol=0)
    assert scorer.machines == 5


def test_cycle_decrease_resets_the_machine(registry):
    scorer = _scorer(registry)
    worn, _ = _failing_machine(80)
    scorer.score_batch(readings_for("A", worn, cycle_start=500))
    # The first reading after the repair lacks bearing_temp: imputed from the training mean, not
    # from the worn machine's last value.
    def new_life(machine: str) -> list[ScoredReading]:
        return scorer.score_batch([_reading(machine, 200 + k, cycle=k, **_healthy(bearing_temp=61.0 if k else None))
                                   for k in range(2)])

    a, b = new_life("A"), new_life("B")
    for x, y in zip(a, b):  # A after its repair behaves exactly like a brand-new machine B
        assert x.prediction.failure_probability == pytest.approx(y.prediction.failure_probability, abs=1e-6)
    assert "warming up: 1 of 12" in a[0].prediction.reason
    # ... which it would not without the reset (same readings, cycle still increasing):
    again = _scorer(registry)
    again.score_batch(readings_for("A", worn, cycle_start=500))
    c = again.score_batch([_reading("A", 200, cycle=1000, **_healthy(bearing_temp=None))])
    assert abs(c[0].prediction.failure_probability - b[0].prediction.failure_probability) > 1e-3


def test_reset_machine_starts_a_new_life(registry):
    scorer = _scorer(registry)
    worn, _ = _failing_machine(80)
    scorer.score_batch(readings_for("A", worn))
    scorer.reset_machine("A")
    scorer.reset_machine("never-seen")  # harmless
    a = scorer.score_batch([_reading("A", 200, **_healthy(bearing_temp=None))])
    b = scorer.score_batch([_reading("B", 200, **_healthy(bearing_temp=None))])
    assert a[0].prediction.failure_probability == pytest.approx(b[0].prediction.failure_probability, abs=1e-6)
    assert "warming up: 1 of 12" in a[0].prediction.reason
    late = scorer.score_batch([_reading("A", 10, **_healthy())])  # still older than A's newest reading
    assert "late reading" in late[0].prediction.reason


def test_a_failure_reported_before_its_last_readings_starts_the_new_life_after_them(registry):
    """Outcomes travel on their own topic: a failure can be applied before the readings that
    came before it were scored. Those readings still belong to the old life."""
    _, readings = _failing_machine(80)
    failed_at = readings[69].ts
    in_order, reported_early = _scorer(registry, NO_COOLDOWN), _scorer(registry, NO_COOLDOWN)
    after = [_reading("F1", 500 + k, **_healthy()) for k in range(3)]  # the new life, later in time

    a = in_order.score_batch(readings[:70])
    assert in_order.reset_machine("F1", failed_at)
    a += in_order.score_batch(after)

    b = reported_early.score_batch(readings[:60])
    assert reported_early.reset_machine("F1", failed_at)  # pending: F1's readings up to 69 are not in
    b += reported_early.score_batch(readings[60:70]) + reported_early.score_batch(after)

    probabilities = [r.prediction.failure_probability for r in a]
    assert [r.prediction.failure_probability for r in b] == pytest.approx(probabilities, abs=1e-6)
    assert "warming up: 1 of 12" in b[70].prediction.reason  # the first reading after the failure
    assert "warming up" not in b[69].prediction.reason
    # A reset that took effect travels with the state; a pending one too.
    pending = _scorer(registry, NO_COOLDOWN)
    pending.score_batch(readings[:60])
    pending.reset_machine("F1", failed_at)
    moved = _scorer(registry, NO_COOLDOWN)
    moved.import_machines(pending.export_machines(["F1"]))
    c = moved.score_batch(readings[60:70]) + moved.score_batch(after)
    assert [r.prediction.failure_probability for r in c] == pytest.approx(probabilities[60:], abs=1e-6)


def test_late_readings_are_scored_but_leave_the_state_alone(registry):
    raw, readings = _failing_machine(60)
    late = SensorReading(event_id="late", ts=readings[10].ts, machine_id="F1", sensors=_healthy(vibration_hf=3.0),
                         machine_type="press", operating_mode="run")
    with_late, without = _scorer(registry, NO_COOLDOWN), _scorer(registry, NO_COOLDOWN)
    a = _score_all(with_late, [readings[:40], [late], readings[40:]])
    b = _score_all(without, [readings[:40], readings[40:]])
    assert "late reading" in a[40].prediction.reason
    pa = [o.prediction.failure_probability for o in a[:40] + a[41:]]
    np.testing.assert_allclose(pa, [o.prediction.failure_probability for o in b], atol=1e-7)


FLOAT16_STEPS = 4  # relative float16 steps the replayed state may be off by


@pytest.mark.parametrize("window", [1, 16, 24])
def test_history_checkpoint_replays_to_the_live_state(registry, window):
    """After any number of steps the history holds the last min(steps, window) readings
    (oldest first) and the LSTM state before them, which is the state after the readings before
    them, and replaying the inputs reproduces the live state (up to the float16 storage of the
    inputs and of the checkpoint, which is stepped over each reading the ring drops)."""
    model, features = trained_model()
    scorer = _scorer(registry, MaintenanceSettings(explain_window=window))
    raw, readings = _failing_machine(100)
    x = torch.from_numpy(encode(features, raw[None]))
    for n, reading in enumerate(readings, start=1):
        scorer.score_batch([reading])
        if n not in (1, window - 1, window, window + 1, 2 * window + 3, 100):
            continue
        state = scorer._state
        inputs, ids, times, start = state.history(0)
        kept = min(n, window)
        assert ids == [r.event_id for r in readings[n - kept : n]]
        assert times.tolist() == [r.ts.timestamp() for r in readings[n - kept : n]]
        np.testing.assert_array_equal(inputs, x[0, n - kept : n].numpy().astype(np.float16).astype(np.float32))
        with torch.no_grad():
            _, _, before = model(x[:, : n - kept]) if n > kept else (None, None, model.init_state(1))
            _, _, after = model(torch.from_numpy(inputs[None]), start)
        # float16 keeps 11 significant bits: each value stored is off by up to 2**-12 of itself
        # (0.004 at a cell state of 16), and the checkpoint is stored again after each reading
        # the ring drops. So the bound is relative, a few storage steps, plus a small absolute
        # part for values near zero; the model itself differs a little from one CPU to another.
        for got, want in zip(start, before):
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, want, rtol=FLOAT16_STEPS * 2**-11, atol=5e-3)
        for got, live in zip(after, (state.h, state.c)):
            torch.testing.assert_close(got[:, 0], live[:, 0], rtol=FLOAT16_STEPS * 2**-11, atol=5e-3)


def test_state_grows_by_doubling_and_is_measured(registry):
    scorer = _scorer(registry, initial_capacity=4)
    before = scorer.state_bytes()
    scorer.score_batch([_reading(f"M{k}", 0, **_healthy()) for k in range(9)])
    assert scorer._state.capacity == 16 and scorer.machines == 9
    assert scorer.state_bytes() > 4 * before - 100


def test_state_per_machine_fits_the_fleet_memory_target(tmp_path):
    """8,000 machines streaming with all per-machine state under 20 MB. The trained model's shape
    (the trainer's default LSTM; 8 sensors with per-mode scaling and the trend memory at the
    trainer's defaults, 3 machine types, 3 modes; learned level and rate limits for every
    sensor), the default explanation window full, ~20-character event ids, machine ids in the
    slot dict counted."""
    from stream_app.training.maintenance import TrainConfig, trend_parameters

    config = TrainConfig()
    rng = np.random.default_rng(0)
    sensors = SENSORS + ["s5", "s6", "s7"]
    raw = rng.normal(10.0, 1.0, size=(300, len(sensors)))
    alphas, baseline = trend_parameters(config, INTERVAL_MIN)
    modes = ["idle", "run", "stop"]
    features = MaintenanceFeatures.fit(raw, sensors, ["fan", "press", "pump"], modes, modes=modes * 100,
                                       trend_alphas=alphas, baseline_steps=baseline)
    assert features.n_derived_columns == 2 * len(sensors)
    model = random_model(features, hidden=config.hidden, layers=config.layers, heads=config.heads)
    limits = {s: {"low": 0.0, "high": 100.0} for s in sensors}
    registry = write_artifact(tmp_path, model, features, rule_limits=limits, rule_rates={s: 50.0 for s in sensors},
                              rule_rate_max_gap_hours=1.0)
    scorer = _scorer(registry)
    assert len(scorer.rules.sensors) == len(sensors) and scorer.rules.has_rates
    machines, window = 1000, MaintenanceSettings().explain_window
    for k in range(window + 4):
        scorer.score_batch([
            SensorReading(event_id=f"m{m:05d}-l01-{k:06d}", ts=T0 + timedelta(minutes=INTERVAL_MIN * k),
                          machine_id=f"m{m:05d}", sensors={**_healthy(), "s5": 10.0, "s6": 10.0, "s7": 10.0},
                          machine_type="press", operating_mode="run")
            for m in range(machines)
        ])
    assert scorer.machines == machines
    assert scorer.state_bytes() / machines < 2500


# --- flags -----------------------------------------------------------------------------------
def test_imputed_clipped_and_unknown_sensors_are_named(registry):
    scorer = _scorer(registry)
    sensors = _healthy(bearing_temp=None, vibration_rms=1000.0, humidity=40.0, vendor_x=None)
    del sensors["oil_pressure"]
    (out,) = scorer.score_batch([_reading("M", 0, **sensors)])
    p = out.prediction
    assert p.imputed_sensors == ["bearing_temp", "oil_pressure"]
    assert p.clipped_sensors == ["vibration_rms"]
    assert p.unknown_sensors == ["humidity", "vendor_x"]


def test_rules_use_the_last_observed_value_of_a_missing_sensor(registry):
    scorer = _scorer(registry, NO_COOLDOWN)
    first, second = scorer.score_batch([_reading("M", 0, **_healthy(vibration_rms=8.0)),
                                        _reading("M", 1, **_healthy(vibration_rms=None))])
    assert first.prediction.alert and second.prediction.alert
    assert "vibration_rms 8 > 7.1" in second.prediction.reason


# --- decisions -------------------------------------------------------------------------------
def test_warm_up_hands_the_decision_to_the_rules(registry):
    scorer = _scorer(registry)
    out = scorer.score_batch([_reading("M", k, **_healthy()) for k in range(14)])
    sources = [o.prediction.decision_source for o in out]
    # warm-up 10/12 = 0.83 is below the 0.85 gate, 11/12 = 0.92 above it (the heads agree here)
    assert sources == ["rule"] * 10 + ["model"] * 4
    assert "< 0.85 (machine warming up: 3 of 12 readings)" in out[2].prediction.reason
    assert out[-1].prediction.reason.startswith("model decided: p=0.00 < 0.50")


def test_manifest_warmup_steps(tmp_path):
    model, features = trained_model()
    scorer = _scorer(write_artifact(tmp_path, model, features, warmup_steps=2))
    out = scorer.score_batch([_reading("M", k, **_healthy()) for k in range(3)])
    assert [o.prediction.decision_source for o in out] == ["rule", "model", "model"]


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.999])
def test_model_alerts_exactly_where_probability_and_confidence_clear_their_gates(registry, threshold):
    settings = MaintenanceSettings(alert_probability=threshold, alert_cooldown_s=0)
    _, readings = _failing_machine(100)
    out = _scorer(registry, settings).score_batch(readings)
    p = np.array([o.prediction.failure_probability for o in out])
    c = np.array([o.prediction.confidence for o in out])
    by_model = np.array([o.prediction.decision_source == "model" for o in out])
    np.testing.assert_array_equal(by_model, c >= 0.85)
    expected = by_model & (p >= threshold)  # healthy readings breach no limit, so rules never fire
    np.testing.assert_array_equal([o.prediction.alert for o in out], expected)
    np.testing.assert_array_equal([o.alert is not None for o in out], expected)
    assert expected.any() == (threshold < p.max())
    assert not expected[:30].any()  # before the ramp


def test_cooldown_allows_one_alert_per_window_of_event_time(registry):
    _, readings = _failing_machine(100)
    out = _scorer(registry).score_batch(readings)  # default 6 h cooldown, readings every 30 min
    alerted = [k for k, o in enumerate(out) if o.prediction.alert]
    want = [k for k, o in enumerate(out)
            if o.prediction.decision_source == "model" and o.prediction.failure_probability >= 0.5]
    assert len(alerted) >= 3 and alerted[0] == want[0]
    assert all(b - a >= 12 for a, b in zip(alerted, alerted[1:]))
    suppressed = [out[k] for k in want if k not in alerted]
    assert suppressed
    assert all(not o.prediction.alert and o.alert is None and "suppressed" in o.prediction.reason for o in suppressed)
    # a different machine is not affected by F1's cooldown
    other = _score_all(_scorer(registry), [readings, readings_for("F2", _failing_machine(100)[0])])
    assert sum(o.prediction.alert for o in other if o.prediction.machine_id == "F2") == len(alerted)


def test_model_alert_carries_an_explanation(registry):
    _, readings = _failing_machine(100)
    out = _scorer(registry).score_batch(readings)
    first = next(o for o in out if o.alert)
    a, e = first.alert, first.explanation
    Alert.model_validate(a.model_dump()), Explanation.model_validate(e.model_dump())
    assert a.alert_id == deterministic_id("maintenance-alert", "F1", first.prediction.event_id, "v1") == e.alert_id
    assert a.kind == "maintenance.failure_risk" and a.decision_source == "model" and a.model_version == "v1"
    assert a.score == first.prediction.failure_probability
    assert a.severity == ("critical" if a.score >= MaintenanceSettings().critical_probability else "warning")
    assert e.features[0].name == "vibration_hf"
    assert e.counterfactuals[0].score_alternative < e.counterfactuals[0].score_actual
    likelihood = "likely" if a.score >= 0.5 else "possible"
    assert a.explanation == e.summary and a.explanation.startswith(f"Failure within 24 h {likelihood} (p={a.score:.2f}")
    assert "model maintenance v1" in e.text
    # The buffered replay reproduces the live probability (inputs are stored as float16).
    assert e.counterfactuals[0].score_actual == pytest.approx(first.prediction.failure_probability, abs=5e-3)
    assert all(o.explanation is None for o in out if not o.alert)


def test_rule_alert_severity_grows_with_the_exceedance(registry):
    scorer = _scorer(registry, NO_COOLDOWN)
    small, large = scorer.score_batch([_reading("A", 0, **_healthy(vibration_rms=7.5)),
                                       _reading("B", 0, **_healthy(oil_pressure=0.5))])
    assert small.alert.severity == "warning" and small.alert.score == pytest.approx(0.4 / 7.1)
    assert large.alert.severity == "critical" and large.alert.confidence == 1.0
    assert "warming up" in large.alert.reason and "oil_pressure 0.5 < 1.2" in large.alert.reason
    assert "oil_pressure" in large.explanation.counterfactuals[0].text and "1.2" in large.explanation.summary


def test_the_explanation_window_never_changes_predictions(registry):
    """The window sets what explanations attribute over, nothing else."""
    raw, _, _ = fleet(4, 90, seed=9, missing=0.05)
    readings = interleave([readings_for(f"M{k}", raw[k]) for k in range(4)])

    def run(window: int) -> list[ScoredReading]:
        scorer = _scorer(registry, MaintenanceSettings(alert_cooldown_s=0, explain_window=window))
        return _score_all(scorer, [readings[i : i + 50] for i in range(0, len(readings), 50)])

    wide, narrow = run(64), run(3)
    assert [o.prediction.model_dump(exclude={"created_at"}) for o in wide] == \
        [o.prediction.model_dump(exclude={"created_at"}) for o in narrow]
    assert _outputs(wide) == _outputs(narrow)
    explained = [(a.explanation, b.explanation) for a, b in zip(wide, narrow)
                 if a.alert and a.alert.decision_source == "model"]
    assert explained
    for a, b in explained:
        assert len(b.time_steps) <= 3 < len(a.time_steps) and "over the last 3 readings" in b.text


# --- calibration and confidence ---------------------------------------------------------------
def _raw_heads(raw: np.ndarray) -> np.ndarray:
    """(T, K) raw head probabilities of one machine from a full-sequence pass."""
    model, features = trained_model()
    with torch.no_grad():
        logits, _, _ = model(torch.from_numpy(encode(features, raw[None])))
    return torch.sigmoid(logits[0]).numpy().astype(np.float64)


def test_an_old_manifest_loads_and_scores_as_before(registry):
    """No calibration / confidence keys: identity calibration, the old agreement formula."""
    assert "calibration" not in registry.current("maintenance").manifest
    raw, readings = _failing_machine(100)
    out = _scorer(registry, NO_COOLDOWN).score_batch(readings)
    heads = _raw_heads(raw)
    np.testing.assert_allclose([o.prediction.failure_probability for o in out], heads.mean(axis=1), atol=1e-5)
    expected = confidence(heads, np.zeros((100, 5), bool), np.zeros((100, 5), bool), np.arange(1, 101), 12)
    imputed = np.array([bool(o.prediction.imputed_sensors) for o in out])
    np.testing.assert_allclose(np.array([o.prediction.confidence for o in out])[~imputed], expected.total[~imputed],
                               atol=1e-5)


def test_calibrated_manifest_reports_the_calibrated_probability(tmp_path):
    model, features = trained_model()
    cal = Calibration(0.7, -1.2, "platt")
    registry = write_artifact(tmp_path, model, features, calibration=cal.to_manifest(),
                              confidence={"spread_reference": 0.05})
    raw, readings = _failing_machine(100)
    out = _scorer(registry, NO_COOLDOWN).score_batch(readings)
    heads = _raw_heads(raw)
    p_cal = cal.ensemble(heads)
    got = np.array([o.prediction.failure_probability for o in out])
    np.testing.assert_allclose(got, p_cal, atol=1e-5)
    assert np.abs(got - heads.mean(axis=1)).max() > 0.1  # it is not the raw probability
    conf = confidence(cal.heads(heads), np.zeros((100, 5), bool), np.zeros((100, 5), bool), np.arange(1, 101), 12,
                      probability=p_cal, spread_reference=0.05)
    imputed = np.array([bool(o.prediction.imputed_sensors) for o in out])
    np.testing.assert_allclose(np.array([o.prediction.confidence for o in out])[~imputed], conf.total[~imputed], atol=1e-5)
    # decisions and alerts use the calibrated probability; the explanation explains it too
    by_model = np.array([o.prediction.decision_source == "model" for o in out])
    alerts = np.array([o.prediction.alert for o in out])
    np.testing.assert_array_equal(alerts & by_model, by_model & (got >= 0.5))
    first = next(o for o in out if o.alert and o.alert.decision_source == "model")
    assert first.alert.score == first.prediction.failure_probability
    assert first.explanation.counterfactuals[0].score_actual == pytest.approx(first.prediction.failure_probability, abs=5e-3)


def test_an_undecided_model_hands_the_decision_to_the_rules(tmp_path):
    """A calibration that squeezes every probability towards 0.5: the model is never sure."""
    model, features = trained_model()
    registry = write_artifact(tmp_path, model, features, calibration={"method": "platt", "a": 0.01, "b": 0.0})
    scorer = _scorer(registry)
    out = scorer.score_batch([_reading("M", k, **_healthy()) for k in range(20)])
    assert all(o.prediction.decision_source == "rule" for o in out)
    assert all(0.45 < o.prediction.failure_probability < 0.55 and o.prediction.confidence < 0.55 for o in out)
    assert "undecided: p=0.4" in out[-1].prediction.reason and "right with probability 0.5" in out[-1].prediction.reason
    assert not any(o.prediction.alert for o in out)  # healthy readings breach no limit
    hot = scorer.score_batch([_reading("M", 20, **_healthy(bearing_temp=120.0))])[0]
    assert hot.prediction.alert and hot.alert.decision_source == "rule"


def test_unusual_head_spread_hands_the_decision_to_the_rules(tmp_path):
    model, features = trained_model()
    raw, readings = _failing_machine(100)
    spread = _raw_heads(raw).std(axis=1)
    reference = float(np.quantile(spread, 0.5))  # half the readings are "more unusual than the reference"
    wide = _scorer(write_artifact(tmp_path / "a", model, features, confidence={"spread_reference": 100.0}), NO_COOLDOWN)
    narrow = _scorer(write_artifact(tmp_path / "b", model, features, confidence={"spread_reference": reference}),
                     NO_COOLDOWN)
    a, b = wide.score_batch(readings), narrow.score_batch(readings)
    ca, cb = (np.array([o.prediction.confidence for o in out]) for out in (a, b))
    assert (cb <= ca + 1e-12).all() and (cb < ca - 0.05).sum() >= 10
    moved = [y for x, y in zip(a, b) if x.prediction.decision_source == "model" and y.prediction.decision_source == "rule"]
    assert moved and all("heads disagree" in y.prediction.reason and "x the validation 99th percentile"
                         in y.prediction.reason for y in moved)


@pytest.mark.parametrize("bad", [{"calibration": {"method": "platt", "a": -1.0, "b": 0.0}},
                                 {"calibration": {"method": "magic"}},
                                 {"confidence": {"spread_reference": -0.1}},
                                 {"confidence": "wide"}])
def test_a_bad_calibration_or_confidence_key_means_rules_only(tmp_path, bad):
    model, features = trained_model()
    scorer = _scorer(write_artifact(tmp_path, model, features, **bad))
    assert scorer.model_version is None
    (out,) = scorer.score_batch([_reading("M", 0, **_healthy())])
    assert "model unavailable" in out.prediction.reason


def test_from_version_scores_a_version_that_is_not_current(registry):
    model, features = trained_model()
    with registry.new_version("maintenance", manifest_for(model, features), promote=False) as staging:
        torch.save(model.state_dict(), staging / "model.pt")
    v2 = registry.get("maintenance", "v2")
    assert registry.current("maintenance").version == "v1"
    _, readings = _failing_machine(100)
    scorer = MaintenanceScorer.from_version(v2, MaintenanceSettings(), explain=False)
    out = scorer.score_batch(readings)
    assert scorer.model_version == "v2" and {o.prediction.model_version for o in out} == {"v2"}
    model_alerts = [o for o in out if o.alert is not None and o.alert.decision_source == "model"]
    assert model_alerts and all(o.explanation is None and "not computed" in o.alert.explanation for o in model_alerts)
    # the cooldown's suppressed decisions are flagged
    suppressed = [o for o in out if o.suppressed]
    assert suppressed and all(not o.prediction.alert and "suppressed" in o.prediction.reason for o in suppressed)
    assert not any(o.suppressed for o in out if "suppressed" not in o.prediction.reason)
    # a version the scorer cannot use raises (load() would fall back to rules)
    (v2.path / "model.pt").unlink()
    with pytest.raises(FileNotFoundError):
        MaintenanceScorer.from_version(v2, MaintenanceSettings())


# --- state hand-over -------------------------------------------------------------------------
def _outputs(results: list[ScoredReading]) -> list[tuple]:
    return [(r.prediction.failure_probability, r.prediction.confidence, r.prediction.decision_source,
             r.alert.alert_id if r.alert else None) for r in results]


def test_a_machine_state_handed_to_another_scorer_scores_on_identically(registry):
    """Export after some readings, import into a fresh scorer: the rest of the life scores
    exactly as if the first scorer had gone on (LSTM state, history, cooldown, warm-up)."""
    raw, failing, _ = fleet(3, 90, seed=5)
    streams = [readings_for(f"M{k}", raw[k]) for k in range(3)]
    head, tail = interleave([s[:50] for s in streams]), interleave([s[50:] for s in streams])
    first = _scorer(registry, NO_COOLDOWN)
    _score_all(first, [head[i : i + 17] for i in range(0, len(head), 17)])
    states = first.export_machines(["M0", "M1", "M2", "unknown"])
    assert set(states) == {"M0", "M1", "M2"}

    second = _scorer(registry, NO_COOLDOWN)
    second.score_batch([_reading("other", 0, **_healthy())])  # slots differ from the first scorer's
    assert second.import_machines(states) == 3
    expected = _outputs(first.score_batch(tail))
    assert _outputs(second.score_batch(tail)) == expected

    cold = _scorer(registry, NO_COOLDOWN)  # the hand-over is what makes them equal
    assert _outputs(cold.score_batch(tail)) != expected


def test_dropped_machines_free_their_slots_and_start_cold(registry):
    scorer = _scorer(registry, initial_capacity=4)
    batch = [_reading(f"M{k}", 0, **_healthy()) for k in range(4)]
    scorer.score_batch(batch)
    scorer.forget(["M0", "M1"])
    assert scorer.machines == 2 and scorer.export_machines(["M0"]) == {}
    scorer.score_batch([_reading("N0", 0, **_healthy()), _reading("N1", 0, **_healthy())])
    assert scorer._state.capacity == 4  # the freed slots were reused
    # M0 comes back as a machine never seen (no state of its old life, nor of N0/N1 in its slot)
    again = _outputs(scorer.score_batch([_reading("M0", 1, **_healthy(vibration_hf=0.9))]))
    assert again == _outputs(_scorer(registry).score_batch([_reading("M0", 1, **_healthy(vibration_hf=0.9))]))


def test_event_ids_longer_than_any_seen_restore_and_old_state_layouts_are_refused(registry):
    first = _scorer(registry)
    long_name = "a-machine-with-a-rather-long-name-\u00e9"  # and a character of two UTF-8 bytes
    first.score_batch([_reading(long_name, k, **_healthy()) for k in range(20)])
    state = first.export_machines([long_name])[long_name]
    second = _scorer(registry)
    second.score_batch([_reading("M0", k, **_healthy()) for k in range(3)])
    assert second._state.hist_ids.itemsize < state["hist_ids"].itemsize
    assert second.import_machines({long_name: state}) == 1
    assert second._state.history(second._state.slots[long_name])[1] == [f"{long_name}-x{k}" for k in range(4, 20)]
    assert second._state.history(second._state.slots["M0"])[1] == [f"M0-x{k}" for k in range(3)]
    # the layout before issue #7 (history of 2W inputs, a mid-history checkpoint): warms up again
    old = {k: v for k, v in state.items() if not k.startswith("hist_")}
    old |= {"hist_len": np.int64(3), "hist_x": np.zeros((64, 14), np.float16), "hist_ts": np.zeros(64),
            "hist_ids": np.full(64, None, object), "mid_h": state["h"], "mid_c": state["c"]}
    assert _scorer(registry).import_machines({"M9": old}) == 0


def test_a_state_of_another_layout_is_refused_not_loaded(registry):
    scorer = _scorer(registry)
    scorer.score_batch([_reading("M0", 0, **_healthy())])
    state = scorer.export_machines(["M0"])["M0"]
    broken = {**state, "h": state["h"][:, :3]}
    other = _scorer(registry)
    assert other.import_machines({"M0": broken}) == 0
    assert other.machines == 0
