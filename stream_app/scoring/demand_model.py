"""A trained demand model as the scorer and the trainer's evaluation use it: weights, feature spec,
interval calibration and the fallback's residual quantiles from a registry version; forecasts
in units; and the confidence of a forecast.

Confidence of a forecast, in [0, 1]: the chance that the next 7 days' units land within
+-TOLERANCE (25 %) of the forecast's 7-day P50 total, discounted for what the model cannot vouch
for:

    confidence = within x history x market

within     P(|units_7 - P50_7| <= 0.25 P50_7), reading the 7-day total's P10-P90 as a normal
           interval (sigma = (P90 - P10) / 2.563): 2 Phi(k x 0.25 P50_7 / sigma) - 1, with k
           fitted by maximum likelihood on the trainer's validation period (the manifest's
           confidence.z_scale; 1 without it), so that the claim holds on held-out data. A best
           seller with a tight interval scores near 1; a series selling a unit a week scores near
           0, however good its forecast, because +-25 % of almost nothing is a coin's edge
history    min(1, days the series has existed in the window / FULL_HISTORY_DAYS): a forecast from
           a week of sales has seen the weekly pattern once
market     UNKNOWN_MARKET_FACTOR when the model was not trained on the series' market, else 1

Example (k = 1): 7-day total P10/P50/P90 = 30/40/52 (sigma 8.6; 0.25 x 40 / 8.6 = 1.17: within
0.76), 21 days of history (0.75), known market: 0.76 x 0.75 = 0.57. The training report checks it on
the test period: per confidence band, how often the 7-day total did land within +-25 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from stream_app.features.demand import DemandFeatures, ModelInputs
from stream_app.models.demand_transformer import TOTAL_WINDOWS, DemandOutput, DemandTransformer
from stream_app.registry import ModelVersion
from stream_app.scoring.demand_fallback import METHODS, ResidualQuantiles
from stream_app.training.demand_metrics import widen

WEIGHTS_FILE = "model.pt"
FULL_HISTORY_DAYS = 28
UNKNOWN_MARKET_FACTOR = 0.7
TOLERANCE = 0.25
_Z80 = 2.5631  # P90 - P10 of a standard normal


@dataclass
class Forecast:
    """Quantiles in units for B series: daily (B, H, 3), totals (B, len(TOTAL_WINDOWS), 3)."""

    daily: np.ndarray
    totals: np.ndarray
    output: Optional[DemandOutput] = None  # the model's raw output (attention, selection weights)


def confidence(totals: np.ndarray, history_days: np.ndarray, known_market: np.ndarray, z_scale: float = 1.0) -> np.ndarray:
    """totals (B, W, 3) with the 7-day total first; history_days (B,); known_market (B,) bool."""
    factors = history_factor(history_days) * np.where(known_market, 1.0, UNKNOWN_MARKET_FACTOR)
    return np.clip(within(totals, z_scale) * factors, 0.0, 1.0)


def tolerance_z(totals: np.ndarray) -> np.ndarray:
    """TOLERANCE x P50_7 in units of the 7-day total's normal sigma (B,)."""
    p10, p50, p90 = totals[:, 0, 0], totals[:, 0, 1], totals[:, 0, 2]
    return TOLERANCE * np.maximum(p50, 0.0) / (np.maximum(p90 - p10, 1e-9) / _Z80)


def within(totals: np.ndarray, z_scale: float = 1.0) -> np.ndarray:
    """P(|units_7 - P50_7| <= TOLERANCE x P50_7) under a normal reading of P10-P90 (B,)."""
    return np.array([math.erf(z / math.sqrt(2)) for z in (z_scale * tolerance_z(totals)).tolist()])


def fit_z_scale(totals: np.ndarray, realised_7: np.ndarray) -> float:
    """The k maximising the likelihood of 'the 7-day total landed within +-TOLERANCE' under
    P = erf(k z / sqrt 2), on a grid (0.2 .. 4): fitted on validation forecasts."""
    z = tolerance_z(totals)
    hit = np.abs(realised_7 - totals[:, 0, 1]) <= TOLERANCE * totals[:, 0, 1]
    best, best_ll = 1.0, -math.inf
    for k in np.round(np.arange(0.2, 4.0001, 0.02), 2):
        p = np.clip(np.array([math.erf(v / math.sqrt(2)) for v in (k * z).tolist()]), 1e-6, 1 - 1e-6)
        ll = float(np.where(hit, np.log(p), np.log1p(-p)).sum())
        if ll > best_ll:
            best, best_ll = float(k), ll
    return best


def history_factor(history_days: np.ndarray) -> np.ndarray:
    return np.minimum(1.0, np.asarray(history_days, dtype=np.float64) / FULL_HISTORY_DAYS)


def to_tensors(inputs: ModelInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(inputs.observed), torch.from_numpy(inputs.known),
            torch.from_numpy(inputs.market), torch.from_numpy(inputs.static))


def model_forecast(model: DemandTransformer, inputs: ModelInputs, daily_factor: float = 1.0,
                   totals_factors: Sequence[float] = (1.0,) * len(TOTAL_WINDOWS), keep_output: bool = False,
                   batch_size: int = 1024) -> Forecast:
    """Quantiles in units: the model's output times each series' scale, intervals widened by the
    calibration factors, floored at 0. Runs without gradients in eval mode."""
    if model.training:  # eval() walks every module: not on each call
        model.eval()
    dailies, totals, outputs = [], [], []
    with torch.no_grad():
        for lo in range(0, len(inputs), batch_size):
            part = inputs.take(np.arange(lo, min(lo + batch_size, len(inputs))))
            out = model(*to_tensors(part))
            scale = part.scale[:, None, None]
            dailies.append(widen(out.quantiles.numpy().astype(np.float64) * scale, daily_factor))
            days = np.array(TOTAL_WINDOWS, dtype=np.float64)[None, :, None]
            raw_totals = out.totals.numpy().astype(np.float64) * scale * days
            totals.append(np.stack([widen(raw_totals[:, i], f) for i, f in enumerate(totals_factors)], axis=1))
            if keep_output:
                outputs.append(out)
    if not dailies:
        H = model.horizon
        return Forecast(np.zeros((0, H, 3)), np.zeros((0, len(TOTAL_WINDOWS), 3)))
    output = None
    if keep_output:
        output = outputs[0] if len(outputs) == 1 else DemandOutput(
            *(torch.cat([getattr(o, f) for o in outputs]) for f in ("quantiles", "totals", "attention", "past_weights", "future_weights"))
        )
    return Forecast(np.concatenate(dailies), np.concatenate(totals), output)


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"manifest {name!r} must be a positive number, not {value!r}")
    return float(value)


def _rules_serve(serving: Any) -> Optional[str]:
    """The manifest's "serving" (older versions have none: the model serves)."""
    if not isinstance(serving, dict) or serving.get("decides", "model") == "model":
        return None
    if serving["decides"] != "rules":
        raise ValueError(f"serving.decides must be 'model' or 'rules', not {serving['decides']!r}")
    return str(serving.get("why") or "the rule fallback won on validation")


@dataclass(frozen=True)
class LoadedDemandModel:
    version: str
    model: DemandTransformer
    features: DemandFeatures
    daily_factor: float
    totals_factors: tuple[float, ...]
    fallback_method: str
    residuals: ResidualQuantiles
    z_scale: float = 1.0
    # Why the rule fallback forecasts instead of the model (it won on validation), or None.
    rules_serve: Optional[str] = None

    @classmethod
    def from_version(cls, version: ModelVersion) -> "LoadedDemandModel":
        """Raises (KeyError, ValueError, RuntimeError, OSError, ...) on any inconsistency."""
        m = version.manifest
        features = DemandFeatures.from_dict(m["features"])
        model = DemandTransformer(**m["hyperparameters"])
        if model.history != features.history_days or model.horizon != features.horizon_days:
            raise ValueError("the model's window and horizon differ from its feature spec")
        weights = version.file(WEIGHTS_FILE)
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing")
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        calibration = m["interval_calibration"]
        if len(calibration["totals_factors"]) != len(TOTAL_WINDOWS):
            raise ValueError(f"interval_calibration needs one totals factor per window {TOTAL_WINDOWS}")
        fallback = m["fallback"]
        if fallback["method"] not in METHODS:
            raise ValueError(f"unknown fallback method {fallback['method']!r}")
        return cls(
            version=version.version, model=model, features=features,
            daily_factor=_positive(calibration["daily_factor"], "daily_factor"),
            totals_factors=tuple(_positive(f, "totals_factors") for f in calibration["totals_factors"]),
            fallback_method=fallback["method"],
            residuals=ResidualQuantiles.from_dict(fallback["residual_quantiles"][fallback["method"]], features.horizon_days),
            z_scale=_positive((m.get("confidence") or {}).get("z_scale", 1.0), "confidence.z_scale"),
            rules_serve=_rules_serve(m.get("serving")),
        )

    def forecast(self, inputs: ModelInputs, keep_output: bool = False) -> Forecast:
        return model_forecast(self.model, inputs, self.daily_factor, self.totals_factors, keep_output)
