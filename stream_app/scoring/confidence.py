"""How far to trust one maintenance prediction: a number in [0, 1], the product of a few factors,
and the calibration that makes the model's probability mean what it says.

Calibration
    The trainer weights positives up (pos_weight) so the rare failures are learnt; that inflates
    the heads' raw probabilities (on the default simulated history a raw 0.55 is followed by a
    failure about 26 % of the time). Platt scaling repairs it: with z the logit of the ensemble's
    raw probability (the mean of the K heads' sigmoids),

        p_cal = sigmoid(a * z + b)

    a and b fitted by maximum likelihood on the validation slice the trainer holds out (readings
    before the test period, never the test period itself). The manifest stores them as
    "calibration": {"method": "platt", "a": .., "b": ..}; without that key the calibration is
    the identity (p_cal = raw mean), so older models load unchanged. p_cal is what a prediction
    reports as failure_probability and what alert_probability is compared with. Each head's
    probability is calibrated with the same a, b before its spread is measured (below).

Confidence: the probability that the decision taken on this reading is right, discounted for
what the model cannot vouch for.

    confidence = decisiveness x agreement x data_quality x warm_up [x familiarity]

decisiveness  The calibrated probability that the model's decision (alert or not) is right:
              p_cal when it alerts (p_cal >= the alert threshold), 1 - p_cal when it does not.
              0.5 is a coin toss. It is exactly as good as the calibration is: the training
              report checks both on the test period (calibration table; "how often was a
              decision at this confidence right"). It ranks decisions; whether it also gates
              them depends on the version (see "Competence and the gate" below).
agreement     The model has K heads trained on different bootstrap resamples of the training data;
              where they disagree, the input is unlike what the model learned. spread = std over
              the heads of their calibrated probabilities. Raw spread is uninformative on an
              absolute scale (on the default history it averages 0.004 and never reaches 0.06),
              so it is measured against the trainer's reference: the 99th percentile of spread on
              the validation slice, stored as "confidence": {"spread_reference": s99}.
                  agreement = clip(1 - 0.15 * spread / s99, 0, 1)
              A spread as unusual as the top 1 % of validation costs 15 points, twice that 30, and
              so on (linear, so that an auditor can work it out by hand). Why 0.15: the gate is 0.85,
              so a spread at the reference alone takes even a certain decision (decisiveness 1) to
              the gate and anything more unusual hands it to the rules, while the ordinary spreads
              (median ~0.003 of the reference) cost nothing measurable. Evidence, default simulated
              history, test period: decisions with spread 0.1-0.5 / 0.5-1 / 1-2 references were
              right 88 / 68 / 57 % of the time where their decisiveness promised 91 / 71 / 58 %, and
              within decisiveness 0.85-0.95 the tenth with the largest spread was right 74 % of the
              time against 87 % for the band: spread carries information beyond p. Agreement takes
              4 / 11 / 16 points off in those bands: on the cautious side, of the right size. The
              training report's "Head spread and decision accuracy" table shows it per model.
              Monte-Carlo dropout on the trunk features (16 masks x 5 heads, still one LSTM step)
              ranked readings no better than the heads' spread there, so it is not used.
              Without the manifest key (older models): agreement = clip(1 - 2 * std, 0, 1), as
              before (heads that agree give 1, a std of 0.075 gives 0.85).
data_quality  Imputed sensors (missing in this reading, forward-filled from the last value) and
              clipped sensors (beyond the range seen in training, cut to it) are guesses, not
              measurements. data_quality = clip(1 - 0.4 * imputed_share - 0.25 * clipped_share,
              0, 1), the shares being the fractions of the model's sensors affected in this
              reading: one of four sensors missing gives 0.9, all missing 0.6.
warm_up       An LSTM's state means little until it has seen a few readings of the machine:
              warm_up = min(1, readings seen (this one included) / warmup_steps).

familiarity   (versions with a stored operating point) 0 when the reading names a machine type
              or operating mode the training data did not have, where it had some: a regime
              the model has never seen. 1 otherwise.

Competence and the gate. competence = agreement x data_quality x warm_up x familiarity: whether
the model is in its depth on this reading, whatever it predicts. A version with a stored
operating point (stream_app.scoring.operating_point) decides whenever its competence clears
settings.maintenance.min_confidence: a moderate calibrated probability is an answer, not a
reason to hand the reading over (the alert threshold was chosen for the user's false-alert
budget; decisiveness only ranks and annotates, as part of the reported confidence). The rules
decide when the model is out of its depth: warming up, poor data, an unfamiliar regime, heads
that disagree far beyond what validation showed, or no model at all. A worked example: spread
half the reference (agreement 0.925), one of eight sensors imputed (data_quality 0.95), warmed
up: competence 0.925 x 0.95 = 0.88 >= 0.85, so the model decides; at p_cal 0.30 against a
threshold of 0.22 it alerts, and reports confidence 0.30 x 0.88 = 0.26.

Versions without an operating point (trained before it) keep the older gate: confidence (with
decisiveness at alert_probability) >= min_confidence, so the model alerts on its own only at
p_cal >= ~0.85; there, p_cal 0.93 (alert, decisiveness 0.93), agreement 0.925, data_quality
0.95, warmed up: confidence 0.93 x 0.925 x 0.95 x 1 = 0.82 < 0.85, so the rules decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

# Old manifests (no spread reference): 1 - _SPREAD_SCALE * 0.075 = 0.85.
_SPREAD_SCALE = 2.0
# With a reference: points of confidence lost per reference spread (see the module docstring).
SPREAD_PENALTY = 0.15
# Spreads below this are numerical noise; a reference is never smaller.
MIN_SPREAD_REFERENCE = 1e-3
_IMPUTED_PENALTY = 0.4
_CLIPPED_PENALTY = 0.25
# Probabilities are clipped to [EPS, 1 - EPS] before taking logits (float32 sigmoids saturate).
EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the ensemble probability: p_cal = sigmoid(a * logit(p_raw) + b)."""

    a: float = 1.0
    b: float = 0.0
    method: str = "identity"

    @property
    def identity(self) -> bool:
        return self.method == "identity" or (self.a == 1.0 and self.b == 0.0)

    @classmethod
    def from_manifest(cls, value: Any) -> "Calibration":
        """None (no key: an older model) is the identity; anything else must be a valid Platt
        calibration (raises ValueError)."""
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError(f"manifest 'calibration' must be an object, not {value!r}")
        method = value.get("method")
        if method == "identity":
            return cls()
        if method != "platt":
            raise ValueError(f"manifest calibration method {method!r} is not supported (platt, identity)")
        a, b = value.get("a"), value.get("b")
        for name, v in (("a", a), ("b", b)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"manifest calibration {name!r} must be a finite number, not {v!r}")
        if a <= 0:  # type: ignore[operator]
            raise ValueError(f"manifest calibration 'a' must be positive (a monotone calibration), not {a!r}")
        return cls(float(a), float(b), "platt")  # type: ignore[arg-type]

    def to_manifest(self) -> dict[str, Any]:
        if self.identity:
            return {"method": "identity"}
        return {"method": self.method, "a": self.a, "b": self.b}

    def ensemble(self, head_probabilities: np.ndarray) -> np.ndarray:
        """(N, K) raw head probabilities -> (N,) calibrated ensemble probability."""
        mean = np.asarray(head_probabilities, dtype=np.float64).mean(axis=-1)
        return mean if self.identity else self.probability(mean)

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """Raw (ensemble) probabilities of any shape -> calibrated, same shape."""
        raw = np.asarray(raw, dtype=np.float64)
        return raw if self.identity else _sigmoid(self.a * logit(raw) + self.b)

    def heads(self, head_probabilities: np.ndarray) -> np.ndarray:
        """(N, K) raw head probabilities -> each head calibrated (for their spread)."""
        return self.probability(head_probabilities)


@dataclass(frozen=True)
class Confidence:
    """Per-reading arrays (N,); `total` is what a prediction reports, the factors explain it."""

    agreement: np.ndarray
    data_quality: np.ndarray
    warm_up: np.ndarray
    spread: np.ndarray
    decisiveness: np.ndarray
    # spread / reference (NaN without a reference): how unusual the spread is
    spread_ratio: np.ndarray
    familiarity: Optional[np.ndarray] = None  # None: ones (older versions)

    @property
    def competence(self) -> np.ndarray:
        """Whether the model is in its depth: every factor but decisiveness."""
        base = self.agreement * self.data_quality * self.warm_up
        return base if self.familiarity is None else base * self.familiarity

    @property
    def total(self) -> np.ndarray:
        return self.decisiveness * self.competence


def decisiveness(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The calibrated probability that the decision at `threshold` is right."""
    p = np.asarray(probability, dtype=np.float64)
    return np.where(p >= threshold, p, 1.0 - p)


def agreement(spread: np.ndarray, spread_reference: Optional[float]) -> np.ndarray:
    spread = np.asarray(spread, dtype=np.float64)
    if spread_reference is None:
        return np.clip(1.0 - _SPREAD_SCALE * spread, 0.0, 1.0)
    ref = max(float(spread_reference), MIN_SPREAD_REFERENCE)
    return np.clip(1.0 - SPREAD_PENALTY * spread / ref, 0.0, 1.0)


def spread_reference_from(spreads: np.ndarray, quantile: float = 0.99) -> Optional[float]:
    """The reference a trainer stores: the `quantile` of the validation spreads (floored at
    MIN_SPREAD_REFERENCE); None without spreads."""
    spreads = np.asarray(spreads, dtype=np.float64)
    spreads = spreads[np.isfinite(spreads)]
    if not len(spreads):
        return None
    return max(float(np.quantile(spreads, quantile)), MIN_SPREAD_REFERENCE)


def confidence(
    head_probabilities: np.ndarray,
    imputed: np.ndarray,
    clipped: np.ndarray,
    steps_seen: np.ndarray,
    warmup_steps: int,
    *,
    probability: Optional[np.ndarray] = None,
    threshold: float = 0.5,
    spread_reference: Optional[float] = None,
    unseen: Optional[np.ndarray] = None,
) -> Confidence:
    """head_probabilities (N, K) calibrated per head; imputed, clipped (N, S) bool; steps_seen (N,)
    readings of the machine so far, this one included; warmup_steps >= 1 (0 disables the warm-up
    factor); probability (N,) the calibrated ensemble probability the decision uses (default: the
    heads' mean); threshold: alert_probability; spread_reference: the manifest's (None: the old
    agreement formula); unseen (N,) bool: the reading names a regime training did not have
    (None: no familiarity factor, as older versions)."""
    probs = np.asarray(head_probabilities, dtype=np.float64)
    spread = probs.std(axis=1)
    p = probs.mean(axis=1) if probability is None else np.asarray(probability, dtype=np.float64)
    n_sensors = max(imputed.shape[1], 1)
    imputed_share = imputed.sum(axis=1) / n_sensors
    clipped_share = clipped.sum(axis=1) / n_sensors
    quality = np.clip(1.0 - _IMPUTED_PENALTY * imputed_share - _CLIPPED_PENALTY * clipped_share, 0.0, 1.0)
    steps = np.asarray(steps_seen, dtype=np.float64)
    warm_up = np.minimum(1.0, steps / warmup_steps) if warmup_steps > 0 else np.ones_like(steps)
    ratio = (
        spread / max(float(spread_reference), MIN_SPREAD_REFERENCE)
        if spread_reference is not None
        else np.full(len(spread), np.nan)
    )
    return Confidence(
        agreement=agreement(spread, spread_reference),
        data_quality=quality,
        warm_up=warm_up,
        spread=spread,
        decisiveness=decisiveness(p, threshold),
        spread_ratio=ratio,
        familiarity=None if unseen is None else np.where(np.asarray(unseen, dtype=bool), 0.0, 1.0),
    )
