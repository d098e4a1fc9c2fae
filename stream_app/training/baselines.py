"""Baselines the LSTM has to beat.

Per-reading features: the basic inputs of the encoder the model uses (`MaintenanceFeatures`:
scaled sensors, missing flags, one-hot type/mode; not the LSTM's own trend memory, which is part
of the model under test) plus, per sensor, rolling-window statistics of the scaled value over
the life's last readings (fewer at the start of a life): the standard tabular set-up.

- linear (`rolling_features`, window 6: mean and least-squares slope):
  failure within the horizon by L2-regularised logistic regression (full-batch L-BFGS), with
  the same positive-class weight as the model; time to failure by ridge regression on readings
  whose capped TTF is known exactly (a failure life, or a censored reading whose observed lower
  bound already reaches the cap), predictions clipped to [0, cap];
- gradient-boosted trees (LightGBM; `window_features`: mean, slope and spread over a short
  window and one as long as the horizon): a binary classifier (positives weighted as the
  model's) and a regressor of
  the capped TTF on the same readings as the ridge. Trees need no scaling and find the
  interactions (regime x sensor, level x trend) a linear model cannot: the strong tabular
  baseline of predictive maintenance. Without lightgbm installed it is skipped (the report
  says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

WINDOW = 6


def basic_inputs(x: np.ndarray, base_columns: int) -> np.ndarray:
    """The encoded inputs without the model's trend memory and age columns (they come last)."""
    return x[:, :base_columns]


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


def long_window(horizon_hours: float, interval_minutes: float) -> int:
    """Readings in one horizon: the trees' long window."""
    return max(WINDOW + 1, int(round(horizon_hours * 60.0 / max(interval_minutes, 1e-9))))


def window_features(x: np.ndarray, n_sensors: int, windows: Sequence[int] = (WINDOW, 4 * WINDOW)) -> np.ndarray:
    """x (T, F) encoded life -> (T, F + 3 * S * len(windows)): x, and per window the rolling mean,
    slope and standard deviation of the scaled sensors (the trees' inputs)."""
    parts = [x.astype(np.float32)]
    v = np.asarray(x[:, :n_sensors], dtype=np.float64)
    for w in windows:
        stats = rolling_features(x, n_sensors, w)[:, x.shape[1]:]
        c1, c2 = _windowed_sum(v, w), _windowed_sum(v * v, w)
        n = np.minimum(np.arange(1, len(v) + 1), w).astype(np.float64)[:, None]
        std = np.sqrt(np.maximum(c2 / n - (c1 / n) ** 2, 0.0))
        parts += [stats, std.astype(np.float32)]
    return np.concatenate(parts, axis=1)


def _windowed_sum(a: np.ndarray, window: int) -> np.ndarray:
    c = np.cumsum(a, axis=0)
    out = c.copy()
    out[window:] = c[window:] - c[:-window]
    return out


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


@dataclass
class TreeBaseline:
    """LightGBM classifier (failure within the horizon) and regressor (capped TTF, hours)."""

    classifier: Any  # lightgbm.Booster
    regressor: Optional[Any]  # lightgbm.Booster; None: too few exact TTFs (predicts the cap)
    ttf_cap_hours: float

    def predict(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """feats (N, D) -> failure probability (N,), TTF hours (N,)."""
        feats = np.asarray(feats, dtype=np.float32)
        prob = self.classifier.predict(feats, num_threads=1)
        if self.regressor is None:
            return prob, np.full(len(feats), self.ttf_cap_hours)
        return prob, np.clip(self.regressor.predict(feats, num_threads=1), 0.0, self.ttf_cap_hours)

    def to_strings(self) -> dict[str, str]:
        out = {"classifier": self.classifier.model_to_string()}
        if self.regressor is not None:
            out["regressor"] = self.regressor.model_to_string()
        return out

    @classmethod
    def from_strings(cls, models: dict[str, str], ttf_cap_hours: float) -> "TreeBaseline":
        import lightgbm

        regressor = lightgbm.Booster(model_str=models["regressor"]) if "regressor" in models else None
        return cls(lightgbm.Booster(model_str=models["classifier"]), regressor, ttf_cap_hours)


# Deliberately ordinary settings (no tuning per data set): shallow-ish trees, shrinkage, row and
# column subsampling, one thread and a fixed seed so that a run repeats exactly.
TREE_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 40, "feature_fraction": 0.8,
    "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "num_threads": 1, "seed": 0,
    "deterministic": True, "force_row_wise": True, "verbosity": -1,
}
TREE_ROUNDS = 300


def lightgbm_available() -> bool:
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


def fit_trees(
    feats: np.ndarray,
    y: np.ndarray,
    y_mask: np.ndarray,
    ttf_hours_target: np.ndarray,
    ttf_known: np.ndarray,
    ttf_cap_hours: float,
    pos_weight: float = 1.0,
    rounds: int = TREE_ROUNDS,
) -> TreeBaseline:
    """The same inputs as fit_baseline (rows, labels, exact-TTF mask)."""
    import lightgbm

    feats = np.asarray(feats, dtype=np.float32)
    if y_mask.sum() == 0 or y[y_mask].max() < 0.5:
        raise ValueError("the tree baseline needs positive failure labels in the training period")
    labels = y[y_mask].astype(np.float64)
    weights = np.where(labels > 0.5, pos_weight, 1.0)
    clf = lightgbm.train({**TREE_PARAMS, "objective": "binary"},
                         lightgbm.Dataset(feats[y_mask], labels, weight=weights), num_boost_round=rounds)
    reg = None
    if ttf_known.sum() > 10 * TREE_PARAMS["min_data_in_leaf"]:
        reg = lightgbm.train({**TREE_PARAMS, "objective": "regression"},
                             lightgbm.Dataset(feats[ttf_known], ttf_hours_target[ttf_known].astype(np.float64)),
                             num_boost_round=rounds)
    return TreeBaseline(clf, reg, float(ttf_cap_hours))
