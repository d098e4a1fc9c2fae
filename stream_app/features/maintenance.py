"""Sensor readings -> model input vectors. Training and live scoring both call `encode_step`,
so a model sees the same imputation, clipping and scaling in both (tested for equality).

Input vector per reading: scaled sensors (S), missing flags (S), one-hot machine type (T),
one-hot operating mode (M). Missing sensors are forward-filled from the machine's last observed
value (the training mean before any), and flagged so the model and the confidence know.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

# Outlier bounds: training quantiles widened by this share of their range, so that genuine
# degradation a little beyond what training saw still passes, but spikes are cut.
_BOUND_QUANTILES = (0.001, 0.999)
_BOUND_MARGIN = 0.25


@dataclass
class MaintenanceFeatures:
    sensors: list[str]
    mean: list[float]
    std: list[float]
    lo: list[float]
    hi: list[float]
    machine_types: list[str] = field(default_factory=list)
    operating_modes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sensors:
            raise ValueError("a feature spec needs at least one sensor")
        n = len(self.sensors)
        for name in ("mean", "std", "lo", "hi"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} values for {n} sensors")
        self._mean = np.asarray(self.mean, dtype=np.float32)
        self._std = np.maximum(np.asarray(self.std, dtype=np.float32), 1e-6)
        self._lo = np.asarray(self.lo, dtype=np.float32)
        self._hi = np.asarray(self.hi, dtype=np.float32)
        self._sensor_index = {name: i for i, name in enumerate(self.sensors)}
        self._type_index = {name: i for i, name in enumerate(self.machine_types)}
        self._mode_index = {name: i for i, name in enumerate(self.operating_modes)}

    # --- construction -------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        raw: np.ndarray,
        sensors: Sequence[str],
        machine_types: Sequence[str] = (),
        operating_modes: Sequence[str] = (),
    ) -> "MaintenanceFeatures":
        """Fit scaling and outlier bounds on raw training values (N, S), NaN for missing."""
        raw = np.asarray(raw, dtype=np.float64)
        q_lo, q_hi = np.nanquantile(raw, _BOUND_QUANTILES, axis=0)
        span = np.maximum(q_hi - q_lo, 1e-6)
        lo, hi = q_lo - _BOUND_MARGIN * span, q_hi + _BOUND_MARGIN * span
        clipped = np.clip(raw, lo, hi)
        return cls(
            sensors=list(sensors),
            mean=np.nanmean(clipped, axis=0).tolist(),
            std=np.nanstd(clipped, axis=0).tolist(),
            lo=lo.tolist(),
            hi=hi.tolist(),
            machine_types=sorted(set(machine_types)),
            operating_modes=sorted(set(operating_modes)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MaintenanceFeatures":
        return cls(**{k: list(v) for k, v in data.items()})

    # --- shapes ---------------------------------------------------------------------------
    @property
    def n_sensors(self) -> int:
        return len(self.sensors)

    @property
    def n_inputs(self) -> int:
        return 2 * self.n_sensors + len(self.machine_types) + len(self.operating_modes)

    def sensor_index(self, name: str) -> Optional[int]:
        return self._sensor_index.get(name)

    # --- raw values -----------------------------------------------------------------------
    def raw_row(self, sensors: Mapping[str, Optional[float]]) -> tuple[np.ndarray, list[str]]:
        """One reading's sensor map -> (S,) raw values with NaN for missing, and the names the
        model does not know (reported, not an error: gateways add sensors over time)."""
        row = np.full(self.n_sensors, np.nan, dtype=np.float32)
        unknown = []
        for name, value in sensors.items():
            i = self._sensor_index.get(name)
            if i is None:
                unknown.append(name)
            elif value is not None:
                row[i] = value
        return row, unknown

    def category_indices(
        self, machine_types: Sequence[Optional[str]], operating_modes: Sequence[Optional[str]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Category names -> indices; -1 for unknown or absent (encoded as all zeros)."""
        t = np.fromiter((self._type_index.get(v, -1) for v in machine_types), np.int64, len(machine_types))
        m = np.fromiter((self._mode_index.get(v, -1) for v in operating_modes), np.int64, len(operating_modes))
        return t, m

    # --- encoding ---------------------------------------------------------------------------
    def encode_step(
        self,
        raw: np.ndarray,
        last: np.ndarray,
        type_idx: np.ndarray,
        mode_idx: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Encode one reading for each of N machines.

        raw (N, S): values, NaN missing. last (N, S): each machine's last clipped observed values,
        NaN where never seen. Returns x (N, n_inputs) float32, new_last (N, S), imputed (N, S)
        bool, clipped (N, S) bool.
        """
        raw = np.asarray(raw, dtype=np.float32)
        missing = np.isnan(raw)
        clipped_values = np.clip(raw, self._lo, self._hi)
        clipped = ~missing & (clipped_values != raw)
        filled = np.where(missing, last, clipped_values)
        filled = np.where(np.isnan(filled), self._mean, filled)
        new_last = np.where(missing, last, clipped_values)

        n, s = raw.shape
        x = np.zeros((n, self.n_inputs), dtype=np.float32)
        x[:, :s] = (filled - self._mean) / self._std
        x[:, s : 2 * s] = missing
        offset = 2 * s
        rows = np.arange(n)
        known = type_idx >= 0
        x[rows[known], offset + type_idx[known]] = 1.0
        offset += len(self.machine_types)
        known = mode_idx >= 0
        x[rows[known], offset + mode_idx[known]] = 1.0
        return x, new_last, missing, clipped

    def encode_sequence(
        self, raw: np.ndarray, type_idx: np.ndarray, mode_idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encode one machine's readings (T, S) in time order, exactly as live scoring would
        step through them. Returns x (T, n_inputs), imputed (T, S), clipped (T, S)."""
        t_len = raw.shape[0]
        x = np.zeros((t_len, self.n_inputs), dtype=np.float32)
        imputed = np.zeros((t_len, self.n_sensors), dtype=bool)
        clipped = np.zeros_like(imputed)
        last = np.full((1, self.n_sensors), np.nan, dtype=np.float32)
        for t in range(t_len):
            xt, last, imp, clp = self.encode_step(raw[t : t + 1], last, type_idx[t : t + 1], mode_idx[t : t + 1])
            x[t], imputed[t], clipped[t] = xt[0], imp[0], clp[0]
        return x, imputed, clipped

    # --- compact storage of encoded inputs -----------------------------------------------------
    def input_layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Fields (per-input shape, dtype) of the compact form of one encoded input: 2 S + S / 8
        + 2 bytes instead of 4 n_inputs, for inputs kept per machine (explanation history)."""
        categories = np.min_scalar_type(max(len(self.machine_types), len(self.operating_modes)))
        return {
            "sensors": ((self.n_sensors,), np.dtype(np.float16)),  # scaled values
            "missing": (((self.n_sensors + 7) // 8,), np.dtype(np.uint8)),  # flags as bits, little-endian
            "type": ((), categories),  # index + 1 of the hot column; 0: unknown (all-zero one-hot)
            "mode": ((), categories),
        }

    def compact_inputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """encode_step outputs (..., n_inputs) -> the fields of input_layout(). Exact but for the
        float16 rounding of the scaled values (flags and one-hots are 0/1)."""
        s, t = self.n_sensors, len(self.machine_types)
        layout = self.input_layout()

        def category(one_hot: np.ndarray, dtype: np.dtype) -> np.ndarray:
            return (one_hot @ np.arange(1, one_hot.shape[-1] + 1, dtype=np.float32)).astype(dtype)

        return {
            "sensors": x[..., :s].astype(np.float16),
            "missing": np.packbits(x[..., s : 2 * s] != 0, axis=-1, bitorder="little"),
            "type": category(x[..., 2 * s : 2 * s + t], layout["type"][1]),
            "mode": category(x[..., 2 * s + t :], layout["mode"][1]),
        }

    def expand_inputs(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """compact_inputs' fields -> inputs (..., n_inputs) float32."""
        s, t, m = self.n_sensors, len(self.machine_types), len(self.operating_modes)
        sensors = parts["sensors"]
        x = np.empty((*sensors.shape[:-1], self.n_inputs), dtype=np.float32)
        x[..., :s] = sensors
        x[..., s : 2 * s] = np.unpackbits(parts["missing"], axis=-1, count=s, bitorder="little")
        x[..., 2 * s : 2 * s + t] = parts["type"][..., None] == np.arange(1, t + 1)
        x[..., 2 * s + t :] = parts["mode"][..., None] == np.arange(1, m + 1)
        return x

    def unscale(self, sensor: int, scaled: float) -> float:
        return float(scaled * self._std[sensor] + self._mean[sensor])
