"""The baselines a training run fitted, stored with the model version it compared them to.

A version's report says how the LSTM did against a linear model and gradient-boosted trees on
the run's test period. Keeping the baselines themselves (their weights, calibration and the
alert threshold each got for the same false-alert budget) lets that comparison be repeated on
any later data, e.g. held-out machines, with `score_readings`. Workers never load them.

Files in the version directory: baseline_linear.npz (coefficients and scaling) and
baseline_trees.json (LightGBM's text models); the manifest's "baselines" says which exist, with
their calibration and operating point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from schemas.sensor import MaintenanceOutcome, SensorReading
from stream_app.registry import ModelVersion
from stream_app.scoring.confidence import Calibration
from stream_app.scoring.operating_point import OperatingPoint
from stream_app.features.maintenance import MaintenanceFeatures
from stream_app.training.baselines import (
    WINDOW, LinearBaseline, TreeBaseline, basic_inputs, rolling_features, window_features,
)

LINEAR_FILE = "baseline_linear.npz"
TREES_FILE = "baseline_trees.json"
LABELS = {"linear": "Linear baseline", "trees": "Gradient-boosted trees (LightGBM)"}


@dataclass
class StoredBaseline:
    name: str  # "linear" | "trees"
    model: Union[LinearBaseline, TreeBaseline]
    calibration: Calibration
    operating_point: OperatingPoint
    windows: tuple[int, ...] = (WINDOW,)  # rolling windows of its features, in readings

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def threshold(self) -> float:
        return self.operating_point.threshold

    def features(self, x: np.ndarray, spec: MaintenanceFeatures) -> np.ndarray:
        return baseline_inputs(self.name, self.windows, x, spec)

    def predict(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> calibrated failure probability, TTF hours."""
        p, ttf = self.model.predict(feats)
        return self.calibration.probability(p), ttf


def baseline_inputs(name: str, windows: Sequence[int], x: np.ndarray, spec: MaintenanceFeatures) -> np.ndarray:
    """One encoded life (T, F) -> a baseline's inputs, from the basic encoded columns."""
    base = basic_inputs(x, spec.derived_offset)
    if name == "linear":
        return rolling_features(base, spec.n_sensors, windows[0])
    return window_features(base, spec.n_sensors, windows)


def manifest_entry(baselines: Sequence[StoredBaseline]) -> dict[str, Any]:
    """The manifest's "baselines": per baseline, its file, calibration and operating point."""
    return {b.name: {"file": LINEAR_FILE if b.name == "linear" else TREES_FILE, "windows": list(b.windows),
                     "calibration": b.calibration.to_manifest(), "decision": b.operating_point.to_manifest()}
            for b in baselines}


def write(directory: Path, baselines: Sequence[StoredBaseline]) -> None:
    """The baselines' files, into a version's (staging) directory."""
    for b in baselines:
        if isinstance(b.model, LinearBaseline):
            m = b.model
            np.savez(directory / LINEAR_FILE, mean=m.mean, std=m.std, clf_w=m.clf_w, clf_b=m.clf_b, reg_w=m.reg_w,
                     reg_b=m.reg_b, ttf_cap_hours=m.ttf_cap_hours)
        else:
            (directory / TREES_FILE).write_text(json.dumps(b.model.to_strings()))


def load_stored(version: ModelVersion) -> dict[str, StoredBaseline]:
    """The baselines stored with `version` (none for versions that stored none, or trees when
    lightgbm is not installed)."""
    out: dict[str, StoredBaseline] = {}
    cap = float(version.manifest["ttf_cap_hours"])
    for name, entry in (version.manifest.get("baselines") or {}).items():
        path = version.file(entry["file"])
        if name == "linear":
            with np.load(path) as z:
                model: Union[LinearBaseline, TreeBaseline] = LinearBaseline(
                    z["mean"], z["std"], z["clf_w"], float(z["clf_b"]), z["reg_w"], float(z["reg_b"]), cap)
        else:
            try:
                model = TreeBaseline.from_strings(json.loads(path.read_text()), cap)
            except ImportError:
                continue
        out[name] = StoredBaseline(name, model, Calibration.from_manifest(entry["calibration"]),
                                   OperatingPoint.from_manifest(entry["decision"]), tuple(entry["windows"]))
    return out


def score_readings(
    version: ModelVersion, baseline: StoredBaseline, readings: Sequence[SensorReading],
    outcomes: Sequence[MaintenanceOutcome],
) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's calibrated probability and TTF (hours) for each of `readings` (in their
    order), every life encoded from its first reading with the version's feature spec, as the
    training evaluation does."""
    from stream_app.features.maintenance import MaintenanceFeatures
    from stream_app.training.maintenance import encode_lives, split_lives

    features = MaintenanceFeatures.from_dict(version.manifest["features"])  # the spec only, not the LSTM
    lives, _ = split_lives(readings, outcomes)
    p, ttf = np.full(len(readings), np.nan), np.full(len(readings), np.nan)
    for enc in encode_lives(features, readings, lives):
        prob, hours = baseline.predict(baseline.features(enc.x, features))
        p[enc.life.rows], ttf[enc.life.rows] = prob, hours
    return p, ttf
