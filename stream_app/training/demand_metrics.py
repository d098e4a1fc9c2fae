"""Quantile forecast metrics: the pinball (quantile) loss the model trains on, and the weighted
errors the report compares models with.

pinball_q(y, f) = max(q (y - f), (q - 1) (y - f)): for q = 0.5 it is half the absolute error, and
its expectation is minimised by the true q-quantile.

Weighted figures divide by the realised volume, so best sellers count in proportion to their
units and a series with no sales cannot blow a ratio up:

    WAPE              sum |y - P50| / sum y
    weighted pinball  sum over q in (0.1, 0.5, 0.9) and all points of pinball_q / (3 sum y)
    coverage          share of points with P10 <= y <= P90 (the target is 0.8)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from stream_app.models.demand_transformer import QUANTILES

HORIZON_BUCKETS: tuple[tuple[int, int], ...] = ((1, 7), (8, 30))


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: Sequence[float] = QUANTILES,
                 weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """pred (..., Q), target (...) -> the mean pinball loss (weighted per leading row by `weight`
    (B,), normalised by its mean)."""
    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device)
    diff = target[..., None] - pred
    loss = torch.maximum(q * diff, (q - 1) * diff)
    if weight is None:
        return loss.mean()
    per_row = loss.reshape(loss.shape[0], -1).mean(dim=1)
    return (per_row * weight).sum() / weight.sum().clamp_min(1e-12)


def pinball(y: np.ndarray, pred: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> np.ndarray:
    """y (...), pred (..., Q) -> pinball per point and quantile (..., Q)."""
    diff = np.asarray(y, dtype=np.float64)[..., None] - np.asarray(pred, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    return np.maximum(q * diff, (q - 1) * diff)


def quantile_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, Optional[float]]:
    """y (N...), pred (N..., 3) -> WAPE, weighted pinball, coverage, volume and count."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    volume = float(y.sum())
    n = int(y.size)
    if n == 0:
        return {"wape": None, "pinball": None, "coverage": None, "units": 0.0, "n": 0}
    return {
        "wape": float(np.abs(y - pred[..., 1]).sum() / volume) if volume > 0 else None,
        "pinball": float(pinball(y, pred).sum() / (len(QUANTILES) * volume)) if volume > 0 else None,
        "coverage": float(((pred[..., 0] <= y) & (y <= pred[..., 2])).mean()),
        "units": volume,
        "n": n,
    }


def horizon_scores(y: np.ndarray, daily: np.ndarray, totals_y: np.ndarray, totals: np.ndarray,
                   buckets: Sequence[tuple[int, int]] = HORIZON_BUCKETS, windows: Sequence[int] = (7, 30)) -> dict[str, Any]:
    """y (N, H) realised, daily (N, H, 3); totals_y (N, W), totals (N, W, 3) -> scores per
    horizon bucket ("1-7", "8-30"), over all days ("1-30") and per total ("total_7", ...)."""
    out: dict[str, Any] = {}
    for lo, hi in buckets:
        out[f"{lo}-{hi}"] = quantile_scores(y[:, lo - 1 : hi], daily[:, lo - 1 : hi])
    out[f"1-{y.shape[1]}"] = quantile_scores(y, daily)
    for i, w in enumerate(windows):
        out[f"total_{w}"] = quantile_scores(totals_y[:, i], totals[:, i])
    return out


def widen(pred: np.ndarray, factor: float) -> np.ndarray:
    """Scale the P10-P50 and P50-P90 gaps by `factor` (kept >= 0): interval calibration."""
    mid = pred[..., 1:2]
    out = mid + (pred - mid) * factor
    return np.maximum(out, 0.0)


def interval_factor(y: np.ndarray, pred: np.ndarray, target: float = 0.8) -> float:
    """The smallest gap factor (on a grid from 0.5 to 3) at which P10-P90 covers `target` of y:
    fitted on validation data, applied to every later forecast."""
    for factor in np.round(np.arange(0.5, 3.0001, 0.02), 2):
        wide = widen(pred, factor)
        if ((wide[..., 0] <= y) & (y <= wide[..., 2])).mean() >= target:
            return float(factor)
    return 3.0
