"""Rule-based demand forecasts: the live fallback when the model is unavailable or unsure, and the
baselines the training report compares the model with.

seasonal_naive   each horizon day repeats the last observed same weekday (y[t + h - 7 ceil(h/7)])
moving_average   every horizon day is the mean of the last MA_WINDOW days

Intervals: with s the series' recent variability (the standard deviation of its last MA_WINDOW
days, at least sqrt(their mean), at least MIN_SPREAD), quantile q of day h is

    max(0, point[h] + r_q[h] x s)

and of a w-day total max(0, sum(point) + r_q[w] x s x sqrt(w)), where r_q are quantiles of the
standardised residuals (y - point) / s measured on training data (`fit_residual_quantiles`,
stored in the model's manifest). Without a trained model the normal quantiles stand in
(-1.28, 0, +1.28). Days before a series existed (inactive) count as unknown, not as zero sales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_app.models.demand_transformer import QUANTILES, TOTAL_WINDOWS

METHODS = ("seasonal_naive", "moving_average")
MA_WINDOW = 28
MIN_SPREAD = 0.1
_NORMAL = (-1.2816, 0.0, 1.2816)


@dataclass(frozen=True)
class ResidualQuantiles:
    daily: np.ndarray  # (H, 3) per horizon day
    totals: np.ndarray  # (len(TOTAL_WINDOWS), 3)

    @classmethod
    def normal(cls, horizon: int) -> "ResidualQuantiles":
        return cls(np.tile(np.array(_NORMAL), (horizon, 1)), np.tile(np.array(_NORMAL), (len(TOTAL_WINDOWS), 1)))

    def to_dict(self) -> dict[str, Any]:
        return {"daily": np.round(self.daily, 4).tolist(), "totals": np.round(self.totals, 4).tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], horizon: int) -> "ResidualQuantiles":
        daily, totals = np.asarray(d["daily"], dtype=np.float64), np.asarray(d["totals"], dtype=np.float64)
        if daily.shape != (horizon, len(QUANTILES)) or totals.shape != (len(TOTAL_WINDOWS), len(QUANTILES)):
            raise ValueError("residual quantiles have the wrong shape")
        if not (np.isfinite(daily).all() and np.isfinite(totals).all()):
            raise ValueError("residual quantiles must be finite")
        return cls(np.sort(daily, axis=1), np.sort(totals, axis=1))


def point_forecast(method: str, units: np.ndarray, active: np.ndarray, horizon: int) -> np.ndarray:
    """units, active (B, L) history ending at the origin -> (B, horizon) point forecasts."""
    y = np.where(active, np.nan_to_num(units, nan=0.0), np.nan)
    B, L = y.shape
    if method == "seasonal_naive":
        h = np.arange(1, horizon + 1)
        lag = L - 1 + h - 7 * np.ceil(h / 7).astype(int)
        out = y[:, lag]
        # a series younger than a week: its mean so far
        return np.where(np.isfinite(out), out, _recent_mean(y)[:, None])
    if method == "moving_average":
        return np.repeat(_recent_mean(y)[:, None], horizon, axis=1)
    raise ValueError(f"unknown method {method!r}; use one of {METHODS}")


def _recent_mean(y: np.ndarray) -> np.ndarray:
    recent = y[:, -MA_WINDOW:]
    n = np.isfinite(recent).sum(axis=1)
    return np.where(n > 0, np.nansum(recent, axis=1) / np.maximum(n, 1), 0.0)


def spread(units: np.ndarray, active: np.ndarray) -> np.ndarray:
    """The series' recent variability s (B,)."""
    recent = np.where(active, np.nan_to_num(units, nan=0.0), np.nan)[:, -MA_WINDOW:]
    n = np.isfinite(recent).sum(axis=1)
    mean = np.where(n > 0, np.nansum(recent, axis=1) / np.maximum(n, 1), 0.0)
    dev = np.where(np.isfinite(recent), recent - mean[:, None], 0.0)
    sd = np.sqrt((dev**2).sum(axis=1) / np.maximum(n - 1, 1))
    return np.maximum.reduce([sd, np.sqrt(np.maximum(mean, 0.0)), np.full_like(sd, MIN_SPREAD)])


def forecast(method: str, units: np.ndarray, active: np.ndarray, horizon: int, rq: ResidualQuantiles) -> tuple[np.ndarray, np.ndarray]:
    """-> daily (B, horizon, 3) and totals (B, len(TOTAL_WINDOWS), 3) quantiles in units."""
    point = point_forecast(method, units, active, horizon)
    s = spread(units, active)
    daily = np.maximum(point[:, :, None] + rq.daily[None, :, :] * s[:, None, None], 0.0)
    totals = np.stack(
        [np.maximum(point[:, :w].sum(axis=1)[:, None] + rq.totals[i][None, :] * (s * np.sqrt(w))[:, None], 0.0)
         for i, w in enumerate(TOTAL_WINDOWS)],
        axis=1,
    )
    return daily, totals


def fit_residual_quantiles(method: str, units: np.ndarray, active: np.ndarray, future: np.ndarray) -> ResidualQuantiles:
    """Quantiles of the standardised residuals over training origins: units, active (N, L)
    histories, future (N, H) what followed."""
    horizon = future.shape[1]
    point = point_forecast(method, units, active, horizon)
    s = spread(units, active)
    daily = np.quantile((future - point) / s[:, None], QUANTILES, axis=0).T
    totals = np.array([
        np.quantile((future[:, :w].sum(axis=1) - point[:, :w].sum(axis=1)) / (s * np.sqrt(w)), QUANTILES)
        for w in TOTAL_WINDOWS
    ])
    return ResidualQuantiles(daily, totals)
