"""Drift detector snapshots are plain data (stream_app/drift_snapshot.py): they restore the
detectors exactly, and a record the product did not write is refused, never run or loaded."""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np
import pytest
from river import drift as river_drift

from agents.drift import DriftTracker
from stream_app import metrics
from stream_app.drift import DriftConfig, DriftMonitor
from stream_app.drift_snapshot import ForgedSnapshot, _Fields, adwin_doc, adwin_from_doc
from stream_app.settings import DriftSettings

CONFIG = DriftConfig(reference_size=300, kswin_every=5)


def _fed(n: int = 6000, seed: int = 3) -> DriftMonitor:
    rng = np.random.default_rng(seed)
    monitor = DriftMonitor("maintenance", 2, CONFIG, kswin_features=["p"])
    for i in range(0, n, 50):
        shift = 1.5 if i >= n // 2 else 0.0
        monitor.observe({"p": (rng.random(50) * (1 + shift)).tolist(), "temp": rng.normal(50 + 4 * shift, 2, 50).tolist()})
    assert monitor.detections > 0
    return monitor


def test_a_restored_monitor_goes_on_exactly_as_the_original() -> None:
    original = _fed()
    restored = DriftMonitor.loads(original.dumps())
    assert restored.summary() == original.summary() and restored.detections == original.detections
    rng = np.random.default_rng(9)
    for _ in range(60):
        values = {"p": (rng.random(50) * 3).tolist(), "temp": rng.normal(40, 2, 50).tolist()}
        a, b = original.observe(values), restored.observe(values)
        assert [(e.feature, e.detector, e.values_seen, e.mean_after) for e in a] == \
               [(e.feature, e.detector, e.values_seen, e.mean_after) for e in b]
    assert restored.dumps() == original.dumps()


def test_the_snapshot_is_json_with_the_window_in_plain_fields() -> None:
    doc = json.loads(_fed().dumps())
    assert doc["format"] == "stream-app/drift-monitor" and doc["partition"] == 2
    adwin = doc["features"]["temp"]["adwin"]
    width = adwin["sums"][2]
    assert width == sum(row[0] << level for level, row in enumerate(adwin["buckets"])) > 0


@pytest.mark.parametrize("updates", [0, 1, 37, 5000])
def test_adwin_state_translates_both_ways_byte_for_byte(updates: int) -> None:
    """Guards the translation of River's own encoding: a River release with another layout
    fails here, not in a worker."""
    adwin = river_drift.ADWIN(delta=0.002)
    rng = np.random.default_rng(updates)
    for x in rng.normal(0, 1, updates):
        adwin.update(float(x))
    again = adwin_from_doc(_Fields(adwin_doc(adwin), "adwin"))
    assert again._helper.__getstate__() == adwin._helper.__getstate__()
    assert (again.width, again.total, again.drift_detected) == (adwin.width, adwin.total, adwin.drift_detected)


def _edit(change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(_fed(2000).dumps())
    change(doc)
    return json.dumps(doc).encode()


def _adwin(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["features"]["temp"]["adwin"]


FORGED = {
    "pickle": b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x05print\x94\x93\x94.",
    "not json": b"\x00\x01garbage",
    "another format": _edit(lambda d: d.update(format="something-else")),
    "a bucket fuller than its level": _edit(lambda d: _adwin(d)["buckets"][0].__setitem__(0, 99)),
    "a width its buckets do not hold": _edit(lambda d: _adwin(d)["sums"].__setitem__(2, 12345.0)),
    "a bucket row of the wrong length": _edit(lambda d: _adwin(d)["buckets"][1][1].append(0.0)),
    "too many bucket levels": _edit(lambda d: _adwin(d).__setitem__("buckets", _adwin(d)["buckets"] * 20)),
    "a clock of zero": _edit(lambda d: _adwin(d)["params"].__setitem__(1, 0)),
    "an infinite width": _edit(lambda d: _adwin(d)["sums"].__setitem__(2, 1e400)),
    "a string for a count": _edit(lambda d: d["features"]["p"].__setitem__("seen", "many")),
    "a kswin window longer than its size": _edit(lambda d: d["features"]["p"]["kswin"]["window"].extend([0.5] * 500)),
    "too many features": _edit(lambda d: d["features"].update({f"f{i}": d["features"]["temp"] for i in range(80)})),
    "a missing field": _edit(lambda d: d["features"]["temp"].pop("reference")),
    "a negative partition": _edit(lambda d: d.update(partition=-3)),
}


@pytest.mark.parametrize("blob", FORGED.values(), ids=FORGED.keys())
def test_a_forged_record_is_refused(blob: bytes) -> None:
    with pytest.raises(ForgedSnapshot):
        DriftMonitor.loads(blob)


def test_a_monitor_whose_sums_overflowed_still_travels() -> None:
    """Huge finite inputs (a gateway sending 1e308) overflow the detectors' sums to infinity:
    the snapshot still writes and reads back."""
    monitor = DriftMonitor("maintenance", 0, CONFIG)
    monitor.observe({"x": [1e308] * 40 + [1.0] * 40})
    restored = DriftMonitor.loads(monitor.dumps())
    assert restored.features["x"].seen == 80 and math.isinf(restored.features["x"].reference.m2)


def test_the_tracker_counts_each_refused_record() -> None:
    tracker = DriftTracker("supply_chain", DriftSettings(), lambda events, results: {})
    before = metrics.STATE_REFUSED.labels("supply_chain", "drift")._value.get()
    with pytest.raises(ForgedSnapshot):
        tracker.load(0, FORGED["a width its buckets do not hold"], 10)
    assert metrics.STATE_REFUSED.labels("supply_chain", "drift")._value.get() == before + 1
    tracker.load(0, _fed(1000).dumps(), 10)
    assert tracker.monitors[0].dumps() == _fed(1000).dumps() and tracker.fed_from[0] == 10
