from __future__ import annotations

import numpy as np
import pytest

from stream_app.features.maintenance import MaintenanceFeatures


@pytest.fixture
def spec() -> MaintenanceFeatures:
    rng = np.random.default_rng(0)
    raw = rng.normal([10.0, 50.0], [1.0, 5.0], size=(500, 2))
    return MaintenanceFeatures.fit(raw, ["a", "b"], ["pump", "fan"], ["idle", "run"])


def test_step_by_step_equals_sequence_encoding(spec: MaintenanceFeatures) -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal([10.0, 50.0], [1.0, 5.0], size=(40, 2)).astype(np.float32)
    raw[rng.random(raw.shape) < 0.2] = np.nan
    raw[5, 0] = 1e6  # spike
    types, modes = spec.category_indices(["fan"] * 40, ["run", "idle"] * 20)
    x_seq, imp_seq, clp_seq = spec.encode_sequence(raw, types, modes)
    last = np.full((1, 2), np.nan, dtype=np.float32)
    for t in range(40):
        x, last, imp, clp = spec.encode_step(raw[t : t + 1], last, types[t : t + 1], modes[t : t + 1])
        np.testing.assert_array_equal(x[0], x_seq[t])
        assert (imp[0] == imp_seq[t]).all() and (clp[0] == clp_seq[t]).all()
    assert clp_seq[5, 0]


def test_missing_values_are_carried_forward_then_mean(spec: MaintenanceFeatures) -> None:
    raw = np.array([[np.nan, np.nan], [12.0, np.nan], [np.nan, np.nan]], dtype=np.float32)
    types, modes = spec.category_indices([None] * 3, ["idle"] * 3)
    x, imputed, _ = spec.encode_sequence(raw, types, modes)
    assert x[0, 0] == pytest.approx(0.0, abs=1e-6)  # never seen: the training mean
    assert x[2, 0] == pytest.approx(x[1, 0])  # carried forward
    assert imputed.tolist() == [[True, True], [False, True], [True, True]]
    assert x[:, 2:4].tolist() == imputed.astype(float).tolist()  # missing flags are inputs


def test_categories_one_hot_and_unknown_all_zero(spec: MaintenanceFeatures) -> None:
    types, modes = spec.category_indices(["pump", "turbine"], ["run", None])
    x, *_ = spec.encode_step(np.ones((2, 2), np.float32) * 10, np.full((2, 2), np.nan, np.float32), types, modes)
    assert x[0, 4:].tolist() == [0, 1, 0, 1]  # types sorted: fan, pump; modes: idle, run
    assert x[1, 4:].tolist() == [0, 0, 0, 0]


def test_round_trip_and_unknown_sensor_names(spec: MaintenanceFeatures) -> None:
    again = MaintenanceFeatures.from_dict(spec.to_dict())
    assert again.to_dict() == spec.to_dict()
    row, unknown = again.raw_row({"a": 1.0, "b": None, "zz": 3.0})
    assert row[0] == 1.0 and np.isnan(row[1]) and unknown == ["zz"]
    with pytest.raises(ValueError):
        MaintenanceFeatures(sensors=["a"], mean=[0.0, 1.0], std=[1.0], lo=[0.0], hi=[1.0])


@pytest.mark.parametrize("n_sensors, types", [(2, ["pump", "fan"]), (8, ["a", "b", "c"]), (11, [])])
def test_compact_inputs_expand_to_the_float16_rounded_inputs(n_sensors: int, types: list[str]) -> None:
    """What a machine's history stores: every encode_step output, missing values and unknown or
    absent categories included, comes back exactly as its float16 rounding."""
    rng = np.random.default_rng(n_sensors)
    raw = rng.normal(10.0, 3.0, size=(300, n_sensors)).astype(np.float32)
    spec = MaintenanceFeatures.fit(raw, [f"s{j}" for j in range(n_sensors)], types, ["idle", "run"])
    raw[rng.random(raw.shape) < 0.3] = np.nan
    raw[:5] = np.nan  # nothing observed yet: the training mean
    raw[7, 0] = 1e6  # clipped
    names = [*types, "unknown", None]
    type_idx, mode_idx = spec.category_indices(
        rng.choice(np.array(names, dtype=object), 300).tolist(),
        rng.choice(np.array(["idle", "run", "?", None], dtype=object), 300).tolist(),
    )
    last = np.full_like(raw, np.nan)
    x, _, missing, _ = spec.encode_step(raw, last, type_idx, mode_idx)
    assert missing.any() and (type_idx < 0).any() and (mode_idx < 0).any()
    parts = spec.compact_inputs(x)
    for name, (shape, dtype) in spec.input_layout().items():
        assert parts[name].dtype == dtype and parts[name].shape == (300, *shape), name
    expanded = spec.expand_inputs(parts)
    assert expanded.dtype == np.float32
    np.testing.assert_array_equal(expanded, x.astype(np.float16).astype(np.float32))
    # any leading shape, e.g. (machines, window)
    np.testing.assert_array_equal(spec.expand_inputs({k: v.reshape(30, 10, *v.shape[1:]) for k, v in parts.items()}),
                                  expanded.reshape(30, 10, -1))
