"""One calibrated score from the four detectors, and the threshold for a target flag rate.

1. Per detector, its statistic s becomes a surprise: -log10 of the share of normal transactions
   at least as unusual, P_normal(S >= s), read from the statistic's distribution on normal
   validation transactions (quantile table up to the 98th percentile, an exponential tail fitted
   to the top 2 % beyond it, so that surprise keeps growing past anything seen), capped at
   MAX_SURPRISE. Surprise 2 means "1 % of normal transactions are this unusual".
   The custody detector's statistic is a set of facts (graph/custody.py), not a number: each
   fact's share of normal validation transactions (of those whose lot could be judged) is
   counted, and its surprise is -log10 of the rarest fired fact's share (SignalCalibration). A
   fact that no normal transaction showed is as surprising as a statistic far beyond anything
   seen: MAX_SURPRISE. No labels are needed for any of this.
2. The evidence E is the largest surprise plus a quarter of the others'. Detectors look at
   different things (the flow's plausibility, the joint feature pattern, isolation, amounts): an
   attack that only one of them sees keeps that detector's full surprise (a plain sum would drown
   it in the others' ordinary noise), and agreement still adds. On the default simulated history,
   at a 1 % flag rate, the plain sum caught 57-87 % of quantity/price anomalies where this caught
   96-98 %, the maximum alone lost collusive rings the others' agreement catches.
3. The threshold is the (1 - target flag rate) quantile of E on normal validation transactions:
   by construction the share of normal transactions flagged is the target, on data the detectors
   never trained on.
4. The score is P(attack | E), Platt-scaled on the validation period's verdicts (attack instances
   there are different from the test period's; no detector trains on them). Without enough
   labelled attacks it is 1 - P_normal(E >= e), the normal-tail rank, and the manifest says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from stream_app.scoring.confidence import Calibration, logit

MAX_SURPRISE = 12.0
OTHERS_WEIGHT = 0.25
_TAIL_P = 0.98
_QUANTILES = 200


@dataclass(frozen=True)
class TailCalibration:
    """P_normal(S >= s) for one statistic, from normal validation values."""

    values: tuple[float, ...]  # quantiles at `probs`
    probs: tuple[float, ...]
    tail_scale: float  # mean excess over the last quantile

    @classmethod
    def fit(cls, normal: np.ndarray) -> "TailCalibration":
        normal = np.sort(np.asarray(normal, dtype=np.float64)[np.isfinite(normal)])
        if len(normal) < 50:
            raise ValueError(f"need at least 50 normal values to calibrate, got {len(normal)}")
        probs = np.linspace(0.0, _TAIL_P, _QUANTILES)
        values = np.quantile(normal, probs)
        top = normal[normal > values[-1]]
        scale = float(np.mean(top - values[-1])) if len(top) else 0.0
        spread = float(values[-1] - values[0])
        return cls(tuple(values.tolist()), tuple(probs.tolist()), max(scale, 1e-3 * spread, 1e-9))

    def exceedance(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        values, probs = np.asarray(self.values), np.asarray(self.probs)
        # right-continuous: the share at or above s is 1 - (share strictly below s)
        below = np.interp(s, values, probs, left=0.0, right=_TAIL_P)
        tail = (1.0 - _TAIL_P) * np.exp(-np.maximum(s - values[-1], 0.0) / self.tail_scale)
        return np.where(s > values[-1], tail, 1.0 - below)

    def surprise(self, s: np.ndarray) -> np.ndarray:
        return np.minimum(-np.log10(np.maximum(self.exceedance(s), 10.0 ** -MAX_SURPRISE)), MAX_SURPRISE)

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "probs": list(self.probs), "tail_scale": self.tail_scale}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TailCalibration":
        values, probs = tuple(float(v) for v in d["values"]), tuple(float(p) for p in d["probs"])
        if len(values) != len(probs) or len(values) < 2 or any(b < a for a, b in zip(values, values[1:])):
            raise ValueError("a tail calibration needs matching, non-decreasing quantiles")
        return cls(values, probs, float(d["tail_scale"]))


@dataclass(frozen=True)
class SignalCalibration:
    """P_normal(fact) for a detector whose statistic is a bit set of deterministic facts (bit k
    for names[k]): each fact's count among `judged` normal validation transactions. A
    transaction's surprise is that of its rarest fired fact; 0 when none fired."""

    names: tuple[str, ...]
    counts: tuple[int, ...]
    judged: int  # normal transactions whose facts could be judged

    @classmethod
    def fit(cls, names: Sequence[str], normal_bits: np.ndarray, judged: int) -> "SignalCalibration":
        bits = np.asarray(normal_bits, dtype=np.int64)
        return cls(tuple(names), tuple(int(((bits >> k) & 1).sum()) for k in range(len(names))), max(int(judged), 1))

    def fact_surprise(self) -> np.ndarray:
        counts = np.asarray(self.counts, dtype=np.float64)
        share = counts / self.judged
        return np.where(counts > 0, np.minimum(-np.log10(np.maximum(share, 10.0 ** -MAX_SURPRISE)), MAX_SURPRISE), MAX_SURPRISE)

    def surprise(self, s: np.ndarray) -> np.ndarray:
        bits = np.nan_to_num(np.asarray(s, dtype=np.float64)).astype(np.int64)
        out = np.zeros(len(bits))
        for k, value in enumerate(self.fact_surprise()):
            out = np.maximum(out, np.where((bits >> k) & 1, value, 0.0))
        return out

    def exceedance(self, s: np.ndarray) -> np.ndarray:
        return np.power(10.0, -self.surprise(s))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "signals", "names": list(self.names), "counts": list(self.counts), "judged": self.judged}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SignalCalibration":
        names, counts = tuple(str(n) for n in d["names"]), tuple(int(c) for c in d["counts"])
        if len(names) != len(counts) or any(c < 0 for c in counts) or int(d["judged"]) < 1:
            raise ValueError("a signal calibration needs one non-negative count per fact and judged >= 1")
        return cls(names, counts, int(d["judged"]))


DetectorCalibration = Union[TailCalibration, SignalCalibration]


def calibration_from_dict(d: Mapping[str, Any]) -> DetectorCalibration:
    return SignalCalibration.from_dict(d) if d.get("kind") == "signals" else TailCalibration.from_dict(d)


@dataclass(frozen=True)
class Ensemble:
    detectors: dict[str, DetectorCalibration]
    evidence: TailCalibration  # of E on normal validation transactions
    threshold: float  # E at or above it is flagged
    target_flag_rate: float
    platt: Optional[Calibration] = None  # E -> P(attack); None: the normal-tail rank
    others_weight: float = OTHERS_WEIGHT

    def surprises(self, statistics: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: cal.surprise(statistics[name]) for name, cal in self.detectors.items() if name in statistics}

    def combine(self, surprises: Mapping[str, np.ndarray]) -> np.ndarray:
        return combine(surprises, self.others_weight)

    def score(self, evidence: np.ndarray) -> np.ndarray:
        """P(attack | E) in [0, 1] (or the normal-tail rank without a Platt fit)."""
        evidence = np.asarray(evidence, dtype=np.float64)
        if self.platt is None:
            return 1.0 - self.evidence.exceedance(evidence)
        return _sigmoid(self.platt.a * evidence + self.platt.b)

    @property
    def score_threshold(self) -> float:
        return float(self.score(np.array([self.threshold]))[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "detectors": {k: v.to_dict() for k, v in self.detectors.items()},
            "evidence": self.evidence.to_dict(),
            "threshold": self.threshold,
            "target_flag_rate": self.target_flag_rate,
            "score": {"method": "platt", "a": self.platt.a, "b": self.platt.b} if self.platt else {"method": "normal_rank"},
            "others_weight": self.others_weight,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Ensemble":
        score = d["score"]
        platt = None
        if score.get("method") == "platt":
            a, b = float(score["a"]), float(score["b"])
            if not (math.isfinite(a) and math.isfinite(b) and a > 0):
                raise ValueError(f"score calibration needs a finite a > 0 and b, got {a}, {b}")
            platt = Calibration(a, b, "platt")
        return cls(
            detectors={k: calibration_from_dict(v) for k, v in d["detectors"].items()},
            evidence=TailCalibration.from_dict(d["evidence"]),
            threshold=float(d["threshold"]),
            target_flag_rate=float(d["target_flag_rate"]),
            platt=platt,
            others_weight=float(d.get("others_weight", OTHERS_WEIGHT)),
        )


def combine(surprises: Mapping[str, np.ndarray], others_weight: float = OTHERS_WEIGHT) -> np.ndarray:
    """Evidence: the largest surprise plus others_weight times the rest."""
    stacked = np.stack([np.asarray(v, dtype=np.float64) for v in surprises.values()], axis=1)
    top = stacked.max(axis=1)
    return top + others_weight * (stacked.sum(axis=1) - top)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def fit_platt_on_evidence(evidence: np.ndarray, y: np.ndarray, iterations: int = 200) -> Calibration:
    """Logistic regression of y on E (Newton's method, two parameters, small ridge)."""
    x = np.asarray(evidence, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    prior = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
    a, b = 1.0, float(logit(np.array([prior]))[0])
    for _ in range(iterations):
        p = _sigmoid(a * x + b)
        w = p * (1 - p) + 1e-12
        grad = np.array([np.sum((p - y) * x) + 1e-6 * a, np.sum(p - y)])
        h = np.array([[np.sum(w * x * x) + 1e-6, np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(h, grad)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return Calibration(float(max(a, 1e-6)), float(b), "platt")
