"""Synthetic fleet, a quickly trained MaintenanceLSTM and registry artifacts for the scorer tests.

Failing machines show one symptom only: `vibration_hf` ramps up over the RAMP readings before the
failure; every other sensor is stationary noise. So a working model must rely on vibration_hf.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pytest
import torch

from schemas.sensor import SensorReading
from stream_app.features.maintenance import MaintenanceFeatures
from stream_app.models.maintenance_lstm import MaintenanceLSTM
from stream_app.registry import ModelRegistry

SENSORS = ["vibration_rms", "bearing_temp", "motor_temp", "oil_pressure", "vibration_hf"]
MEANS = np.array([2.5, 60.0, 75.0, 3.0, 0.4])
STDS = np.array([0.3, 2.0, 3.0, 0.1, 0.08])
RAMP_SENSOR = SENSORS.index("vibration_hf")
MACHINE_TYPES = ["press", "pump"]
MODES = ["idle", "run"]
INTERVAL_MIN = 30.0
HORIZON_H = 24.0
HORIZON_STEPS = int(HORIZON_H * 60 / INTERVAL_MIN)
RAMP = 60
TRAIN_LENGTH = 120
TTF_CAP_H = 168.0
T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Import into a test module to run its tests on one torch thread: these tensors are tiny, and
    on a shared 2-core machine a second OpenMP thread only spins (100x slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fleet(n_machines: int, length: int, seed: int, missing: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """raw (M, T, S) with NaN for missing, failing (M,) bool (fail right after the last reading)."""
    rng = np.random.default_rng(seed)
    raw = MEANS + STDS * rng.standard_normal((n_machines, length, len(SENSORS)))
    failing = np.arange(n_machines) % 4 == 0  # failures are the minority, so means stay healthy
    ramp = np.clip(np.arange(length) - (length - RAMP), 0, None) / RAMP  # 0 ... 1 over the last RAMP steps
    raw[failing, :, RAMP_SENSOR] += 1.2 * ramp
    if missing:
        raw[rng.random(raw.shape) < missing] = np.nan
    return raw, failing, ramp


def features_for(raw: np.ndarray) -> MaintenanceFeatures:
    return MaintenanceFeatures.fit(raw.reshape(-1, raw.shape[-1]), SENSORS, MACHINE_TYPES, MODES)


def encode(features: MaintenanceFeatures, raw: np.ndarray) -> np.ndarray:
    """(M, T, S) -> (M, T, F), machine type 'press' and mode 'run' throughout."""
    t_len = raw.shape[1]
    types, modes = features.category_indices(["press"] * t_len, ["run"] * t_len)
    return np.stack([features.encode_sequence(r.astype(np.float32), types, modes)[0] for r in raw])


@functools.lru_cache(maxsize=None)
def trained_model(seed: int = 0) -> tuple[MaintenanceLSTM, MaintenanceFeatures]:
    """A small model trained for ~2 s; cached for the whole test process (do not mutate)."""
    torch.manual_seed(seed)
    raw, failing, _ = fleet(48, TRAIN_LENGTH, seed, missing=0.02)
    features = features_for(raw)
    x = torch.from_numpy(encode(features, raw))
    steps_left = TRAIN_LENGTH - np.arange(TRAIN_LENGTH)  # readings until failure
    label = np.where(failing[:, None], steps_left <= HORIZON_STEPS, False).astype(np.float32)
    hours_left = steps_left * INTERVAL_MIN / 60
    ttf = np.where(failing[:, None], np.minimum(hours_left / TTF_CAP_H, 1.0), 1.0).astype(np.float32)
    y, t = torch.from_numpy(label)[..., None], torch.from_numpy(ttf)[..., None]
    model = MaintenanceLSTM(features.n_inputs, hidden=16, layers=1, heads=3, dropout=0.0)
    # Bootstrap: each head sees the machines with Poisson(1) weights, as the real trainer does.
    weights = torch.from_numpy(np.random.default_rng(seed).poisson(1.0, (48, 1, 3)).astype(np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only contend on a shared 2-core box
    try:
        _fit(model, opt, x, y, t, weights)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model, features


def _fit(
    model: MaintenanceLSTM, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
    weights: torch.Tensor,
) -> None:
    for _ in range(100):
        logits, ttf_pred, _ = model(x)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none")
        loss = ((bce + (ttf_pred - t) ** 2) * weights).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def random_model(features: MaintenanceFeatures, seed: int = 0, **hp: Any) -> MaintenanceLSTM:
    torch.manual_seed(seed)
    return MaintenanceLSTM(features.n_inputs, **{"hidden": 8, "layers": 2, "heads": 4, "dropout": 0.1, **hp}).eval()


def manifest_for(model: MaintenanceLSTM, features: MaintenanceFeatures, **extra: Any) -> dict[str, Any]:
    return {
        "hyperparameters": model.hyperparameters(),
        "features": features.to_dict(),
        "horizon_hours": HORIZON_H,
        "ttf_cap_hours": TTF_CAP_H,
        "interval_minutes": INTERVAL_MIN,
        "metrics": {"auc": 0.5},
        **extra,
    }


def write_artifact(
    root: Path, model: Optional[MaintenanceLSTM], features: MaintenanceFeatures, **extra: Any
) -> ModelRegistry:
    """A registry version as the trainer writes it; model None writes no weights."""
    registry = ModelRegistry(root)
    ref = model if model is not None else random_model(features)
    with registry.new_version("maintenance", manifest_for(ref, features, **extra)) as staging:
        if model is not None:
            torch.save(model.state_dict(), staging / "model.pt")
    return registry


def readings_for(
    machine_id: str,
    raw: np.ndarray,
    start: int = 0,
    cycle_start: Optional[int] = None,
    extra: Optional[dict[str, Optional[float]]] = None,
) -> list[SensorReading]:
    """One machine's raw rows (T, S) -> readings every INTERVAL_MIN, NaN sensors left out (None)."""
    out = []
    for k, row in enumerate(raw):
        t = start + k
        sensors = {name: (None if np.isnan(v) else float(v)) for name, v in zip(SENSORS, row)}
        out.append(SensorReading(
            event_id=f"{machine_id}-{t}", ts=T0 + timedelta(minutes=INTERVAL_MIN * t), machine_id=machine_id,
            sensors={**sensors, **(extra or {})}, machine_type="press", operating_mode="run",
            cycle=None if cycle_start is None else cycle_start + t,
        ))
    return out


def interleave(streams: Sequence[Sequence[SensorReading]]) -> list[SensorReading]:
    """Round-robin merge that keeps each stream's order."""
    out: list[SensorReading] = []
    for k in range(max(len(s) for s in streams)):
        out.extend(s[k] for s in streams if k < len(s))
    return out


def full_sequence_probabilities(model: MaintenanceLSTM, features: MaintenanceFeatures, raw: np.ndarray) -> np.ndarray:
    """(T,) failure probability per step from one pass over the whole sequence."""
    with torch.no_grad():
        logits, _, _ = model(torch.from_numpy(encode(features, raw[None])))
    return torch.sigmoid(logits[0]).mean(dim=-1).numpy()
