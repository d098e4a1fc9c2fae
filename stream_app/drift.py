"""Online drift statistics for one stream partition: River ADWIN on every monitored value (model
inputs, predictions, confidence) and KSWIN's windowed Kolmogorov-Smirnov test on the model
outputs, where the shape of the distribution matters and a mean test would miss it. The test
keeps one value in `kswin_every` and runs at each kept value, as River's KSWIN does, but with
scipy's exact p-values from a table (`ks_two_sample`): River's scipy call cost more per reading
than scoring it.

A detection is reported only when the change is large enough to matter to an operator: at
least `min_effect` reference standard deviations, the reference being the first
`reference_size` values the monitor saw. Fleet-level sensor means wander with operating modes,
weather and machines ageing; ADWIN alone would flag those.

Pure computation: no Kafka, no Faust. Agents call `observe` in the inference thread, publish what
it returns and snapshot the monitor as plain data (`dumps`/`loads`, stream_app/drift_snapshot.py).
"""

from __future__ import annotations

import math
import random
import statistics
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timezone
from typing import Iterable, Mapping, Optional

import numpy as np
from river import drift as river_drift
from scipy import stats

from schemas import DriftEvent, deterministic_id
from stream_app import drift_snapshot

# Features beyond this many per monitor are ignored: gateways may send arbitrary sensor names,
# and memory per partition must stay bounded.
MAX_FEATURES = 64


@dataclass(frozen=True)
class DriftConfig:
    adwin_delta: float = 0.002
    kswin_alpha: float = 1e-4
    kswin_every: int = 20
    min_effect: float = 1.0
    reference_size: int = 2000

    def __post_init__(self) -> None:
        if not 0 < self.adwin_delta < 1 or not 0 < self.kswin_alpha < 1:
            raise ValueError("adwin_delta and kswin_alpha must be in (0, 1)")
        if self.kswin_every < 1 or self.reference_size < 10 or self.min_effect < 0:
            raise ValueError("kswin_every >= 1, reference_size >= 10 and min_effect >= 0 are required")


@dataclass
class _Reference:
    """Welford mean/variance of the first values seen: the scale that effects are measured in."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


# After ADWIN cuts its window, the recent part is judged once it holds this many values: at the
# cut itself it still mixes values from before the change (ADWIN cuts at bucket boundaries).
CONFIRM_VALUES = 100
# KSWIN compares its newest STAT_SIZE sampled values with the rest of its window.
KSWIN_WINDOW, KSWIN_STAT = 200, 50


def ks_two_sample(a: list[float], b: list[float]) -> tuple[float, float]:
    """scipy's two-sided `ks_2samp` (method "auto": exact at these sizes), for two samples of
    one size n: the statistic D is a multiple of 1/n, so its p-value comes from a table of the
    n + 1 possible ones, and a test costs ~10 us instead of ~200."""
    n = len(a)
    if n != len(b) or n == 0:
        return _scipy_ks(a, b)
    x, y = np.sort(a), np.sort(b)
    both = np.concatenate([x, y])
    d = float(np.max(np.abs(np.searchsorted(x, both, "right") - np.searchsorted(y, both, "right")))) / n
    return d, _ks_p_values(n)[round(d * n)]


@lru_cache(maxsize=8)
def _ks_p_values(n: int) -> tuple[float, ...]:
    """p-value of D = k/n for k = 0..n: scipy's, on two samples shifted to give each D."""
    table: dict[int, float] = {}
    base = np.arange(n, dtype=float)
    for shift in np.arange(-0.5, n + 1, 0.5):
        d, p = _scipy_ks(base.tolist(), (base + shift).tolist())
        table.setdefault(round(d * n), p)
    return tuple(table[k] for k in range(n + 1))


def _scipy_ks(a: list[float], b: list[float]) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        statistic, p_value = stats.ks_2samp(a, b, method="auto")
    return float(statistic), float(p_value)


@dataclass
class WindowKS:
    """KSWIN's test (River's `drift.KSWIN`, Raab et al. 2020): the newest
    `stat_size` values of a `window_size` window against as many drawn at random from the rest.
    After a detection only the newest values stay, as in KSWIN. Plain data: a list and counters
    (the draws are seeded by the test's number, so a restored window draws as the original)."""

    alpha: float
    window_size: int = KSWIN_WINDOW
    stat_size: int = KSWIN_STAT
    seed: int = 7
    window: list[float] = field(default_factory=list)
    tests: int = 0

    def add(self, x: float) -> None:
        self.window.append(x)
        if len(self.window) > self.window_size:
            del self.window[0]

    def test(self) -> Optional[tuple[list[float], list[float]]]:
        """(older, newest) values of the window when their distributions differ, else None."""
        if len(self.window) < self.window_size:
            return None
        self.tests += 1
        older, newest = self.window[: -self.stat_size], self.window[-self.stat_size:]
        drawn = random.Random(self.seed * 1_000_003 + self.tests).sample(older, self.stat_size)
        statistic, p_value = ks_two_sample(drawn, newest)
        if p_value <= self.alpha and statistic > 0.1:
            self.window = list(newest)
            return older, newest
        return None


@dataclass
class FeatureDrift:
    config: DriftConfig
    use_kswin: bool
    reference: _Reference = field(default_factory=_Reference)
    seen: int = 0
    # Mean of the part ADWIN discarded at its last cut, while the change awaits confirmation.
    pending_before: Optional[float] = None

    def __post_init__(self) -> None:
        self.adwin = river_drift.ADWIN(delta=self.config.adwin_delta)
        self.kswin = WindowKS(alpha=self.config.kswin_alpha) if self.use_kswin else None

    def update_many(self, xs: Iterable[float]) -> list[tuple[str, float, float, int, _Reference]]:
        """Returns (detector, mean before, mean after, values seen, reference) per detection, at
        the value that confirmed it. A reported drift is the new normal: the reference starts again from the next values, so
        one lasting change is reported once, and a further change again."""
        found: list[tuple[str, float, float, int, _Reference]] = []
        config, kswin, every = self.config, self.kswin, self.config.kswin_every
        for x in xs:
            self.seen += 1
            if self.reference.n < config.reference_size:
                self.reference.add(x)
            adwin = self._adwin(x)
            if adwin:
                found += adwin
                self.reference = _Reference()
            if kswin is not None and not self.seen % every:
                kswin.add(x)
                tested = self._kswin()
                if tested:
                    found += tested
                    self.reference = _Reference()
        return found

    def _adwin(self, x: float) -> list[tuple[str, float, float, int, _Reference]]:
        # Every value of every reading passes here: the detector's width and sum are read once
        # each (every read is a call into River's extension, and `estimation` makes two).
        adwin = self.adwin
        width, total = adwin.width, adwin.total + x
        adwin.update(x)
        if adwin.drift_detected:
            kept = adwin.width
            self.pending_before = (total - adwin.total) / max(width + 1 - kept, 1)
        if self.pending_before is None or adwin.width < CONFIRM_VALUES:
            return []
        before, after = self.pending_before, adwin.estimation
        self.pending_before = None
        return [("adwin", before, after, self.seen, self.reference)] if self._effect(after) >= self.config.min_effect else []

    def _kswin(self) -> list[tuple[str, float, float, int, _Reference]]:
        if self.kswin is None:
            return []
        tested = self.kswin.test()
        if tested is None:
            return []
        old, new = tested
        before, after = sum(old) / len(old), sum(new) / len(new)
        # A distribution test also sees changes of spread at the same mean.
        spread = statistics.pstdev(new)
        ref_std = self.reference.std or 1e-9
        effect = max(self._effect(after), abs(math.log(max(spread, 1e-12) / ref_std)))
        return [("kswin", before, after, self.seen, self.reference)] if effect >= self.config.min_effect else []

    def _effect(self, recent_mean: float) -> float:
        """How many reference deviations the recent mean stands from the reference: periodic
        swings (day and night, shifts) that stay inside the reference's spread are not drift."""
        if self.reference.n < self.config.reference_size:
            return 0.0  # no scale yet: the first values are the reference, not a change
        return abs(recent_mean - self.reference.mean) / (self.reference.std or 1e-9)

    @property
    def window_mean(self) -> float:
        return self.adwin.estimation


class DriftMonitor:
    """All drift detectors of one stream partition."""

    def __init__(self, stream: str, partition: Optional[int], config: DriftConfig, kswin_features: Iterable[str] = ()) -> None:
        self.stream = stream
        self.partition = partition
        self.config = config
        self.kswin_features = frozenset(kswin_features)
        self.features: dict[str, FeatureDrift] = {}
        self.detections = 0

    def observe(self, values: Mapping[str, Iterable[float]], event_ts: Optional[datetime] = None) -> list[DriftEvent]:
        """Feed each feature's new values (NaN and None skipped); return the drifts detected."""
        events = []
        for name, xs in values.items():
            detector = self.features.get(name)
            if detector is None:
                if len(self.features) >= MAX_FEATURES:
                    continue
                detector = self.features[name] = FeatureDrift(self.config, use_kswin=name in self.kswin_features)
            finite = [float(x) for x in xs if x is not None and math.isfinite(x)]
            for kind, before, after, seen, reference in detector.update_many(finite):
                self.detections += 1
                events.append(self._event(name, kind, before, after, seen, reference, event_ts))
        return events

    def _event(self, feature: str, detector: str, before: float, after: float, seen: int,
               reference: _Reference, event_ts: Optional[datetime]) -> DriftEvent:
        return DriftEvent(
            drift_id=deterministic_id("drift", self.stream, self.partition, feature, detector, seen),
            stream=self.stream,
            partition=self.partition,
            feature=feature,
            detector=detector,
            detected_at=datetime.now(timezone.utc),
            event_ts=event_ts,
            values_seen=seen,
            mean_before=before,
            mean_after=after,
            reference_mean=reference.mean,
            reference_std=reference.std,
            effect=(after - reference.mean) / (reference.std or 1e-9),
            sensitivity={"adwin_delta": self.config.adwin_delta, "kswin_alpha": self.config.kswin_alpha,
                         "min_effect": self.config.min_effect},
        )

    def window_means(self) -> dict[str, float]:
        return {name: f.window_mean for name, f in self.features.items()}

    def summary(self) -> dict[str, dict[str, float]]:
        """Per feature, the numbers that say where the detectors stand (for comparing two
        monitors that should have seen the same values)."""
        return {
            name: {"seen": f.seen, "reference_n": f.reference.n, "reference_mean": f.reference.mean,
                   "adwin_width": f.adwin.width, "adwin_mean": f.adwin.estimation}
            for name, f in self.features.items()
        }

    def dumps(self) -> bytes:
        """Plain data (stream_app/drift_snapshot.py): snapshots travel through Kafka topics."""
        return drift_snapshot.dumps(self)

    @staticmethod
    def loads(data: bytes) -> "DriftMonitor":
        """A snapshot `dumps` wrote; anything else raises drift_snapshot.ForgedSnapshot (no
        record can make a worker run code or load a detector in an impossible state)."""
        return drift_snapshot.loads(data)
