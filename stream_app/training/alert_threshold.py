"""Choose a model's alert threshold on the validation slice for the user's operating point.

For each candidate threshold on the calibrated probability, the validation readings of every
life are turned into alerts as a worker emits them (at most one per life per cooldown of event
time) and counted as a planner would: false alerts (no failure within the horizon after the
alert) per machine-day, the share of validation failures with an alert within the horizon
before them, and the share of alerts followed by a failure. The candidates are the quantiles
of the validation probabilities, so the curve is as fine where the model's outputs are dense.
stream_app.scoring.operating_point.choose then picks the threshold for the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from stream_app.scoring.operating_point import CurvePoint, OperatingPoint, choose

CANDIDATES = 120


@dataclass
class ValidationLife:
    """One life's readings in the validation slice (and before it, for the failure window)."""

    t: np.ndarray  # (T,) epoch s
    in_val: np.ndarray  # (T,) bool
    y: np.ndarray  # (T,) labels as known at the test cutoff
    y_mask: np.ndarray
    failure_t: Optional[float]  # a failure known at the test cutoff, else None


def sweep(
    lives: Sequence[ValidationLife],
    probability: Sequence[np.ndarray],
    horizon_hours: float,
    interval_minutes: float,
    cooldown_s: float,
    candidates: int = CANDIDATES,
) -> list[CurvePoint]:
    """The curve over `candidates` thresholds (ascending); empty without validation readings."""
    val_p = np.concatenate([p[l.in_val] for l, p in zip(lives, probability)]) if lives else np.zeros(0)
    if not len(val_p):
        return []
    qs = np.quantile(val_p, np.linspace(0.0, 1.0, candidates))
    grid = np.unique(np.round(np.clip(np.r_[qs, np.geomspace(1e-3, 0.999, 40)], 1e-4, 0.9999), 6))
    machine_days = len(val_p) * interval_minutes / 1440.0
    horizon = horizon_hours * 3600.0
    # Only readings that can alert within a failure's window or cool down a validation alert matter.
    start = min(float(l.t[l.in_val].min()) for l in lives if l.in_val.any()) - horizon - cooldown_s
    trimmed = []
    for life, p in zip(lives, probability):
        keep = life.t >= start
        if keep.any():
            trimmed.append((ValidationLife(life.t[keep], life.in_val[keep], life.y[keep], life.y_mask[keep],
                                           life.failure_t), p[keep]))
    points = []
    for thr in grid:
        false = true = failures = caught = 0
        for life, p in trimmed:
            alert = with_cooldown(life.t, p >= thr, cooldown_s)
            fired = alert & life.in_val & life.y_mask
            true += int((fired & (life.y > 0.5)).sum())
            false += int((fired & (life.y <= 0.5)).sum())
            f = life.failure_t
            if f is not None:
                window = (life.t >= f - horizon) & (life.t <= f)
                if (window & life.in_val).any():
                    failures += 1
                    caught += int((window & alert).any())
        points.append(CurvePoint(
            threshold=float(thr),
            false_alerts_per_machine_day=false / machine_days if machine_days else 0.0,
            failure_recall=caught / failures if failures else None,
            precision=true / (true + false) if true + false else None,
        ))
    return points


def operating_point(
    curve: Sequence[CurvePoint], budget: float, min_precision: Optional[float], fallback: float
) -> OperatingPoint:
    """The curve's choice for the budget; `fallback` (the configured alert_probability) when
    there is no curve (no validation slice)."""
    threshold = choose(curve, budget, min_precision) if curve else fallback
    return OperatingPoint(threshold, budget, min_precision, tuple(curve))


def with_cooldown(t: np.ndarray, want: np.ndarray, cooldown_s: float) -> np.ndarray:
    """One life's alerts as the scorer emits them (t ascending): the first wanted reading, then
    the first at least cooldown_s later, and so on (one step per alert, not per reading)."""
    alert = np.zeros(len(want), dtype=bool)
    idx = np.flatnonzero(want)
    times = t[idx]
    k = 0
    while k < len(idx):
        alert[idx[k]] = True
        k = int(np.searchsorted(times, times[k] + cooldown_s, side="left")) if cooldown_s > 0 else k + 1
    return alert
