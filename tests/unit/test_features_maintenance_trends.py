"""Per-mode scaling and the trend memory of the maintenance encoder: the same
arithmetic step by step (live) and over whole sequences (training), what the columns measure,
and specs without them (older models) encoding as before."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.features.maintenance import MaintenanceFeatures

SENSORS = ["flow", "temp"]


def _spec(**kw) -> MaintenanceFeatures:
    rng = np.random.default_rng(0)
    modes = np.array(["run", "stop"] * 300, dtype=object)
    raw = np.where(modes[:, None] == "run", rng.normal([100.0, 60.0], [5.0, 1.0], (600, 2)),
                   rng.normal([0.0, 25.0], [0.5, 1.0], (600, 2)))
    kw = {"trend_alphas": [0.5, 0.05], "baseline_steps": 4, **kw}
    return MaintenanceFeatures.fit(raw, SENSORS, ["pump"], ["run", "stop"], modes=modes.tolist(), **kw)


def test_each_mode_is_scaled_by_its_own_mean_and_spread() -> None:
    spec = _spec()
    types, modes = spec.category_indices(["pump"] * 3, ["run", "stop", "idle"])
    raw = np.array([[100.0, 60.0], [0.0, 25.0], [50.0, 42.5]], dtype=np.float32)
    x, *_ = spec.encode_step(raw, spec.initial_memory(3), types, modes)
    np.testing.assert_allclose(x[:2, :2], 0.0, atol=0.15)  # each regime at its own typical level
    glob = (raw[2] - np.array(spec.mean)) / np.array(spec.std)  # an unknown mode: the global scaling
    np.testing.assert_allclose(x[2, :2], glob, atol=1e-5)
    assert spec.unseen_categories(["pump", "pump", None], ["run", "idle", None]).tolist() == [False, True, False]
    assert spec.unscale(0, 0.0, mode=1) == pytest.approx(spec.mode_mean[1][0])


def test_step_by_step_equals_sequence_encoding_with_trends() -> None:
    spec = _spec()
    rng = np.random.default_rng(1)
    lengths = [40, 7, 25]
    raws = [rng.normal([100.0, 60.0], [5.0, 1.0], (n, 2)).astype(np.float32) for n in lengths]
    for r in raws:
        r[rng.random(r.shape) < 0.2] = np.nan
    modes = [spec.category_indices(["pump"] * n, rng.choice(["run", "stop"], n).tolist()) for n in lengths]
    together = spec.encode_sequences(raws, [t for t, _ in modes], [m for _, m in modes])
    for raw, (types, mode_idx), (x_seq, imp_seq, clp_seq) in zip(raws, modes, together):
        memory = spec.initial_memory(1)
        assert memory.shape == (1, spec.memory_width)
        for t in range(len(raw)):
            x, memory, imp, clp = spec.encode_step(raw[t : t + 1], memory, types[t : t + 1], mode_idx[t : t + 1])
            np.testing.assert_array_equal(x[0], x_seq[t])
            assert (imp[0] == imp_seq[t]).all() and (clp[0] == clp_seq[t]).all()


def test_trend_columns_see_a_slow_drift_that_the_level_alone_hides() -> None:
    spec = _spec(trend_alphas=[0.3, 0.02], baseline_steps=10)
    n = 400
    raw = np.tile([100.0, 60.0], (n, 1)).astype(np.float32)
    raw[:, 1] += np.linspace(0.0, 3.0, n)  # +3 °C over the life: three running spreads
    types, modes = spec.category_indices(["pump"] * n, ["run"] * n)
    x, _, _ = spec.encode_sequence(raw, types, modes)
    off, s = spec.derived_offset, spec.n_sensors
    assert spec.trend_kinds == 2 and spec.n_inputs == 2 * s + 1 + 2 + 2 * s
    recent, drift = x[:, off : off + s], x[:, off + s : off + 2 * s]
    assert recent[-1, 1] > 0 and drift[-1, 1] > drift[50, 1] > 0  # temp rises against its own start
    assert drift[:, 0] == pytest.approx(0.0, abs=1e-6) and recent[:, 0] == pytest.approx(0.0, abs=1e-6)  # flat flow
    cols = spec.sensor_columns(1)
    assert cols == [1, s + 1, off + 1, off + s + 1]
    assert set(spec.activity_columns()) == {0, 1, 2, 3, *range(off, off + 2 * s)}


def test_trend_scale_gives_unit_spread_and_round_trips() -> None:
    spec = _spec()
    rng = np.random.default_rng(2)
    raw = rng.normal([100.0, 60.0], [5.0, 1.0], (300, 2)).astype(np.float32)
    raw[:, 1] += np.linspace(0, 5, 300)
    types, modes = spec.category_indices(["pump"] * 300, ["run"] * 300)
    x, _, _ = spec.encode_sequence(raw, types, modes)
    cols = slice(spec.derived_offset, spec.derived_offset + spec.n_derived_columns)
    scaled = spec.with_trend_scale(x[:, cols])
    x2, _, _ = scaled.encode_sequence(raw, types, modes)
    np.testing.assert_allclose(x2[:, cols].std(axis=0), 1.0, rtol=1e-3)
    again = MaintenanceFeatures.from_dict(scaled.to_dict())
    assert again.to_dict() == scaled.to_dict()
    np.testing.assert_array_equal(again.encode_sequence(raw, types, modes)[0], x2)


def test_compact_inputs_keep_trends() -> None:
    spec = _spec()
    rng = np.random.default_rng(3)
    raw = rng.normal([100.0, 60.0], [5.0, 1.0], (50, 2)).astype(np.float32)
    types, modes = spec.category_indices(["pump"] * 50, ["run", "stop"] * 25)
    x, _, _ = spec.encode_sequence(raw, types, modes)
    parts = spec.compact_inputs(x)
    assert set(parts) == {"sensors", "missing", "type", "mode", "trends"}
    np.testing.assert_array_equal(spec.expand_inputs(parts), x.astype(np.float16).astype(np.float32))
    assert spec.mode_of(x[1]) == 1 and spec.mode_of(np.zeros(spec.n_inputs)) == -1


def test_a_spec_without_the_new_fields_encodes_as_before() -> None:
    """Older manifests: no per-mode scaling, no trend memory, memory = last values only."""
    old = {"sensors": SENSORS, "mean": [50.0, 40.0], "std": [10.0, 5.0], "lo": [0.0, 0.0], "hi": [200.0, 100.0],
           "machine_types": ["pump"], "operating_modes": ["run"]}
    spec = MaintenanceFeatures.from_dict(old)
    assert spec.memory_width == 2 and spec.n_inputs == 6 and spec.n_derived_columns == 0
    types, modes = spec.category_indices(["pump"], ["run"])
    x, last, *_ = spec.encode_step(np.array([[60.0, np.nan]], np.float32), spec.initial_memory(1), types, modes)
    assert x[0].tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0] and last.shape == (1, 2)
    assert set(spec.input_layout()) == {"sensors", "missing", "type", "mode"}
