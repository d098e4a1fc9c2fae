"""Baselines the LSTM has to beat (numpy/torch only).

Per-reading features from the same encoder the model uses (`MaintenanceFeatures.encode_sequence`):
the encoded input vector (scaled sensor values, missing flags, one-hot type/mode) plus, per
sensor, the rolling mean and the rolling least-squares slope (per reading) of the scaled value
over the last `window` readings of the life (fewer at the start of a life).

- failure within the horizon: L2-regularised logistic regression (full-batch L-BFGS), with the
  same positive-class weight as the model;
- time to failure: ridge linear regression on readings whose capped TTF is known exactly (a
  failure life, or a censored reading whose observed lower bound already reaches the cap),
  predictions clipped to [0, cap].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

WINDOW = 6


def rolling_features(x: np.ndarray, n_sensors: int, window: int = WINDOW) -> np.ndarray:
    """x (T, F) encoded life -> (T, F + 2*S): x, rolling mean and rolling slope of x[:, :S]."""
    v = np.asarray(x[:, :n_sensors], dtype=np.float64)
    t_len = v.shape[0]
    k = np.arange(t_len, dtype=np.float64)[:, None]

    def windowed(a: np.ndarray) -> np.ndarray:
        c = np.cumsum(a, axis=0)
        out = c.copy()
        out[window:] = c[window:] - c[:-window]
        return out

    n = np.minimum(np.arange(1, t_len + 1), window).astype(np.float64)[:, None]
    sy = windowed(v)
    sk = windowed(np.broadcast_to(k, v.shape))
    sky = windowed(k * v)
    skk = windowed(np.broadcast_to(k * k, v.shape))
    mean = sy / n
    denom = n * skk - sk * sk
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(denom > 1e-9, (n * sky - sk * sy) / np.where(denom > 1e-9, denom, 1.0), 0.0)
    return np.concatenate([x.astype(np.float32), mean.astype(np.float32), slope.astype(np.float32)], axis=1)


@dataclass
class LinearBaseline:
    mean: np.ndarray
    std: np.ndarray
    clf_w: np.ndarray
    clf_b: float
    reg_w: np.ndarray
    reg_b: float
    ttf_cap_hours: float

    def _z(self, feats: np.ndarray) -> np.ndarray:
        return (feats - self.mean) / self.std

    def predict(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """feats (N, D) -> failure probability (N,), TTF hours (N,)."""
        z = self._z(np.asarray(feats, dtype=np.float64))
        logit = z @ self.clf_w + self.clf_b
        prob = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        ttf = np.clip(z @ self.reg_w + self.reg_b, 0.0, self.ttf_cap_hours)
        return prob, ttf


def fit_logistic(
    z: np.ndarray, y: np.ndarray, pos_weight: float = 1.0, l2: float = 1e-3, max_iter: int = 200
) -> tuple[np.ndarray, float]:
    X = torch.as_tensor(z, dtype=torch.float64)
    Y = torch.as_tensor(y, dtype=torch.float64)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    prior = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
    b = torch.tensor(np.log(prior / (1 - prior)), dtype=torch.float64, requires_grad=True)
    pw = torch.tensor(pos_weight, dtype=torch.float64)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, Y, pos_weight=pw)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy().copy(), float(b.detach())


def fit_ridge(z: np.ndarray, target: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, float]:
    n, d = z.shape
    A = np.c_[z, np.ones(n)]
    reg = l2 * n * np.eye(d + 1)
    reg[-1, -1] = 0.0
    coef = np.linalg.solve(A.T @ A + reg, A.T @ target)
    return coef[:-1], float(coef[-1])


def fit_baseline(
    feats: np.ndarray,
    y: np.ndarray,
    y_mask: np.ndarray,
    ttf_hours_target: np.ndarray,
    ttf_known: np.ndarray,
    ttf_cap_hours: float,
    pos_weight: float = 1.0,
) -> LinearBaseline:
    """feats (N, D) training rows; y/y_mask classification labels; ttf_hours_target capped TTF
    in hours with ttf_known marking rows where it is exact."""
    feats = np.asarray(feats, dtype=np.float64)
    mean = feats.mean(axis=0)
    std = feats.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)
    z = (feats - mean) / std
    if y_mask.sum() == 0 or y[y_mask].max() < 0.5:
        raise ValueError("the baseline needs positive failure labels in the training period")
    clf_w, clf_b = fit_logistic(z[y_mask], y[y_mask].astype(np.float64), pos_weight=pos_weight)
    if ttf_known.sum() > z.shape[1]:
        reg_w, reg_b = fit_ridge(z[ttf_known], ttf_hours_target[ttf_known].astype(np.float64))
    else:
        reg_w, reg_b = np.zeros(z.shape[1]), float(ttf_cap_hours)
    return LinearBaseline(mean, std, clf_w, clf_b, reg_w, reg_b, float(ttf_cap_hours))


def stack(features: Sequence[np.ndarray], rows: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
    if rows is None:
        return np.concatenate(features, axis=0)
    return np.concatenate([f[r] for f, r in zip(features, rows)], axis=0)
