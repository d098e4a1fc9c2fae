"""Baselines on the same (series, origin) pairs as the product, from the same daily totals.

seasonal naive (weekly)   each horizon day repeats the last observed same weekday
moving average 28 d       every horizon day is the mean of the last 28 days
product rule fallback     what the worker serves when it has no usable model or the model is
                          unsure: stream_app.scoring.demand_fallback with the method and the
                          residual quantiles the trained version stored

The first two are written here, not taken from the product. Their P10 / P90 are the point plus
the 10 % and 90 % quantiles of the method's own errors on the training history's last year
(origins whose horizon ends before the held-out days), per series and horizon day, as a share of
the series' 28-day level at the origin (so a series that grew keeps proportionate intervals);
series with fewer than MIN_FIT_ORIGINS such origins use the quantiles pooled over all series.
P50 is the point forecast itself. Histories hold NaN before a series' first sale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW = 28
FIT_DAYS = 364
MIN_FIT_ORIGINS = 56
TOTALS = (7, 30)
LEVEL_FLOOR = 0.1


def seasonal_naive(history: np.ndarray, horizon: int) -> np.ndarray:
    """history (N, L), NaN where the series did not exist -> (N, horizon) point forecasts."""
    L = history.shape[1]
    h = np.arange(1, horizon + 1)
    point = history[:, L - 1 - (7 * np.ceil(h / 7).astype(int) - h)]
    return np.where(np.isfinite(point), point, level(history)[:, None])  # younger than a week: its mean


def moving_average(history: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(level(history)[:, None], horizon, axis=1)


def level(history: np.ndarray) -> np.ndarray:
    """The mean of the last WINDOW days the series existed (0 when it has none)."""
    recent = history[:, -WINDOW:]
    n = np.isfinite(recent).sum(axis=1)
    return np.where(n > 0, np.nansum(recent, axis=1) / np.maximum(n, 1), 0.0)


METHODS = {"seasonal naive (weekly)": seasonal_naive, f"moving average {WINDOW} d": moving_average}


@dataclass(frozen=True)
class ErrorQuantiles:
    """The 10 % and 90 % quantiles of relative errors: per series (S, H, 2) and (S, 2 totals, 2)."""

    daily: np.ndarray
    totals: np.ndarray


def fit(method: str, units: np.ndarray, first_sale: np.ndarray, last_train: int, horizon: int) -> ErrorQuantiles:
    """units (S, T) daily totals, first_sale (S,) column of each series' first sale, last_train
    the column of the last training day."""
    S = units.shape[0]
    origins = np.arange(max(WINDOW, last_train - horizon - FIT_DAYS + 1), last_train - horizon + 1)
    hist, future = windows(units, first_sale, np.repeat(np.arange(S), len(origins)), np.tile(origins, S), WINDOW, horizon)
    point = METHODS[method](hist, horizon)
    scale = np.maximum(level(hist), LEVEL_FLOOR)[:, None]
    daily = ((future - point) / scale).reshape(S, len(origins), horizon)
    totals = np.stack([(future[:, :w].sum(axis=1) - point[:, :w].sum(axis=1)) / scale[:, 0] for w in TOTALS], axis=1)
    totals = totals.reshape(S, len(origins), len(TOTALS))
    alive = (np.tile(origins, S) >= first_sale.repeat(len(origins)) + 7).reshape(S, len(origins))  # a week sold
    q = (0.1, 0.9)
    pooled_d = np.quantile(daily[alive], q, axis=0).T  # (H, 2)
    pooled_t = np.quantile(totals[alive], q, axis=0).T  # (W, 2)
    out_d = np.empty((S, horizon, 2))
    out_t = np.empty((S, len(TOTALS), 2))
    for s in range(S):
        own = alive[s]
        enough = own.sum() >= MIN_FIT_ORIGINS
        out_d[s] = np.quantile(daily[s, own], q, axis=0).T if enough else pooled_d
        out_t[s] = np.quantile(totals[s, own], q, axis=0).T if enough else pooled_t
    return ErrorQuantiles(out_d, out_t)


def forecast(method: str, history: np.ndarray, series: np.ndarray, errors: ErrorQuantiles,
             horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """-> daily (N, H, 3) and totals (N, 2, 3) quantiles for rows of `series` (index into the fit)."""
    point = METHODS[method](history, horizon)
    scale = np.maximum(level(history), LEVEL_FLOOR)
    lo, hi = errors.daily[series, :, 0], errors.daily[series, :, 1]
    daily = np.stack([point + lo * scale[:, None], point, point + hi * scale[:, None]], axis=-1)
    sums = np.stack([point[:, :w].sum(axis=1) for w in TOTALS], axis=1)
    tlo, thi = errors.totals[series, :, 0], errors.totals[series, :, 1]
    totals = np.stack([sums + tlo * scale[:, None], sums, sums + thi * scale[:, None]], axis=-1)
    return np.maximum(daily, 0.0), np.maximum(totals, 0.0)


def product_fallback(method: str, residuals: object, history: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """The worker's rule forecasts for these histories (its own code and stored residuals)."""
    from stream_app.scoring import demand_fallback

    active = np.isfinite(history)
    return demand_fallback.forecast(method, history, active, horizon, residuals)  # type: ignore[arg-type]


def windows(units: np.ndarray, first_sale: np.ndarray, series: np.ndarray, origins: np.ndarray, length: int,
            horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """History (N, length) ending at each origin column, NaN before the series' first sale (and
    before the data), and the (N, horizon) units after it (NaN past the data)."""
    T = units.shape[1]
    past = origins[:, None] - length + 1 + np.arange(length)[None, :]
    ahead = origins[:, None] + 1 + np.arange(horizon)[None, :]
    known = (past >= 0) & (past >= first_sale[series][:, None])
    history = np.where(known, units[series[:, None], np.clip(past, 0, T - 1)], np.nan)
    future = np.where(ahead < T, units[series[:, None], np.clip(ahead, 0, T - 1)], np.nan)
    return history, future
