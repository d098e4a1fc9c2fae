"""Physical-limit rules: the fallback that decides when the model is unavailable or out of its depth.

A rule is one side of one sensor's operating envelope (e.g. vibration_rms above 7.1 mm/s, the
ISO 10816 "unacceptable" zone for medium machines), or a limit on how fast a sensor may change.
Physical defaults cover the standard sensors; a model's manifest adds or overrides limits per
sensor and side (`rule_limits`: the trainer's edges of the healthy range of every sensor it
trained on, or a user's own limits) and rate-of-change limits (`rule_rates`: per sensor, the
largest change per hour between consecutive healthy readings the trainer saw, widened), and
every explanation says which kind of limit fired. A null in `rule_limits` means "no limit known"
(the trainer writes it where it saw too little healthy data), so a default limit stays: removing
a safety limit takes a code change, not a training run. Sensors without limits are not checked.

Exceedance is how far past the limit a value (or a rate) is, as a fraction of the limit's
magnitude (0.2 = 20 % past it), so that limits in different units compare. A breached hard
physical limit is a fact, not an estimate: rule alerts carry confidence 1.0.

A rate is checked only between consecutive readings of a machine that both carried the sensor,
at most `rate_max_gap_hours` apart (the gap the trainer measured rates over): a rate across a
dropout or a long pause says nothing about how fast the sensor moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from schemas.outputs import RuleCheck

DEFAULT_LIMITS: dict[str, dict[str, Optional[float]]] = {
    "vibration_rms": {"low": None, "high": 7.1},
    "bearing_temp": {"low": None, "high": 95.0},
    "motor_temp": {"low": None, "high": 110.0},
    "oil_pressure": {"low": 1.2, "high": None},
}
# An exceedance at least this large makes a rule alert critical rather than a warning.
LARGE_EXCEEDANCE = 0.2


# Where a limit comes from, said in every rule explanation: a physical limit is an engineering
# fact; a trained one is the edge of the normal range the model's training data showed.
PHYSICAL, TRAINED = "physical", "trained"


@dataclass(frozen=True)
class Violation:
    sensor: str
    side: str  # "low", "high" or "rate" (value and limit are then changes per hour)
    value: float
    limit: float
    exceedance: float
    origin: str = PHYSICAL

    def describe(self) -> str:
        if self.side == "rate":
            return (f"{self.sensor} changed {self.value:.4g}/h > {self.limit:g}/h ({self.origin} rate-of-change limit, "
                    f"{self.exceedance:+.0%})")
        op = ">" if self.side == "high" else "<"
        return f"{self.sensor} {self.value:.4g} {op} {self.limit:g} ({self.origin} {self.side} limit, {self.exceedance:+.0%})"


def _limit(value: Any, where: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"rule limit {where} must be a finite number or null, not {value!r}")
    return float(value)


class RuleSet:
    """Vectorised limit checks over a fixed sensor order (`sensors`)."""

    def __init__(
        self,
        limits: Mapping[str, Mapping[str, Optional[float]]],
        trained: frozenset[tuple[str, str]] = frozenset(),
        rates: Optional[Mapping[str, Optional[float]]] = None,
        rate_max_gap_hours: Optional[float] = None,
    ) -> None:
        """`trained`: the (sensor, side) limits that came from a model's manifest, not physics;
        `rates`: per sensor, the largest change per hour (learned: always trained)."""
        self.trained = trained
        self.sensors: list[str] = []
        low, high, rate = [], [], []
        rates = dict(rates or {})
        for sensor in [*limits, *(r for r in rates if r not in limits)]:
            sides = limits.get(sensor, {})
            lo, hi = _limit(sides.get("low"), f"{sensor}.low"), _limit(sides.get("high"), f"{sensor}.high")
            r = _limit(rates.get(sensor), f"{sensor} rate")
            if r is not None and r <= 0:
                raise ValueError(f"rate-of-change limit for {sensor} must be positive, not {r}")
            if lo is None and hi is None and r is None:
                continue
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"rule limits for {sensor}: low {lo} must be below high {hi}")
            self.sensors.append(sensor)
            low.append(math.nan if lo is None else lo)
            high.append(math.nan if hi is None else hi)
            rate.append(math.nan if r is None else r)
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.rate = np.asarray(rate, dtype=np.float64)
        if rate_max_gap_hours is not None and not (math.isfinite(rate_max_gap_hours) and rate_max_gap_hours > 0):
            raise ValueError(f"rate_max_gap_hours must be a positive number, not {rate_max_gap_hours!r}")
        self.rate_max_gap_hours = float(rate_max_gap_hours) if rate_max_gap_hours is not None else math.inf
        # Normalise by the limit's magnitude; a limit of 0 has no scale, so use 1 unit.
        self._low_scale = np.where(np.abs(self.low) > 0, np.abs(self.low), 1.0)
        self._high_scale = np.where(np.abs(self.high) > 0, np.abs(self.high), 1.0)

    @property
    def has_rates(self) -> bool:
        return bool(np.isfinite(self.rate).any())

    @classmethod
    def with_overrides(
        cls,
        overrides: Optional[Mapping[str, Any]],
        rates: Optional[Mapping[str, Any]] = None,
        rate_max_gap_hours: Optional[float] = None,
    ) -> "RuleSet":
        """Defaults merged under a manifest's `rule_limits`: per sensor and side, a number in the
        manifest wins; null or absent keeps the default (if any). `rates`: the manifest's
        `rule_rates` (sensor -> largest change per hour; null: none)."""
        merged = {sensor: dict(sides) for sensor, sides in DEFAULT_LIMITS.items()}
        trained = set()
        for sensor, sides in (overrides or {}).items():
            if not isinstance(sides, Mapping):
                raise ValueError(f"rule_limits[{sensor!r}] must be an object with low/high")
            given = {side: sides[side] for side in ("low", "high") if sides.get(side) is not None}
            merged.setdefault(sensor, {"low": None, "high": None}).update(given)
            trained.update((sensor, side) for side in given)
        if rates is not None and not isinstance(rates, Mapping):
            raise ValueError("rule_rates must be an object: sensor -> change per hour")
        learned_rates = {k: v for k, v in (rates or {}).items() if v is not None}
        trained.update((sensor, "rate") for sensor in learned_rates)
        return cls(merged, frozenset(trained), learned_rates, rate_max_gap_hours)

    def origin(self, sensor: str, side: str) -> str:
        return TRAINED if (sensor, side) in self.trained else PHYSICAL

    def rates_of_change(self, values: np.ndarray, previous: Optional[np.ndarray], hours: Optional[np.ndarray]) -> np.ndarray:
        """(N, R) absolute change per hour since `previous` (NaN where not checkable: either
        value unobserved, or the gap not in (0, rate_max_gap_hours])."""
        if previous is None or hours is None:
            return np.full(np.shape(values), np.nan)
        hours = np.asarray(hours, dtype=np.float64).reshape(-1, 1)
        ok = (hours > 0) & (hours <= self.rate_max_gap_hours)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok, np.abs(values - previous) / np.where(ok, hours, 1.0), np.nan)

    def exceedance(
        self, values: np.ndarray, previous: Optional[np.ndarray] = None, hours: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """values (N, R) in `sensors` order, NaN for never observed -> (N, R) exceedance >= 0
        (0 where within limits, unchecked or unknown). With `previous` (N, R) values of the
        machine's previous reading (NaN: not observed there) and `hours` (N,) since it, the
        rate-of-change limits are checked too."""
        with np.errstate(invalid="ignore"):
            above = (values - self.high) / self._high_scale
            below = (self.low - values) / self._low_scale
            fast = (self.rates_of_change(values, previous, hours) - self.rate) / self.rate
        if not values.size:
            return np.zeros(values.shape)
        return np.fmax(np.fmax(np.fmax(above, below), fast), 0.0)

    def violations(
        self, values: np.ndarray, previous: Optional[np.ndarray] = None, hours: Optional[float] = None
    ) -> list[Violation]:
        """One reading's (R,) values (and the previous reading's, `hours` before) -> the limits
        it breaches, largest exceedance first."""
        rates = self.rates_of_change(values[None], None if previous is None else previous[None],
                                     None if hours is None else np.array([hours]))[0]
        found = []
        for j, sensor in enumerate(self.sensors):
            value = float(values[j])
            if math.isnan(value):
                continue
            high, low, limit = float(self.high[j]), float(self.low[j]), float(self.rate[j])
            if value > high:
                exceedance = (value - high) / float(self._high_scale[j])
                found.append(Violation(sensor, "high", value, high, exceedance, self.origin(sensor, "high")))
            if value < low:
                exceedance = (low - value) / float(self._low_scale[j])
                found.append(Violation(sensor, "low", value, low, exceedance, self.origin(sensor, "low")))
            if rates[j] > limit:
                found.append(Violation(sensor, "rate", float(rates[j]), limit, float(rates[j]) / limit - 1.0,
                                       self.origin(sensor, "rate")))
        return sorted(found, key=lambda v: -v.exceedance)

    def checks(
        self, values: np.ndarray, previous: Optional[np.ndarray] = None, hours: Optional[float] = None
    ) -> list[RuleCheck]:
        """Every limit checked for one reading's (R,) values, fired or not (for auditors)."""
        rates = self.rates_of_change(values[None], None if previous is None else previous[None],
                                     None if hours is None else np.array([hours]))[0]
        out = []
        for j, sensor in enumerate(self.sensors):
            value = None if math.isnan(values[j]) else float(values[j])
            for side, limit in (("low", self.low[j]), ("high", self.high[j])):
                if math.isnan(limit):
                    continue
                fired = value is not None and (value < limit if side == "low" else value > limit)
                rule = f"{sensor} {side} limit ({self.origin(sensor, side)})"
                out.append(RuleCheck(rule=rule, value=value, limit=float(limit), fired=fired))
            if not math.isnan(self.rate[j]):
                rate = None if math.isnan(rates[j]) else float(rates[j])
                out.append(RuleCheck(rule=f"{sensor} rate of change per hour ({self.origin(sensor, 'rate')})",
                                     value=rate, limit=float(self.rate[j]), fired=rate is not None and rate > self.rate[j]))
        return out
