"""Physical-limit rules: the fallback that decides when the model is unavailable or unsure.

A rule is one side of one sensor's operating envelope (e.g. vibration_rms above 7.1 mm/s, the
ISO 10816 "unacceptable" zone for medium machines). Physical defaults cover the standard
sensors; a model's manifest adds or overrides limits per sensor and side (`rule_limits`: the
trainer's edges of the healthy range, or a user's own limits), and every explanation says which
kind of limit fired. A null there means "no
limit known" (the trainer writes it where it saw too little healthy data), so a default limit
stays: removing a safety limit takes a code change, not a training run. Sensors without limits
are not checked.

Exceedance is how far past the limit a value is, as a fraction of the limit's magnitude
(0.2 = 20 % past it), so that limits in different units compare. A breached hard physical limit
is a fact, not an estimate: rule alerts carry confidence 1.0.
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
    side: str  # "low" or "high"
    value: float
    limit: float
    exceedance: float
    origin: str = PHYSICAL

    def describe(self) -> str:
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
        self, limits: Mapping[str, Mapping[str, Optional[float]]], trained: frozenset[tuple[str, str]] = frozenset()
    ) -> None:
        """`trained`: the (sensor, side) limits that came from a model's manifest, not physics."""
        self.trained = trained
        self.sensors: list[str] = []
        low, high = [], []
        for sensor, sides in limits.items():
            lo, hi = _limit(sides.get("low"), f"{sensor}.low"), _limit(sides.get("high"), f"{sensor}.high")
            if lo is None and hi is None:
                continue
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"rule limits for {sensor}: low {lo} must be below high {hi}")
            self.sensors.append(sensor)
            low.append(math.nan if lo is None else lo)
            high.append(math.nan if hi is None else hi)
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        # Normalise by the limit's magnitude; a limit of 0 has no scale, so use 1 unit.
        self._low_scale = np.where(np.abs(self.low) > 0, np.abs(self.low), 1.0)
        self._high_scale = np.where(np.abs(self.high) > 0, np.abs(self.high), 1.0)

    @classmethod
    def with_overrides(cls, overrides: Optional[Mapping[str, Any]]) -> "RuleSet":
        """Defaults merged under a manifest's `rule_limits`: per sensor and side, a number in the
        manifest wins; null or absent keeps the default (if any)."""
        merged = {sensor: dict(sides) for sensor, sides in DEFAULT_LIMITS.items()}
        trained = set()
        for sensor, sides in (overrides or {}).items():
            if not isinstance(sides, Mapping):
                raise ValueError(f"rule_limits[{sensor!r}] must be an object with low/high")
            given = {side: sides[side] for side in ("low", "high") if sides.get(side) is not None}
            merged.setdefault(sensor, {"low": None, "high": None}).update(given)
            trained.update((sensor, side) for side in given)
        return cls(merged, frozenset(trained))

    def origin(self, sensor: str, side: str) -> str:
        return TRAINED if (sensor, side) in self.trained else PHYSICAL

    def exceedance(self, values: np.ndarray) -> np.ndarray:
        """values (N, R) in `sensors` order, NaN for never observed -> (N, R) exceedance >= 0
        (0 where within limits, unchecked or unknown)."""
        with np.errstate(invalid="ignore"):
            above = (values - self.high) / self._high_scale
            below = (self.low - values) / self._low_scale
        return np.fmax(np.fmax(above, below), 0.0) if values.size else np.zeros(values.shape)

    def violations(self, values: np.ndarray) -> list[Violation]:
        """One reading's (R,) values -> the limits it breaches, largest exceedance first."""
        found = []
        for j, sensor in enumerate(self.sensors):
            value = float(values[j])
            if math.isnan(value):
                continue
            high, low = float(self.high[j]), float(self.low[j])
            if value > high:
                exceedance = (value - high) / float(self._high_scale[j])
                found.append(Violation(sensor, "high", value, high, exceedance, self.origin(sensor, "high")))
            if value < low:
                exceedance = (low - value) / float(self._low_scale[j])
                found.append(Violation(sensor, "low", value, low, exceedance, self.origin(sensor, "low")))
        return sorted(found, key=lambda v: -v.exceedance)

    def checks(self, values: np.ndarray) -> list[RuleCheck]:
        """Every limit checked for one reading's (R,) values, fired or not (for auditors)."""
        out = []
        for j, sensor in enumerate(self.sensors):
            value = None if math.isnan(values[j]) else float(values[j])
            for side, limit in (("low", self.low[j]), ("high", self.high[j])):
                if math.isnan(limit):
                    continue
                fired = value is not None and (value < limit if side == "low" else value > limit)
                rule = f"{sensor} {side} limit ({self.origin(sensor, side)})"
                out.append(RuleCheck(rule=rule, value=value, limit=float(limit), fired=fired))
        return out
