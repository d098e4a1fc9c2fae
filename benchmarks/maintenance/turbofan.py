"""Turbofan engines degrading to failure, in the manner of NASA's C-MAPSS data (Saxena et al.,
"Damage propagation modeling for aircraft engine run-to-failure simulation", PHM 2008).

Each reading is one flight (cycle), snapshotted at one of six flight conditions (altitude,
Mach number, throttle resolver angle), as in C-MAPSS FD002/FD004. Engine inlet conditions come
from the standard atmosphere and ram compression; the 21 gas-path measurements follow
the engine's operating line at that condition (temperatures scale with inlet temperature and
the pressure ratio, pressures with inlet pressure, shaft speeds with the square root of inlet
temperature). Wear is a damage fraction D per module (high-pressure compressor, fan) that grows
exponentially from a random initial wear to 1 at failure (the health margin crossing zero);
it lowers compressor efficiency and flow, so exit temperatures, fuel ratio, core speed and
bypass ratio rise and pressures and coolant bleeds fall, each by a few times its measurement
noise at failure, as the C-MAPSS sensors do. Engines differ by manufacturing scatter
(small per-engine offsets) and initial wear. Flights are one hour apart; lives last 130 to 360
flights. The three flight settings are reported as sensors, and the flight condition as the
operating mode (the label an operator's data would carry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from benchmarks.maintenance.dataset import Dataset, Event, Part, at, iso

# (altitude kft, Mach, throttle resolver angle): the six C-MAPSS flight conditions.
CONDITIONS = np.array([(0.0, 0.0, 100.0), (10.0, 0.25, 100.0), (20.0, 0.70, 100.0),
                       (25.0, 0.62, 60.0), (35.0, 0.84, 100.0), (42.0, 0.84, 100.0)])
MODES = ("hpc_degradation", "fan_degradation")
FLIGHT_HOURS = 1.0
LIFE_FLIGHTS = (130, 360)
# Measurement noise (share of the value) and, per failure mode, the change at failure
# (share of the value): (name, noise, hpc, fan). Settings and demanded speeds do not wear.
SENSORS: tuple[tuple[str, float, float, float], ...] = (
    ("T2", 0.0, 0.0, 0.0), ("T24", 0.0008, 0.0030, 0.0040), ("T30", 0.0038, 0.0100, 0.0060),
    ("T50", 0.0064, 0.0200, 0.0150), ("P2", 0.0, 0.0, 0.0), ("P15", 0.0010, 0.0, -0.0040),
    ("P30", 0.0016, -0.0050, -0.0020), ("Nf", 0.00003, 0.0001, 0.0002), ("Nc", 0.0024, 0.0040, 0.0010),
    ("epr", 0.0005, -0.0010, -0.0030), ("Ps30", 0.0056, 0.0220, 0.0100), ("phi", 0.0014, -0.0060, -0.0030),
    ("NRf", 0.00003, 0.0001, 0.0002), ("NRc", 0.0023, 0.0040, 0.0010), ("BPR", 0.0044, 0.0180, 0.0200),
    ("farB", 0.0, 0.0, 0.0), ("htBleed", 0.0038, 0.0130, 0.0080), ("Nf_dmd", 0.0, 0.0, 0.0),
    ("PCNfR_dmd", 0.0, 0.0, 0.0), ("W31", 0.0047, -0.0190, -0.0110), ("W32", 0.0047, -0.0190, -0.0110),
)
SETTINGS = ("altitude_kft", "mach", "throttle_angle")


@dataclass(frozen=True)
class TurbofanConfig:
    train_engines: int = 100
    heldout_engines: int = 50
    seed: int = 7
    fleet_days: float = 40.0  # engines enter service spread over this many days
    initial_wear: tuple[float, float] = (0.0, 0.25)
    wear_exponent: tuple[float, float] = (2.5, 5.0)  # k of D(t) = d0 + (1 - d0) expm1(k t/L) / expm1(k)
    scatter: float = 0.5  # per-engine offsets, in units of each sensor's noise
    start: datetime = datetime(2025, 1, 6, tzinfo=timezone.utc)


def _inlet(alt_kft: np.ndarray, mach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan inlet total temperature (°R) and pressure (psia): standard atmosphere + ram rise."""
    alt_ft = alt_kft * 1000.0
    t_static = np.where(alt_ft < 36089.0, 518.67 - 0.00356616 * alt_ft, 389.97)
    p_static = np.where(alt_ft < 36089.0, 14.696 * (t_static / 518.67) ** 5.2559,
                        3.2835 * np.exp(-(alt_ft - 36089.0) / 20806.0))
    ram = 1.0 + 0.2 * mach**2
    return t_static * ram, p_static * ram**3.5


def _healthy(alt: np.ndarray, mach: np.ndarray, tra: np.ndarray) -> np.ndarray:
    """(N, 21) gas-path values of a new engine at the given conditions, in SENSORS order."""
    t2, p2 = _inlet(alt, mach)
    theta, delta = t2 / 518.67, p2 / 14.696
    power = tra / 100.0
    corrected = 0.85 + 0.15 * power  # corrected fan speed fraction on the operating line
    opr = 37.9 * (0.45 + 0.55 * power)  # overall pressure ratio
    nf = 2388.0 * corrected * np.sqrt(theta)
    nc = 9065.0 * (0.9 + 0.1 * power) * np.sqrt(theta)
    p30 = p2 * opr
    return np.stack([
        t2,
        t2 * (1.0 + 0.2388 * (0.6 + 0.4 * power)),  # T24, low-pressure compressor exit
        t2 * opr**0.308,  # T30: compressor exit, isentropic rise at ~0.85 efficiency
        t2 * 2.715 * np.sqrt(0.6 + 0.4 * power),  # T50, low-pressure turbine exit
        p2,
        p2 * 1.478 * (0.9 + 0.1 * power),  # P15, bypass duct
        p30,
        nf,
        nc,
        1.02 + 0.28 * power,  # engine pressure ratio
        0.0858 * p30,  # Ps30, static
        521.4 * (0.55 + 0.45 * power) / delta**0.05,  # phi, fuel flow per Ps30
        nf / np.sqrt(theta),  # corrected fan speed
        8143.0 * (0.9 + 0.1 * power),  # corrected core speed
        8.44 * (1.1 - 0.1 * power),  # bypass ratio
        np.full_like(t2, 0.03),  # burner fuel-air ratio
        393.0 * (0.6 + 0.4 * power) * theta**0.3,  # bleed enthalpy
        2388.0 * corrected,  # demanded fan speed
        100.0 * corrected / 1.0,  # demanded corrected fan speed, %
        38.83 * delta**0.9 * (0.6 + 0.4 * power),  # W31, HPT coolant bleed
        23.30 * delta**0.9 * (0.6 + 0.4 * power),  # W32, LPT coolant bleed
    ], axis=1)


_NOISE = np.array([s[1] for s in SENSORS])
_WEAR = np.array([[s[2] for s in SENSORS], [s[3] for s in SENSORS]])  # (mode, sensor)
_DECIMALS = np.array([2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 4, 2, 0, 0, 2, 2, 4])


def _engine(rng: np.random.Generator, cfg: TurbofanConfig, engine_id: str, start_h: float) -> tuple[list[Event], Event]:
    life = int(rng.integers(*LIFE_FLIGHTS))
    mode = int(rng.integers(len(MODES)))
    d0 = rng.uniform(*cfg.initial_wear)
    k = rng.uniform(*cfg.wear_exponent)
    t = np.arange(life, dtype=np.float64)
    damage = d0 + (1.0 - d0) * np.expm1(k * (t + 1) / life) / np.expm1(k)
    # The failing module wears to failure; the other wears a little alongside it.
    wear = np.zeros((life, 2))
    wear[:, mode] = damage
    wear[:, 1 - mode] = 0.3 * damage
    cond = CONDITIONS[rng.integers(len(CONDITIONS), size=life)]
    healthy = _healthy(cond[:, 0], cond[:, 1], cond[:, 2])
    offset = 1.0 + cfg.scatter * _NOISE * rng.standard_normal(len(SENSORS))
    # Wear shows more at high power (larger flows and temperature rises).
    power = 0.6 + 0.4 * cond[:, 2:3] / 100.0
    values = healthy * offset * (1.0 + power * (wear @ _WEAR))
    values *= 1.0 + _NOISE * rng.standard_normal(values.shape)
    values = np.round(values * 10.0**_DECIMALS) / 10.0**_DECIMALS
    start = cfg.start
    readings = []
    for c in range(life):
        sensors = {name: float(v) for (name, *_), v in zip(SENSORS, values[c])}
        sensors |= {SETTINGS[0]: float(cond[c, 0]), SETTINGS[1]: float(cond[c, 1]), SETTINGS[2]: float(cond[c, 2])}
        readings.append({
            "event_id": f"{engine_id}-{c:04d}", "machine_id": engine_id,
            "ts": iso(at(start, start_h + c * FLIGHT_HOURS)), "machine_type": "turbofan",
            "operating_mode": f"alt{cond[c, 0]:g}-m{cond[c, 1]:g}-tra{cond[c, 2]:g}", "cycle": c, "sensors": sensors,
        })
    failed = start_h + (life - 1) * FLIGHT_HOURS + 0.5 * FLIGHT_HOURS  # during the next flight's climb
    outcome = {"event_id": f"{engine_id}-failure", "machine_id": engine_id, "ts": iso(at(start, failed)),
               "outcome": "failure", "failure_mode": MODES[mode]}
    return readings, outcome


def _fleet(rng: np.random.Generator, cfg: TurbofanConfig, prefix: str, n: int, offset_h: float) -> Part:
    part = Part()
    for e in range(n):
        readings, outcome = _engine(rng, cfg, f"{prefix}{e:03d}", offset_h + rng.uniform(0, cfg.fleet_days * 24))
        part.readings.extend(readings)
        part.outcomes.append(outcome)
    return part


def generate(quick: bool = False, config: TurbofanConfig = TurbofanConfig()) -> Dataset:
    """Training engines, then other engines entering service after the training history ends."""
    rng = np.random.default_rng(config.seed)
    n_train, n_held = (40, 24) if quick else (config.train_engines, config.heldout_engines)
    train = _fleet(rng, config, "eng-", n_train, 0.0)
    later = (config.fleet_days * 24 + LIFE_FLIGHTS[1] * FLIGHT_HOURS) + 24.0
    heldout = _fleet(rng, config, "new-", n_held, later)
    return Dataset("turbofan", __doc__.split("\n\n")[0].replace("\n", " "), train, heldout)
