"""Centrifugal pumps on a tank-filling duty cycle, degrading to failure by slow drifts of flow and
bearing temperature.

Each pump (fixed speed) runs until its tank is full, then stops until the level falls: runs of
3-8 h, stops of 0.5-3 h, readings every 10 minutes either way. While running, the operating
point is where the pump's head curve H = H0 (1 - w) - k Q² meets the system curve
H = H_static + r Q² (the static head follows the tank level); hydraulic power rho g Q H over
the pump's efficiency, which falls off away from its best-efficiency flow and with impeller
wear, is the motor's load. Bearing housings heat with friction (speed, load) and with bearing
damage, and follow their steady temperature with a 45-minute thermal lag, cooling to ambient
(a daily cycle) while the pump stands. Five sensors: flow (m³/h), discharge pressure (bar),
motor power (kW), drive-end and non-drive-end bearing temperature (°C); nulls and spikes as
gateways send them.

Failure modes, each a slow drift that starts at 30-70 % of the life and accelerates to failure:
impeller wear (head and flow fall, efficiency drops), drive-end bearing wear (DE temperature
rises, a little friction power), and misalignment (both bearings heat, NDE most, power rises).
Lives last 2-12 days; a failed pump is repaired in 4-24 h and starts a new life (cycle 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from benchmarks.maintenance.dataset import Dataset, Event, Part, at, iso

SENSORS = ("flow_m3h", "discharge_bar", "motor_kw", "bearing_de_c", "bearing_nde_c")
MODES = ("impeller_wear", "bearing_wear", "misalignment")
STEP_H = 10.0 / 60.0
_RHO_G = 1000.0 * 9.81
_TAU_BEARING_H = 0.75
_SCALE = np.array([10.0, 100.0, 10.0, 10.0, 10.0])  # gateway resolution per sensor


@dataclass(frozen=True)
class PumpConfig:
    train_pumps: int = 14
    heldout_pumps: int = 8
    lives_per_pump: int = 3
    seed: int = 11
    life_hours: tuple[float, float] = (48.0, 288.0)
    onset_share: tuple[float, float] = (0.3, 0.7)
    missing_rate: float = 0.01
    spike_rate: float = 0.0005
    start: datetime = datetime(2025, 4, 7, tzinfo=timezone.utc)


@dataclass
class _Pump:
    h0: float  # shut-off head, m
    k: float  # head-curve coefficient, m per (m³/h)²
    q_bep: float  # best-efficiency flow, m³/h
    eta_bep: float
    r: float  # system resistance, m per (m³/h)²
    static: tuple[float, float]  # static head range over the tank level, m
    suction_bar: float
    de_rise: float  # bearing rise over ambient at rated running, °C
    nde_rise: float
    site_temp: float
    run_h: tuple[float, float]
    stop_h: tuple[float, float]


def _new_pump(rng: np.random.Generator) -> _Pump:
    h0 = rng.uniform(55.0, 70.0)
    q_bep = rng.uniform(100.0, 140.0)
    return _Pump(
        h0=h0, k=0.25 * h0 / q_bep**2, q_bep=q_bep, eta_bep=rng.uniform(0.72, 0.82),
        r=rng.uniform(0.35, 0.5) * h0 / q_bep**2, static=(rng.uniform(8.0, 14.0), rng.uniform(18.0, 24.0)),
        suction_bar=rng.uniform(0.8, 1.6), de_rise=rng.uniform(22.0, 30.0), nde_rise=rng.uniform(16.0, 24.0),
        site_temp=rng.uniform(12.0, 28.0), run_h=(3.0, 8.0), stop_h=(0.5, 3.0),
    )


def _life(rng: np.random.Generator, pump: _Pump, cfg: PumpConfig, pump_id: str, number: int, start_h: float,
          bearings: list[float]) -> tuple[list[Event], Event, float]:
    """One life from commissioning (or repair) to failure; returns its readings, the failure and
    its time (hours from cfg.start). `bearings`: the housings' temperatures, carried on."""
    life_h = rng.uniform(*cfg.life_hours)
    onset = life_h * rng.uniform(*cfg.onset_share)
    mode = int(rng.integers(len(MODES)))
    shape = rng.uniform(1.5, 3.0)  # how sharply the fault accelerates
    n = int(life_h / STEP_H)
    running = bool(rng.random() < 0.7)
    span = left = rng.uniform(*(pump.run_h if running else pump.stop_h))
    readings = []
    de_t, nde_t = bearings
    for c in range(n):
        h = start_h + c * STEP_H
        s = np.clip((c * STEP_H - onset) / (life_h - onset), 0.0, 1.0) ** shape
        wear = 0.02 + (0.22 * s if mode == 0 else 0.0)  # head lost by the impeller
        de_fault = 28.0 * s if mode == 1 else 0.0
        align = s if mode == 2 else 0.0
        ambient = pump.site_temp + 5.0 * np.sin(2 * np.pi * (h % 24.0 - 9.0) / 24.0)
        left -= STEP_H
        if left <= 0:
            running = not running
            span = left = rng.uniform(*(pump.run_h if running else pump.stop_h))
        if running:
            fill = 1.0 - left / span  # the tank fills over the run: the static head rises with its level
            static = pump.static[0] + (pump.static[1] - pump.static[0]) * fill
            q = np.sqrt(max(pump.h0 * (1 - wear) - static, 1.0) / (pump.k + pump.r))
            head = pump.h0 * (1 - wear) - pump.k * q * q
            eta = pump.eta_bep * (1 - 0.6 * ((q - pump.q_bep) / pump.q_bep) ** 2) * (1 - 0.8 * (wear - 0.02))
            shaft_kw = _RHO_G * (q / 3600.0) * head / 1000.0 / max(eta, 0.2)
            motor_kw = shaft_kw / 0.94 + 0.8 * de_fault / 28.0 + 3.0 * align
            load = shaft_kw / 30.0
            de_ss = ambient + pump.de_rise * (0.8 + 0.2 * load) + de_fault + 9.0 * align
            nde_ss = ambient + pump.nde_rise * (0.8 + 0.2 * load) + 22.0 * align
            discharge = pump.suction_bar + head * _RHO_G / 1e5
        else:
            q, motor_kw, de_ss, nde_ss = 0.0, 0.0, ambient, ambient
            discharge = pump.suction_bar + pump.static[0] * _RHO_G / 1e5 * 0.95  # the check valve holds the column
        lag = -np.expm1(-STEP_H / _TAU_BEARING_H)
        de_t += (de_ss - de_t) * lag
        nde_t += (nde_ss - nde_t) * lag
        true = np.array([q, discharge, motor_kw, de_t, nde_t])
        noise = np.array([1.2 + 0.01 * q, 0.04, 0.25 + 0.01 * motor_kw, 0.35, 0.35]) * rng.standard_normal(5)
        values = np.maximum(true + noise * (true > 0.05) + noise * 0.2 * (true <= 0.05), 0.0)
        spike = rng.random(5) < cfg.spike_rate
        values[spike] *= rng.uniform(1.5, 3.0, int(spike.sum()))
        values = np.round(values * _SCALE) / _SCALE
        sensors: dict[str, float | None] = {k: float(v) for k, v in zip(SENSORS, values)}
        for name in SENSORS:
            if rng.random() < cfg.missing_rate:
                sensors[name] = None
        readings.append({
            "event_id": f"{pump_id}-l{number}-{c:05d}", "machine_id": pump_id, "ts": iso(at(cfg.start, h)),
            "machine_type": "centrifugal_pump", "operating_mode": "running" if running else "stopped",
            "cycle": c, "sensors": sensors,
        })
    bearings[:] = [de_t, nde_t]
    failed_h = start_h + (n - 1) * STEP_H + rng.uniform(0.1, 0.9) * STEP_H
    outcome = {"event_id": f"{pump_id}-l{number}-failure", "machine_id": pump_id, "ts": iso(at(cfg.start, failed_h)),
               "outcome": "failure", "failure_mode": MODES[mode]}
    return readings, outcome, failed_h


def _fleet(rng: np.random.Generator, cfg: PumpConfig, prefix: str, n: int, offset_h: float) -> Part:
    part = Part()
    for p in range(n):
        pump = _new_pump(rng)
        pump_id = f"{prefix}{p:02d}"
        t = offset_h + rng.uniform(0.0, 48.0)
        bearings = [pump.site_temp, pump.site_temp]
        for life in range(cfg.lives_per_pump):
            readings, outcome, failed = _life(rng, pump, cfg, pump_id, life, t, bearings)
            part.readings.extend(readings)
            part.outcomes.append(outcome)
            t = failed + rng.uniform(4.0, 24.0)  # repair
            bearings[:] = [pump.site_temp, pump.site_temp]
    return part


def generate(quick: bool = False, config: PumpConfig = PumpConfig()) -> Dataset:
    """Training pumps (about 40 lives), then other pumps over the following weeks."""
    rng = np.random.default_rng(config.seed)
    n_train, n_held = (10, 6) if quick else (config.train_pumps, config.heldout_pumps)
    train = _fleet(rng, config, "pump-", n_train, 0.0)
    last = max(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in train.readings)
    offset = (last - config.start).total_seconds() / 3600.0 + 24.0
    heldout = _fleet(rng, config, "new-", n_held, offset)
    return Dataset("pump-duty-cycle", __doc__.split("\n\n")[0].replace("\n", " "), train, heldout)
