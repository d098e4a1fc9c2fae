"""Predictive-maintenance fleet simulator: machines that degrade and run to failure, with ground truth.

Each machine has a hidden health h in [0, 1]: 0 until a random onset, then rising slowly and
accelerating exponentially until h = 1 at the failure time (the P-F curve of reliability
engineering). The failure mode decides which sensors h moves, so an ML model sees the early trend
while the late stage pushes the mode's sensor past its physical rule limit. On top of the physics
come the nuisances real telemetry has: noise, spikes, nulls, sensor dropouts, calibration drift and
sensors that are not fitted at all.

The whole fleet is stepped one reading interval at a time, vectorised over machines with numpy;
`history()` runs every machine from new to failure, `live()` is an endless time-ordered stream.
"""

from __future__ import annotations

import json
import math
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import numpy as np

SENSORS = (
    "vibration_rms",  # mm/s, broadband velocity (ISO 10816)
    "vibration_hf",  # g, high-frequency envelope energy: first to show rolling-element defects
    "bearing_temp",  # °C
    "motor_temp",  # °C, winding
    "oil_pressure",  # bar
    "motor_current",  # A
    "rpm",
    "ambient_temp",  # °C, nuisance: daily cycle and weather
)
MACHINE_TYPES = ("pump", "compressor", "fan")
OPERATING_MODES = ("idle", "normal", "peak")
FAILURE_MODES = ("bearing_wear", "cooling_failure", "lubrication_loss", "electrical")


@dataclass(frozen=True)
class MachineType:
    rated_current: float  # A at rated load
    rated_rpm: float
    vibration: float  # mm/s rms, healthy at rated speed
    vibration_hf: float  # g, healthy at rated speed
    motor_rise: float  # °C winding rise over ambient at rated losses
    bearing_rise: float  # °C bearing rise over ambient from friction at rated speed
    oil_pressure: float  # bar at rated speed (shaft-driven oil pump)


MACHINE_TYPE_PARAMS: dict[str, MachineType] = {
    "pump": MachineType(45.0, 1480.0, 1.8, 0.30, 45.0, 22.0, 4.0),
    "compressor": MachineType(85.0, 2960.0, 2.2, 0.35, 50.0, 26.0, 4.2),
    "fan": MachineType(22.0, 980.0, 1.4, 0.22, 38.0, 18.0, 3.8),
}
RATED_CURRENT: dict[str, float] = {name: p.rated_current for name, p in MACHINE_TYPE_PARAMS.items()}

# Physical rule limits (low, high) used by the product's rule fallback; motor_current depends on
# the machine type, see `rule_limits`.
DEFAULT_RULE_LIMITS: dict[str, tuple[Optional[float], Optional[float]]] = {
    "vibration_rms": (None, 7.1),
    "bearing_temp": (None, 95.0),
    "motor_temp": (None, 110.0),
    "oil_pressure": (1.2, None),
}
CURRENT_LIMIT_FACTOR = 1.4
# The sensor whose rule limit each failure mode crosses in its last hours.
FAILURE_MODE_SENSOR = {
    "bearing_wear": "vibration_rms",
    "cooling_failure": "motor_temp",
    "lubrication_loss": "oil_pressure",
    "electrical": "motor_current",
}


def rule_limits(machine_type: str) -> dict[str, tuple[Optional[float], Optional[float]]]:
    """The default limits plus the type's over-current limit."""
    return {**DEFAULT_RULE_LIMITS, "motor_current": (None, CURRENT_LIMIT_FACTOR * RATED_CURRENT[machine_type])}


@dataclass
class FleetConfig:
    n_machines: int = 50
    seed: int = 0
    interval_minutes: float = 30.0
    start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc)
    missing_rate: float = 0.01  # chance a value is null
    dropout_rate: float = 0.0003  # chance per sensor and reading that a dropout (2-12 h of nulls) starts
    spike_rate: float = 0.001  # chance a value is an outlier
    drift_fraction: float = 0.15  # share of lives with one sensor drifting out of calibration
    unfitted_fraction: float = 0.05  # share of machines without an optional sensor (key absent)
    life_hours: tuple[float, float] = (80.0, 400.0)
    repair_hours: tuple[float, float] = (2.0, 24.0)
    near_failure_fraction: float = 0.1  # share of machines that live() starts in their last 12 h
    # live(): every machine starts at a random age before its fault begins to develop (none
    # near failure), so a scorer watching from the start sees each fault from its onset and
    # the first failure comes a whole degradation period (24 h or more) after the start.
    healthy_start: bool = False

    def __post_init__(self) -> None:
        if self.n_machines < 1:
            raise ValueError("n_machines must be at least 1")
        if not self.interval_minutes > 0:
            raise ValueError("interval_minutes must be positive")
        shares = ("missing_rate", "dropout_rate", "spike_rate", "drift_fraction", "unfitted_fraction")
        for name in (*shares, "near_failure_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        for name in ("life_hours", "repair_hours"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high")
        if self.life_hours[0] < 4 * self.interval_minutes / 60:
            raise ValueError("life_hours must span at least four readings")
        self.start = _utc(self.start)


@dataclass(frozen=True, slots=True)
class SimEvent:
    kind: Literal["reading", "outcome"]
    key: str  # machine_id: the Kafka key, so a machine's events stay in order on one partition
    value: dict[str, Any]


@dataclass
class SimulatedHistory:
    readings: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]

    def write(self, readings_path: Path, outcomes_path: Path) -> None:
        """JSON Lines, one message per line."""
        for path, rows in ((readings_path, self.readings), (outcomes_path, self.outcomes)):
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)


class FleetSimulator:
    def __init__(self, config: Optional[FleetConfig] = None) -> None:
        self.config = config or FleetConfig()

    def history(self, lives_per_machine: int = 1) -> SimulatedHistory:
        """Every machine from new to failure, `lives_per_machine` times (repaired in between)."""
        if lives_per_machine < 1:
            raise ValueError("lives_per_machine must be at least 1")
        fleet = _Fleet(self.config, self.config.start, stream=1, max_lives=lives_per_machine)
        readings: list[dict[str, Any]] = []
        outcomes: list[dict[str, Any]] = []
        while not fleet.retired.all():
            for event in fleet.step():
                (readings if event.kind == "reading" else outcomes).append(event.value)
        return SimulatedHistory(readings, outcomes)

    def live(self, start: Optional[datetime] = None) -> Iterator[SimEvent]:
        """Endless, time-ordered; machines begin at random ages, some in their last 12 hours
        (with `healthy_start`: before their fault develops)."""
        fleet = _Fleet(self.config, start or self.config.start, stream=2, max_lives=None)
        while True:
            yield from fleet.step()

    def live_readings(self, n: int) -> list[dict[str, Any]]:
        """The first `n` sensor readings of the live stream (messages as producers send them)."""
        readings = (event.value for event in self.live() if event.kind == "reading")
        return [next(readings) for _ in range(n)]


# --- physics constants -----------------------------------------------------------------------
_LOAD = np.array([0.3, 0.8, 1.1])  # share of rated load per operating mode
_SPEED = np.array([0.65, 0.95, 1.0])  # share of rated speed (variable-speed drives slow down at idle)
_MODE_DWELL_H = 4.0  # mean hours between mode switches
# Where a switch goes: idle and peak mostly return to normal.
_SWITCH_CDF = np.cumsum([[0.0, 0.8, 0.2], [0.5, 0.0, 0.5], [0.2, 0.8, 0.0]], axis=1)
_MODE_SHARE = (0.25, 0.5, 0.25)  # stationary share of the chain above
_TAU_MOTOR_H, _TAU_BEARING_H = 0.7, 1.5  # thermal time constants: windings heat faster than bearing housings
_CORE_LOSS = 0.35  # share of rated losses present at no load (iron losses), the rest is I²R
# Measurement noise: sd = relative * value + absolute.
_NOISE_REL = np.array([0.05, 0.08, 0.0, 0.0, 0.015, 0.015, 0.001, 0.0])
_NOISE_ABS = np.array([0.05, 0.02, 0.4, 0.5, 0.04, 0.0, 2.0, 0.3])
_DECIMALS = np.array([2, 3, 1, 1, 2, 1, 0, 1])
_SCALE = 10.0**_DECIMALS
_NONNEGATIVE = np.array([name != "ambient_temp" for name in SENSORS])
_DRIFTING = np.array([i for i, n in enumerate(SENSORS) if n != "rpm"])  # analogue ones; rpm is counted pulses
_OPTIONAL = ("vibration_hf", "ambient_temp")  # retrofit sensors some machines lack
_DEGRADING_SHARE = (0.3, 0.6)  # share of a life spent degrading (P-F interval)
_TAU_DEG_H = (6.0, 20.0)  # e-folding time of the accelerating degradation
_LINEAR_WEAR = 0.15  # slow linear part of the wear before the exponential runaway
_DROPOUT_READINGS = (4, 25)
_NEAR_FAILURE_H = 12.0


def _utc(ts: datetime) -> datetime:
    """Naive means UTC; aware is converted, so the "Z" the messages carry is true."""
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class _Fleet:
    """State of all machines, stepped one reading interval at a time."""

    def __init__(self, cfg: FleetConfig, start: datetime, stream: int, max_lives: Optional[int]) -> None:
        self.cfg, self.max_lives = cfg, max_lives
        self.start = _utc(start)
        self.dt_h = cfg.interval_minutes / 60.0
        self.hour0 = self.start.hour + self.start.minute / 60.0 + self.start.second / 3600.0
        self.k = 0  # tick
        n = cfg.n_machines
        # The machines themselves are the same in history and live for one seed; their lives differ.
        fixed = np.random.default_rng([cfg.seed, 0])
        self.rng = np.random.default_rng([cfg.seed, stream])
        self.ids = [f"m-{i:04d}" for i in range(n)]
        self.type_idx = fixed.integers(0, len(MACHINE_TYPES), n)
        params = np.array([astuple(MACHINE_TYPE_PARAMS[t]) for t in MACHINE_TYPES])
        per_machine = params[self.type_idx].T
        self.rated_a, self.rated_rpm, self.vib0, self.hf0, self.motor_rise, self.bearing_rise, self.oil0 = per_machine
        self.duty = fixed.uniform(0.9, 1.05, n)  # how hard each site drives its machine
        self.site_temp = 20.0 + fixed.normal(0.0, 3.0, n)
        has_gap = fixed.random(n) < cfg.unfitted_fraction
        gap = fixed.integers(0, len(_OPTIONAL), n)
        self.unfitted = [(_OPTIONAL[g],) if m else () for m, g in zip(has_gap, gap)]

        self.mode = self.rng.choice(len(OPERATING_MODES), n, p=_MODE_SHARE)
        self.weather = np.zeros(n)
        self.motor_t = np.full(n, np.nan)
        self.bearing_t = np.full(n, np.nan)
        self.dropout = np.zeros((n, len(SENSORS)), dtype=np.int64)
        self.down = np.zeros(n, dtype=np.int64)  # ticks left in repair
        self.retired = np.zeros(n, dtype=bool)
        self.life = np.zeros(n, dtype=np.int64)
        self.cycle = np.zeros(n, dtype=np.int64)
        self.failure_mode = np.zeros(n, dtype=np.int64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.life_h, self.onset_h, self.deg_h, self.tau_h, self.born_h = (np.zeros(n) for _ in range(5))
        self.drift = np.zeros((n, len(SENSORS)))  # calibration gain drift per hour
        self._begin_life(np.arange(n), random_age=max_lives is None)

    # --- lives ------------------------------------------------------------------------------
    def _begin_life(self, idx: np.ndarray, random_age: bool) -> None:
        """Commission new machines (or the first lives seen by live(), at random ages)."""
        rng, m, dt = self.rng, idx.size, self.dt_h
        self.failure_mode[idx] = rng.integers(0, len(FAILURE_MODES), m)
        steps = np.maximum(4, np.round(rng.uniform(*self.cfg.life_hours, m) / dt)).astype(np.int64)
        # Failure strictly after the last reading and no later than the next tick.
        life_h = (steps - 1 + rng.uniform(0.05, 1.0, m)) * dt
        deg_h = life_h * rng.uniform(*_DEGRADING_SHARE, m)
        self.steps[idx], self.life_h[idx], self.deg_h[idx] = steps, life_h, deg_h
        self.onset_h[idx] = life_h - deg_h
        self.tau_h[idx] = np.minimum(rng.uniform(*_TAU_DEG_H, m), deg_h / 3.0)
        drift = np.zeros((m, len(SENSORS)))
        drifting = rng.random(m) < self.cfg.drift_fraction
        rate = rng.uniform(0.01, 0.04, m) * rng.choice([-1.0, 1.0], m) / 100.0  # 1-4 % per 100 h
        drift[np.flatnonzero(drifting), rng.choice(_DRIFTING, m)[drifting]] = rate[drifting]
        self.drift[idx] = drift
        age = np.zeros(m, dtype=np.int64)
        if random_age and self.cfg.healthy_start:
            # Staggered over the healthy part of each life: ages 0 .. the last reading before onset.
            healthy = np.maximum(1, np.floor(self.onset_h[idx] / dt).astype(np.int64))
            age = np.minimum(rng.integers(0, healthy), steps - 1)
        elif random_age:
            age = rng.integers(0, steps)
            near = rng.random(m) < self.cfg.near_failure_fraction
            near[rng.integers(0, m)] = self.cfg.near_failure_fraction > 0  # at least one fails soon
            last = max(1, math.ceil(_NEAR_FAILURE_H / dt))
            age[near] = np.maximum(0, steps[near] - rng.integers(1, last + 1, near.sum()))
        self.cycle[idx] = age
        self.born_h[idx] = (self.k - age) * dt
        # NaN: initialise at the first reading (cold at commissioning, steady state mid-life).
        self.motor_t[idx] = np.nan
        self.bearing_t[idx] = np.nan
        self.dropout[idx] = 0

    def _turnover(self) -> list[SimEvent]:
        """Bring repaired machines back, then record the failures due before this tick."""
        waiting = self.down > 0
        self.down[waiting] -= 1
        back = np.flatnonzero(waiting & (self.down == 0) & ~self.retired)
        if back.size:
            self._begin_life(back, random_age=False)
        failed = np.flatnonzero((self.down == 0) & ~self.retired & (self.cycle >= self.steps))
        if not failed.size:
            return []
        fail_h = self.born_h[failed] + self.life_h[failed]
        events = [self._outcome(i, h) for h, i in sorted(zip(fail_h.tolist(), failed.tolist()))]
        repair = self.rng.uniform(*self.cfg.repair_hours, failed.size)
        self.down[failed] = np.maximum(1, np.ceil(repair / self.dt_h)).astype(np.int64)
        self.life[failed] += 1
        if self.max_lives is not None:
            self.retired[failed] = self.life[failed] >= self.max_lives
        return events

    def _outcome(self, i: int, fail_h: float) -> SimEvent:
        mid = self.ids[i]
        value = {
            "event_id": f"{mid}-l{self.life[i]:02d}-failure",
            "machine_id": mid,
            "ts": _iso(self.start + timedelta(hours=fail_h)),
            "outcome": "failure",
            "failure_mode": FAILURE_MODES[self.failure_mode[i]],
        }
        return SimEvent("outcome", mid, value)

    # --- physics ----------------------------------------------------------------------------
    def _health(self) -> np.ndarray:
        """(N, 4): each machine's hidden degradation in the column of its failure mode."""
        s = np.clip((self.cycle * self.dt_h - self.onset_h) / self.deg_h, 0.0, 1.0)
        runaway = np.expm1(s * self.deg_h / self.tau_h) / np.expm1(self.deg_h / self.tau_h)
        h = _LINEAR_WEAR * s + (1.0 - _LINEAR_WEAR) * runaway
        return h[:, None] * (self.failure_mode[:, None] == np.arange(len(FAILURE_MODES)))

    def _switch_modes(self, u_switch: np.ndarray, u_target: np.ndarray) -> None:
        switch = u_switch < -np.expm1(-self.dt_h / _MODE_DWELL_H)
        target = (u_target[:, None] > _SWITCH_CDF[self.mode]).sum(axis=1)
        self.mode = np.where(switch, target, self.mode)

    def _lag(self, current: np.ndarray, steady: np.ndarray, cold: np.ndarray, tau_h: float) -> np.ndarray:
        """First-order thermal lag towards the steady state."""
        lagged = current + (steady - current) * -np.expm1(-self.dt_h / tau_h)
        return np.where(np.isnan(current), np.where(self.cycle == 0, cold, steady), lagged)

    def _true_values(self, noise: np.ndarray) -> np.ndarray:
        """(N, S) physically consistent sensor values before measurement effects."""
        hb, hc, hl, he = self._health().T
        load = _LOAD[self.mode] * self.duty
        speed = _SPEED[self.mode]
        hour = self.hour0 + self.k * self.dt_h
        # Ambient: site climate, a daily cycle peaking mid-afternoon, and slow AR(1) weather.
        self.weather = 0.97 * self.weather + 0.4 * noise[:, -2]
        ambient = self.site_temp + 6.0 * np.sin(2 * np.pi * (hour - 9.0) / 24.0) + self.weather
        # Current follows load; an insulation/winding fault adds leakage current that is noisy.
        current = self.rated_a * (0.25 + 0.75 * load + 1.1 * he**1.5 + 0.12 * he * noise[:, -1])
        # Winding losses: iron losses plus I²R, so an electrical fault also heats the motor. A failing
        # cooling system raises the thermal resistance and lets heat soak even at low load.
        losses = _CORE_LOSS + (1 - _CORE_LOSS) * (current / self.rated_a) ** 2
        motor_ss = ambient + self.motor_rise * losses * (1 + 2.5 * hc**1.5) + 45.0 * hc**2
        self.motor_t = self._lag(self.motor_t, motor_ss, ambient, _TAU_MOTOR_H)
        # Bearings: friction heat ~ speed, conduction from the motor; wear (late) and dry running add heat.
        bearing_ss = ambient + self.bearing_rise * speed + 0.25 * (self.motor_t - ambient) + 50.0 * hb**4 + 55.0 * hl**2
        self.bearing_t = self._lag(self.bearing_t, bearing_ss, ambient, _TAU_BEARING_H)
        # Vibration: imbalance ~ speed and load; spalling first shows as HF energy, then broadband.
        vib = self.vib0 * (0.4 + 0.6 * speed) * (1 + 0.15 * load) + 10.0 * hb**2 + 3.0 * hl**1.5
        vib_hf = self.hf0 * (0.5 + 0.5 * speed) + 2.0 * np.sqrt(hb) + 0.6 * hl**2
        # Shaft-driven oil pump: pressure ~ speed; a leak drains it; hot oil is thinner.
        oil = self.oil0 * (0.55 + 0.45 * speed) * (1 - 0.85 * hl) - 0.008 * (self.bearing_t - 50.0)
        rpm = self.rated_rpm * speed * (1 - 0.02 * load)  # induction motor slip grows with load
        return np.stack([vib, vib_hf, self.bearing_t, self.motor_t, oil, current, rpm, ambient], axis=1)

    def _measure(self, true: np.ndarray, noise: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Calibration drift, noise, spikes, nulls and dropouts; rounded like a gateway would."""
        n_s = len(SENSORS)
        u_spike, u_missing, u_dropout = u[:, :n_s], u[:, n_s : 2 * n_s], u[:, 2 * n_s : 3 * n_s]
        age_h = (self.cycle * self.dt_h)[:, None]
        gain = 1.0 + self.drift * age_h
        values = true * gain + (_NOISE_REL * np.abs(true) + _NOISE_ABS) * noise[:, :n_s]
        spike = u_spike < self.cfg.spike_rate
        if spike.any():
            k = int(spike.sum())
            values[spike] *= np.exp(self.rng.uniform(0.3, 0.9, k) * self.rng.choice([-1.0, 1.0], k))
        values = np.where(_NONNEGATIVE, np.maximum(values, 0.0), values)
        values = np.round(values * _SCALE) / _SCALE
        start = (self.dropout == 0) & (u_dropout < self.cfg.dropout_rate)
        if start.any():
            self.dropout[start] = self.rng.integers(*_DROPOUT_READINGS, int(start.sum()))
        values[(u_missing < self.cfg.missing_rate) | (self.dropout > 0)] = np.nan
        np.subtract(self.dropout, 1, out=self.dropout, where=self.dropout > 0)
        return values

    # --- stepping ---------------------------------------------------------------------------
    def step(self) -> list[SimEvent]:
        """One tick: the failures since the last tick (by time), then a reading per running machine."""
        events = self._turnover()
        n, n_s = self.cfg.n_machines, len(SENSORS)
        noise = self.rng.standard_normal((n, n_s + 2))
        u = self.rng.random((n, 3 * n_s + 2))
        self._switch_modes(u[:, -2], u[:, -1])
        values = self._measure(self._true_values(noise), noise, u)
        running = np.flatnonzero((self.down == 0) & ~self.retired)
        if running.size:
            events.extend(self._readings(running, values[running]))
        self.cycle[running] += 1
        self.k += 1
        return events

    def _readings(self, idx: np.ndarray, values: np.ndarray) -> list[SimEvent]:
        ts = _iso(self.start + timedelta(minutes=self.k * self.cfg.interval_minutes))
        cells = values.astype(object)
        cells[np.isnan(values)] = None
        events = []
        for i, row in zip(idx.tolist(), cells.tolist()):
            mid, cycle = self.ids[i], int(self.cycle[i])
            sensors = dict(zip(SENSORS, row))
            for name in self.unfitted[i]:
                del sensors[name]
            value = {
                "event_id": f"{mid}-l{self.life[i]:02d}-{cycle:06d}",
                "machine_id": mid,
                "ts": ts,
                "machine_type": MACHINE_TYPES[self.type_idx[i]],
                "operating_mode": OPERATING_MODES[self.mode[i]],
                "cycle": cycle,
                "sensors": sensors,
            }
            events.append(SimEvent("reading", mid, value))
        return events
