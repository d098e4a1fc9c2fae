"""Sensor readings -> model input vectors. Training and live scoring both call `encode_step`,
so a model sees the same imputation, clipping, scaling and trend memory in both (tested for
equality).

Input vector per reading: scaled sensors (S), missing flags (S), one-hot machine type (T),
one-hot operating mode (M), and, for specs fitted with a trend memory, derived trend columns
(S per kind). Missing sensors are forward-filled from the machine's last observed value (the
training mean before any), and flagged so the model and the confidence know.

Scaling. A spec fitted with per-mode scaling (`mode_mean`, `mode_std`) scales each sensor by the
mean and spread of the reading's operating mode: regimes with other baselines (a stopped pump,
an engine at cruise) become comparable, so what remains is the machine's state, not its
regime. A mode the spec does not know, or none, uses the global scaling.

Trend memory. Degradation is a slow drift, often smaller than a regime's noise or the spread
between machines; an LSTM trained on chunks of a few dozen readings cannot integrate it over
days. So the spec can keep, per machine, exponential moving averages of each scaled sensor at a
few time constants (`trend_alphas`, fast first) and the machine's own level over the first
`baseline_steps` readings of its life, and derive per sensor:
    recent trend  = EWMA(fast) - EWMA(slower), for each consecutive pair;
    drift         = EWMA(fast) - the life's baseline level (a per-machine normalisation).
Each is divided by its spread on the training data (`trend_scale`). The memory travels with the
machine's state (encode_step's `last`), so live scoring computes exactly what training did.
Specs without these fields (older models) encode as before: `last` is then the last values only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

# Outlier bounds: training quantiles widened by this share of their range, so that genuine
# degradation a little beyond what training saw still passes, but spikes are cut.
_BOUND_QUANTILES = (0.001, 0.999)
_BOUND_MARGIN = 0.25
# A mode's scaling needs this many training values of a sensor (else the global one is used),
# and its spread is at least this share of the global spread (a stopped pump's flow is ~0 with
# a tiny spread: without a floor, a spike of noise would read as many deviations).
_MODE_MIN_VALUES = 30
_MODE_STD_FLOOR = 0.05


@dataclass
class MaintenanceFeatures:
    sensors: list[str]
    mean: list[float]
    std: list[float]
    lo: list[float]
    hi: list[float]
    machine_types: list[str] = field(default_factory=list)
    operating_modes: list[str] = field(default_factory=list)
    # per operating mode (rows in operating_modes order), per sensor; empty: global scaling only
    mode_mean: list[list[float]] = field(default_factory=list)
    mode_std: list[list[float]] = field(default_factory=list)
    # trend memory: EWMA smoothing per reading (fast first), readings that make the life's baseline
    trend_alphas: list[float] = field(default_factory=list)
    baseline_steps: int = 0
    trend_scale: list[float] = field(default_factory=list)  # per derived column; empty: 1

    def __post_init__(self) -> None:
        if not self.sensors:
            raise ValueError("a feature spec needs at least one sensor")
        n = len(self.sensors)
        for name in ("mean", "std", "lo", "hi"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} values for {n} sensors")
        if self.mode_mean or self.mode_std:
            shape = (len(self.operating_modes), n)
            for name in ("mode_mean", "mode_std"):
                if np.shape(getattr(self, name)) != shape:
                    raise ValueError(f"{name} must be {shape[0]} modes x {n} sensors")
        if any(not 0.0 < a <= 1.0 for a in self.trend_alphas):
            raise ValueError("trend_alphas must be in (0, 1]")
        if self.baseline_steps < 0 or (self.baseline_steps and not self.trend_alphas):
            raise ValueError("baseline_steps needs trend_alphas and must be >= 0")
        self._mean = np.asarray(self.mean, dtype=np.float32)
        self._std = np.maximum(np.asarray(self.std, dtype=np.float32), 1e-6)
        self._lo = np.asarray(self.lo, dtype=np.float32)
        self._hi = np.asarray(self.hi, dtype=np.float32)
        # Row M (index -1) of the per-mode tables is the global scaling, for unknown modes.
        if self.mode_mean:
            self._mode_mean = np.vstack([np.asarray(self.mode_mean, np.float32), self._mean])
            self._mode_std = np.vstack([np.maximum(np.asarray(self.mode_std, np.float32), 1e-6), self._std])
        else:
            self._mode_mean = self._mode_std = None
        self._alphas = np.asarray(self.trend_alphas, dtype=np.float32)
        if self.trend_scale and len(self.trend_scale) != self.n_derived_columns:
            raise ValueError(f"trend_scale has {len(self.trend_scale)} values for {self.n_derived_columns} columns")
        self._trend_scale = (np.asarray(self.trend_scale, dtype=np.float32) if self.trend_scale
                             else np.ones(self.n_derived_columns, dtype=np.float32))
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
        *,
        modes: Optional[Sequence[Optional[str]]] = None,
        trend_alphas: Sequence[float] = (),
        baseline_steps: int = 0,
    ) -> "MaintenanceFeatures":
        """Fit scaling and outlier bounds on raw training values (N, S), NaN for missing.
        `modes` (N,): each row's operating mode, for per-mode scaling (None: global only);
        `trend_alphas` / `baseline_steps`: the trend memory (none by default); its scale is
        fitted afterwards on encoded training lives (`with_trend_scale`)."""
        raw = np.asarray(raw, dtype=np.float64)
        q_lo, q_hi = np.nanquantile(raw, _BOUND_QUANTILES, axis=0)
        span = np.maximum(q_hi - q_lo, 1e-6)
        lo, hi = q_lo - _BOUND_MARGIN * span, q_hi + _BOUND_MARGIN * span
        clipped = np.clip(raw, lo, hi)
        mean, std = np.nanmean(clipped, axis=0), np.nanstd(clipped, axis=0)
        mode_names = sorted(set(operating_modes))
        mode_mean: list[list[float]] = []
        mode_std: list[list[float]] = []
        if modes is not None and mode_names:
            labels = np.array([m if m is not None else "" for m in modes], dtype=object)
            for name in mode_names:
                rows = clipped[labels == name]
                counts = np.isfinite(rows).sum(axis=0)
                with np.errstate(invalid="ignore"), _quiet():
                    m_mean = np.where(counts >= _MODE_MIN_VALUES, np.nanmean(rows, axis=0), mean)
                    m_std = np.where(counts >= _MODE_MIN_VALUES, np.nanstd(rows, axis=0), std)
                mode_mean.append(m_mean.tolist())
                mode_std.append(np.maximum(m_std, _MODE_STD_FLOOR * std).tolist())
        return cls(
            sensors=list(sensors),
            mean=mean.tolist(),
            std=std.tolist(),
            lo=lo.tolist(),
            hi=hi.tolist(),
            machine_types=sorted(set(machine_types)),
            operating_modes=mode_names,
            mode_mean=mode_mean,
            mode_std=mode_std,
            trend_alphas=[float(a) for a in trend_alphas],
            baseline_steps=int(baseline_steps),
        )

    def with_trend_scale(self, derived: np.ndarray) -> "MaintenanceFeatures":
        """The same spec with each derived column divided by its spread in `derived` (N, D):
        derived columns of training readings encoded by this spec."""
        data = self.to_dict()
        current = self._trend_scale
        spread = np.nanstd(np.asarray(derived, dtype=np.float64) / current, axis=0)
        data["trend_scale"] = (1.0 / np.maximum(spread, 1e-3)).tolist()
        return MaintenanceFeatures.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MaintenanceFeatures":
        return cls(**{k: (int(v) if k == "baseline_steps" else [list(r) if isinstance(r, list) else r for r in v])
                      for k, v in data.items()})

    # --- shapes ---------------------------------------------------------------------------
    @property
    def n_sensors(self) -> int:
        return len(self.sensors)

    @property
    def trend_kinds(self) -> int:
        """Derived columns per sensor: a recent trend per pair of EWMAs, plus the drift."""
        k = len(self.trend_alphas)
        return max(k - 1, 0) + (1 if self.baseline_steps > 0 else 0)

    @property
    def n_derived_columns(self) -> int:
        return self.trend_kinds * self.n_sensors

    @property
    def n_inputs(self) -> int:
        return 2 * self.n_sensors + len(self.machine_types) + len(self.operating_modes) + self.n_derived_columns

    @property
    def memory_width(self) -> int:
        """Per machine: last values (S), then each EWMA (S each), the baseline (S) and its count."""
        s, k = self.n_sensors, len(self.trend_alphas)
        return s + k * s + ((s + 1) if self.baseline_steps > 0 else 0)

    @property
    def derived_offset(self) -> int:
        return 2 * self.n_sensors + len(self.machine_types) + len(self.operating_modes)

    def sensor_columns(self, sensor: int) -> list[int]:
        """The input columns that carry one sensor: its value, its missing flag, its trends."""
        s, off = self.n_sensors, self.derived_offset
        return [sensor, s + sensor, *(off + b * s + sensor for b in range(self.trend_kinds))]

    def activity_columns(self) -> np.ndarray:
        """Columns describing what the machine did (sensors, flags, trends), as opposed to its
        type and mode: explanations move these to their typical value (0). Also what the
        baselines' basic inputs leave out: everything from derived_offset on."""
        s, off = self.n_sensors, self.derived_offset
        return np.r_[np.arange(2 * s), np.arange(off, off + self.n_derived_columns)]

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

    def unseen_categories(
        self, machine_types: Sequence[Optional[str]], operating_modes: Sequence[Optional[str]]
    ) -> np.ndarray:
        """(N,) bool: the reading names a machine type or operating mode the training data did not
        have, where the spec knows some (a regime the model has never seen)."""
        def unseen(values: Sequence[Optional[str]], known: dict[str, int]) -> np.ndarray:
            if not known:
                return np.zeros(len(values), dtype=bool)
            return np.fromiter((v is not None and v not in known for v in values), bool, len(values))

        return unseen(machine_types, self._type_index) | unseen(operating_modes, self._mode_index)

    # --- encoding ---------------------------------------------------------------------------
    def _scaling(self, mode_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._mode_mean is None:
            return self._mean, self._std
        return self._mode_mean[mode_idx], self._mode_std[mode_idx]  # -1: the global row

    def initial_memory(self, n: int) -> np.ndarray:
        """(n, memory_width) float32: a machine nothing has been seen of."""
        return np.full((n, self.memory_width), np.nan, dtype=np.float32)

    def encode_step(
        self,
        raw: np.ndarray,
        last: np.ndarray,
        type_idx: np.ndarray,
        mode_idx: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Encode one reading for each of N machines.

        raw (N, S): values, NaN missing. last (N, memory_width): each machine's memory (its last
        clipped observed values first; NaN where never seen: `initial_memory`). Returns x
        (N, n_inputs) float32, the new memory, imputed (N, S) bool, clipped (N, S) bool.
        """
        raw = np.asarray(raw, dtype=np.float32)
        s = self.n_sensors
        previous = last[:, :s]
        missing = np.isnan(raw)
        clipped_values = np.clip(raw, self._lo, self._hi)
        clipped = ~missing & (clipped_values != raw)
        filled = np.where(missing, previous, clipped_values)  # also the new last values
        mu, sd = self._scaling(mode_idx)
        z = np.where(np.isnan(filled), 0.0, (filled - mu) / sd).astype(np.float32)  # never seen: typical

        n = raw.shape[0]
        x = np.zeros((n, self.n_inputs), dtype=np.float32)
        x[:, :s] = z
        x[:, s : 2 * s] = missing
        offset = 2 * s
        rows = np.arange(n)
        known = type_idx >= 0
        x[rows[known], offset + type_idx[known]] = 1.0
        offset += len(self.machine_types)
        known = mode_idx >= 0
        x[rows[known], offset + mode_idx[known]] = 1.0
        if not self.trend_alphas:
            return x, filled, missing, clipped
        memory = np.empty_like(last)
        memory[:, :s] = filled
        x[:, self.derived_offset :] = self._step_trends(z, last, memory) * self._trend_scale
        return x, memory, missing, clipped

    def _step_trends(self, z: np.ndarray, last: np.ndarray, memory: np.ndarray) -> np.ndarray:
        """Move the trend memory on by one scaled reading z (N, S), from `last` into `memory`;
        returns the derived columns (N, D)."""
        n, s = z.shape
        k = len(self.alphas)
        ewma = last[:, s : s + k * s].reshape(n, k, s)
        ewma = np.where(np.isnan(ewma), z[:, None, :], ewma + self._alphas[None, :, None] * (z[:, None, :] - ewma))
        memory[:, s : s + k * s] = ewma.reshape(n, k * s)
        parts = [ewma[:, j] - ewma[:, j + 1] for j in range(k - 1)]
        if self.baseline_steps > 0:
            base, count = last[:, s + k * s : s + k * s + s], np.nan_to_num(last[:, s + k * s + s])
            seen = count + 1.0
            update = seen[:, None] <= self.baseline_steps
            base = np.where(np.isnan(base), z, np.where(update, base + (z - base) / seen[:, None], base))
            memory[:, s + k * s : s + k * s + s] = base
            memory[:, s + k * s + s] = np.minimum(seen, self.baseline_steps)
            parts.append(ewma[:, 0] - base)
        return np.concatenate(parts, axis=1)

    @property
    def alphas(self) -> np.ndarray:
        return self._alphas

    def encode_sequence(
        self, raw: np.ndarray, type_idx: np.ndarray, mode_idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encode one machine's readings (T, S) in time order, exactly as live scoring would
        step through them. Returns x (T, n_inputs), imputed (T, S), clipped (T, S)."""
        x, imputed, clipped = self.encode_sequences([raw], [type_idx], [mode_idx])[0]
        return x, imputed, clipped

    def encode_sequences(
        self, raws: Sequence[np.ndarray], type_idx: Sequence[np.ndarray], mode_idx: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """encode_sequence for many machines at once: one encode_step per time step over all the
        sequences still running (the same arithmetic as live scoring, far fewer calls)."""
        lengths = np.array([len(r) for r in raws], dtype=np.int64)
        n, t_max, s = len(raws), int(lengths.max()) if len(raws) else 0, self.n_sensors
        raw_pad = np.full((n, t_max, s), np.nan, dtype=np.float32)
        type_pad = np.full((n, t_max), -1, dtype=np.int64)
        mode_pad = np.full((n, t_max), -1, dtype=np.int64)
        for a, (r, ti, mi) in enumerate(zip(raws, type_idx, mode_idx)):
            raw_pad[a, : len(r)], type_pad[a, : len(r)], mode_pad[a, : len(r)] = r, ti, mi
        x_pad = np.zeros((n, t_max, self.n_inputs), dtype=np.float32)
        imp_pad = np.zeros((n, t_max, s), dtype=bool)
        clp_pad = np.zeros((n, t_max, s), dtype=bool)
        memory = self.initial_memory(n)
        order = np.argsort(-lengths, kind="stable")  # running sequences are a prefix of this order
        for t in range(t_max):
            active = order[: int((lengths > t).sum())]
            x, memory[active], imp, clp = self.encode_step(raw_pad[active, t], memory[active], type_pad[active, t],
                                                           mode_pad[active, t])
            x_pad[active, t], imp_pad[active, t], clp_pad[active, t] = x, imp, clp
        return [(x_pad[a, :m], imp_pad[a, :m], clp_pad[a, :m]) for a, m in enumerate(lengths)]

    # --- compact storage of encoded inputs -----------------------------------------------------
    def input_layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Fields (per-input shape, dtype) of the compact form of one encoded input: 2 S + S / 8
        + 2 bytes (+ 2 per derived column) instead of 4 n_inputs, for inputs kept per machine
        (explanation history)."""
        categories = np.min_scalar_type(max(len(self.machine_types), len(self.operating_modes)))
        layout = {
            "sensors": ((self.n_sensors,), np.dtype(np.float16)),  # scaled values
            "missing": (((self.n_sensors + 7) // 8,), np.dtype(np.uint8)),  # flags as bits, little-endian
            "type": ((), categories),  # index + 1 of the hot column; 0: unknown (all-zero one-hot)
            "mode": ((), categories),
        }
        if self.n_derived_columns:
            layout["trends"] = ((self.n_derived_columns,), np.dtype(np.float16))
        return layout

    def compact_inputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """encode_step outputs (..., n_inputs) -> the fields of input_layout(). Exact but for the
        float16 rounding of the scaled values and trends (flags and one-hots are 0/1)."""
        s, t, m = self.n_sensors, len(self.machine_types), len(self.operating_modes)
        layout = self.input_layout()

        def category(one_hot: np.ndarray, dtype: np.dtype) -> np.ndarray:
            return (one_hot @ np.arange(1, one_hot.shape[-1] + 1, dtype=np.float32)).astype(dtype)

        parts = {
            "sensors": x[..., :s].astype(np.float16),
            "missing": np.packbits(x[..., s : 2 * s] != 0, axis=-1, bitorder="little"),
            "type": category(x[..., 2 * s : 2 * s + t], layout["type"][1]),
            "mode": category(x[..., 2 * s + t : 2 * s + t + m], layout["mode"][1]),
        }
        if self.n_derived_columns:
            parts["trends"] = x[..., self.derived_offset :].astype(np.float16)
        return parts

    def expand_inputs(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """compact_inputs' fields -> inputs (..., n_inputs) float32."""
        s, t, m = self.n_sensors, len(self.machine_types), len(self.operating_modes)
        sensors = parts["sensors"]
        x = np.empty((*sensors.shape[:-1], self.n_inputs), dtype=np.float32)
        x[..., :s] = sensors
        x[..., s : 2 * s] = np.unpackbits(parts["missing"], axis=-1, count=s, bitorder="little")
        x[..., 2 * s : 2 * s + t] = parts["type"][..., None] == np.arange(1, t + 1)
        x[..., 2 * s + t : 2 * s + t + m] = parts["mode"][..., None] == np.arange(1, m + 1)
        if self.n_derived_columns:
            x[..., self.derived_offset :] = parts["trends"]
        return x

    def mode_of(self, x_row: np.ndarray) -> int:
        """The operating-mode index an encoded input carries (-1: unknown or none)."""
        s, t, m = self.n_sensors, len(self.machine_types), len(self.operating_modes)
        hot = np.flatnonzero(np.asarray(x_row)[2 * s + t : 2 * s + t + m] > 0.5)
        return int(hot[0]) if hot.size else -1

    def unscale(self, sensor: int, scaled: float, mode: int = -1) -> float:
        """A scaled value back in the sensor's units (in `mode`'s scaling where the spec has one)."""
        mu, sd = self._scaling(np.array([mode]))
        mu, sd = np.broadcast_to(mu, (1, self.n_sensors)), np.broadcast_to(sd, (1, self.n_sensors))
        return float(scaled * sd[0, sensor] + mu[0, sensor])


class _quiet:
    """Silence numpy's warnings for all-NaN slices (their result is replaced anyway)."""

    def __enter__(self) -> None:
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._catch.__exit__(*exc)
