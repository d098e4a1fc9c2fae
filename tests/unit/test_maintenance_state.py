"""The per-machine state record of the maintenance-state topic: a lossless round trip of what
the scorer exports, and nothing but data (no pickle)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from agents.maintenance_state import decode_marker, decode_state, encode_marker, encode_state
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import MaintenanceSettings
from tests.unit.maintenance_fixtures import (
    fleet,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    readings_for,
    trained_model,
    write_artifact,
)


def test_a_machine_state_survives_the_record_round_trip_and_scores_on_identically(tmp_path) -> None:
    model, features = trained_model()
    registry = write_artifact(tmp_path / "store", model, features)
    raw, _, _ = fleet(1, 120, seed=4)
    readings = readings_for("M0", raw[0])
    first = MaintenanceScorer.load(registry, MaintenanceSettings())
    first.score_batch(readings[:80])
    exported = first.export_machines(["M0"])["M0"]

    arrays, offset, owner = decode_state(encode_state(exported, 1234, "owner-1"))
    assert offset == 1234 and owner == "owner-1" and arrays.keys() == exported.keys()
    for name, value in exported.items():
        assert arrays[name].dtype == value.dtype and arrays[name].shape == value.shape
        np.testing.assert_array_equal(arrays[name], value, err_msg=name)  # NaN == NaN here; ids compared as objects

    second = MaintenanceScorer.load(registry, MaintenanceSettings())
    assert second.import_machines({"M0": arrays}) == 1
    ahead = [r.prediction.failure_probability for r in first.score_batch(readings[80:])]
    assert [r.prediction.failure_probability for r in second.score_batch(readings[80:])] == ahead


@pytest.mark.parametrize("blob", [b"", b"garbage", pickle.dumps({"h": np.zeros(3)})])
def test_anything_else_is_refused(blob: bytes) -> None:
    with pytest.raises(ValueError):
        decode_state(blob)
    with pytest.raises(ValueError):
        decode_marker(blob)


def test_a_marker_carries_its_drift_detectors_and_old_markers_still_read() -> None:
    info = {"offset": 77, "owner": "b", "model_version": "v3", "machines": 2}
    assert decode_marker(encode_marker(info, b"detectors")) == (info, b"detectors")
    assert decode_marker(encode_marker(info, None)) == (info, None)
    assert decode_marker(b'{"offset": 5, "model_version": "v1"}') == ({"offset": 5, "model_version": "v1"}, None)
