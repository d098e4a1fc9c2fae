"""How far to trust one maintenance prediction: a number in [0, 1], the product of three factors.

    confidence = agreement x data_quality x warm_up

agreement     The model has K heads trained on different bootstrap resamples of the training data.
              Where they disagree, the model is outside what it learned.
              agreement = clip(1 - 2 * std(head probabilities), 0, 1): heads that agree exactly
              give 1, a std of 0.075 gives 0.85 (the default gate for letting the model decide),
              and the worst case (half the heads at 0, half at 1: std 0.5) gives 0.
data_quality  Imputed sensors (missing in this reading, forward-filled from the last value) and
              clipped sensors (beyond the range seen in training, cut to it) are guesses, not
              measurements. data_quality = clip(1 - 0.4 * imputed_share - 0.25 * clipped_share,
              0, 1), the shares being the fractions of the model's sensors affected in this
              reading: one of four sensors missing gives 0.9, all missing 0.6.
warm_up       An LSTM's state means little until it has seen a few readings of the machine:
              warm_up = min(1, readings seen (this one included) / warmup_steps).

Below the gate (settings.maintenance.min_confidence) the physical-limit rules decide instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# 1 - _SPREAD_SCALE * 0.075 = 0.85: the documented calibration point.
_SPREAD_SCALE = 2.0
_IMPUTED_PENALTY = 0.4
_CLIPPED_PENALTY = 0.25


@dataclass(frozen=True)
class Confidence:
    """Per-reading arrays (N,); `total` is what a prediction reports, the factors explain it."""

    agreement: np.ndarray
    data_quality: np.ndarray
    warm_up: np.ndarray
    spread: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.agreement * self.data_quality * self.warm_up


def confidence(
    head_probabilities: np.ndarray,
    imputed: np.ndarray,
    clipped: np.ndarray,
    steps_seen: np.ndarray,
    warmup_steps: int,
) -> Confidence:
    """head_probabilities (N, K); imputed, clipped (N, S) bool; steps_seen (N,) readings of the
    machine so far, this one included; warmup_steps >= 1 (0 disables the warm-up factor)."""
    probs = np.asarray(head_probabilities, dtype=np.float64)
    spread = probs.std(axis=1)
    agreement = np.clip(1.0 - _SPREAD_SCALE * spread, 0.0, 1.0)
    n_sensors = max(imputed.shape[1], 1)
    imputed_share = imputed.sum(axis=1) / n_sensors
    clipped_share = clipped.sum(axis=1) / n_sensors
    quality = np.clip(1.0 - _IMPUTED_PENALTY * imputed_share - _CLIPPED_PENALTY * clipped_share, 0.0, 1.0)
    steps = np.asarray(steps_seen, dtype=np.float64)
    warm_up = np.minimum(1.0, steps / warmup_steps) if warmup_steps > 0 else np.ones_like(steps)
    return Confidence(agreement=agreement, data_quality=quality, warm_up=warm_up, spread=spread)
