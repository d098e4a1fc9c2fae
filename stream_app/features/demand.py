"""The demand forecaster's inputs, shared by training and live scoring so both encode a forecast
origin the same way.

A forecast is made at the close of day t (the origin) for days t+1 .. t+H from the daily history
t-L+1 .. t of one series (sku, market):

observed (past only, L x P)   units / scale, price relative to the window's mean price, share of
                              units sold on promotion, active (1 from the series' first day on)
known (past and future, (L+H) x K)
                              the calendar's holiday, campaign, launch and media intensities, the
                              launch and media age (0 at their first day, 1 at their last), day of
                              the week (one-hot) and of the year (sin, cos)
static                        market (an index; 0 = a market the model was not trained on),
                              log scale, share of the window the series has existed

scale = the mean daily units over the series' active days in the window (floored at SCALE_FLOOR):
the model forecasts units / scale, so one network serves best sellers and the long tail alike,
and SKUs it has never seen (nothing SKU-specific is an input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from schemas.sales import CalendarEntry

HISTORY_DAYS = 90
HORIZON_DAYS = 30
SCALE_FLOOR = 0.2
EPOCH = date(1970, 1, 1)

CALENDAR_KINDS = ("holiday", "campaign", "launch", "media")
CALENDAR_CHANNELS = ("holiday", "campaign", "launch", "launch_age", "media", "media_age")
_AGED = {"launch": "launch_age", "media": "media_age"}
TIME_CHANNELS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "year_sin", "year_cos")
KNOWN_CHANNELS = CALENDAR_CHANNELS + TIME_CHANNELS
OBSERVED_CHANNELS = ("units", "price", "promo", "active")
STATIC_CHANNELS = ("log_scale", "history_share")
# What explanations call the inputs (observed first, then known; the order of the model's
# past variable selection).
PAST_VARIABLES = OBSERVED_CHANNELS + KNOWN_CHANNELS
FUTURE_VARIABLES = KNOWN_CHANNELS


def day_index(d: date) -> int:
    return (d - EPOCH).days


def day_date(day: int) -> date:
    return date.fromordinal(EPOCH.toordinal() + int(day))


# --- calendar ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Span:
    kind: str
    market: str
    sku: Optional[str]
    start: int
    end: int
    intensity: float


class CalendarIndex:
    """Known future covariates by market (and SKU). An entry sent again with the same event_id
    replaces the earlier one, so a producer corrects an entry by re-sending it."""

    def __init__(self, entries: Iterable[CalendarEntry] = ()) -> None:
        self._spans: dict[str, _Span] = {}
        self._by_market: Optional[dict[str, list[_Span]]] = None
        self.update(entries)

    def update(self, entries: Iterable[CalendarEntry]) -> int:
        n = 0
        for e in entries:
            start, end = day_index(e.start), day_index(e.end)
            if end < start:
                start, end = end, start
            self._spans[e.event_id] = _Span(e.kind, e.market, e.sku, start, end, float(e.intensity))
            n += 1
        if n:
            self._by_market = None
        return n

    def __len__(self) -> int:
        return len(self._spans)

    @property
    def markets(self) -> set[str]:
        return {s.market for s in self._spans.values()}

    def _index(self) -> dict[str, list[_Span]]:
        if self._by_market is None:
            by: dict[str, list[_Span]] = {}
            for span in self._spans.values():
                by.setdefault(span.market, []).append(span)
            self._by_market = by
        return self._by_market

    def matrix(self, markets: Sequence[str], skus: Sequence[str], first_day: np.ndarray | int, n_days: int) -> np.ndarray:
        """(S, n_days, len(CALENDAR_CHANNELS)) for series (markets[i], skus[i]) over days
        first_day[i] .. first_day[i] + n_days - 1 (first_day: one int for all, or one per series).
        Intensities of overlapping entries of one kind add up."""
        S = len(markets)
        out = np.zeros((S, n_days, len(CALENDAR_CHANNELS)), dtype=np.float32)
        first = np.broadcast_to(np.asarray(first_day, dtype=np.int64), (S,))
        channel = {name: i for i, name in enumerate(CALENDAR_CHANNELS)}
        index = self._index()
        rows_by_market: dict[str, list[int]] = {}
        for i, m in enumerate(markets):
            rows_by_market.setdefault(m, []).append(i)
        for market, rows in rows_by_market.items():
            spans = index.get(market)
            if not spans:
                continue
            rows_a = np.array(rows)
            lo, hi = int(first[rows_a].min()), int(first[rows_a].max()) + n_days - 1
            sku_a = np.array([skus[i] for i in rows], dtype=object)
            for s in spans:
                if s.end < lo or s.start > hi:
                    continue
                sel = rows_a if s.sku is None else rows_a[sku_a == s.sku]
                if not len(sel):
                    continue
                days = first[sel][:, None] + np.arange(n_days)[None, :]
                active = (days >= s.start) & (days <= s.end)
                if not active.any():
                    continue
                out[sel, :, channel[s.kind]] += np.where(active, s.intensity, 0.0).astype(np.float32)
                if s.kind in _AGED:
                    age = (days - s.start) / max(1, s.end - s.start)
                    out[sel, :, channel[_AGED[s.kind]]] += np.where(active, age, 0.0).astype(np.float32)
        return out


def time_features(days: np.ndarray) -> np.ndarray:
    """days (..., T) since the epoch -> (..., T, len(TIME_CHANNELS))."""
    days = np.asarray(days, dtype=np.int64)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    onehot = np.eye(7, dtype=np.float32)[weekday]
    angle = 2 * np.pi * (days % 365.2425) / 365.2425
    return np.concatenate([onehot, np.sin(angle)[..., None].astype(np.float32), np.cos(angle)[..., None].astype(np.float32)], axis=-1)


# --- model inputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemandFeatures:
    """What a trained model expects: its markets, window and horizon."""

    markets: tuple[str, ...]
    history_days: int = HISTORY_DAYS
    horizon_days: int = HORIZON_DAYS
    _market_index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._market_index.update({m: i + 1 for i, m in enumerate(self.markets)})

    def market_index(self, markets: Sequence[str]) -> np.ndarray:
        """0 for a market the model was not trained on."""
        return np.array([self._market_index.get(m, 0) for m in markets], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "markets": list(self.markets), "history_days": self.history_days, "horizon_days": self.horizon_days,
            "observed": list(OBSERVED_CHANNELS), "known": list(KNOWN_CHANNELS), "static": list(STATIC_CHANNELS),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DemandFeatures":
        if list(d.get("known", KNOWN_CHANNELS)) != list(KNOWN_CHANNELS) or list(d.get("observed", OBSERVED_CHANNELS)) != list(OBSERVED_CHANNELS):
            raise ValueError("the model was trained on other input channels than this code encodes")
        return cls(tuple(d["markets"]), int(d["history_days"]), int(d["horizon_days"]))


@dataclass
class ModelInputs:
    """A batch of B forecast origins, numpy float32 (the model takes them as tensors)."""

    observed: np.ndarray  # (B, L, P)
    known: np.ndarray  # (B, L + H, K)
    market: np.ndarray  # (B,) int64
    static: np.ndarray  # (B, R)
    scale: np.ndarray  # (B,) float64: units = model output x scale
    history_days: np.ndarray  # (B,) int: active days in the window

    def __len__(self) -> int:
        return len(self.scale)

    def take(self, rows: np.ndarray) -> "ModelInputs":
        return ModelInputs(self.observed[rows], self.known[rows], self.market[rows], self.static[rows], self.scale[rows], self.history_days[rows])


def series_scale(units: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Mean daily units over active days, floored: (B, L) -> (B,)."""
    n = active.sum(axis=1)
    total = np.where(active, units, 0.0).sum(axis=1)
    return np.maximum(total / np.maximum(n, 1), SCALE_FLOOR)


def encode(
    features: DemandFeatures,
    units: np.ndarray,
    price: np.ndarray,
    promo_units: np.ndarray,
    active: np.ndarray,
    calendar: np.ndarray,
    origin_days: np.ndarray,
    markets: Sequence[str],
) -> ModelInputs:
    """units, price (NaN: no sale that day), promo_units, active (bool): (B, L) history ending at
    each origin day; calendar (B, L + H, len(CALENDAR_CHANNELS)) over the same days plus the
    horizon; origin_days (B,). Returns the model's inputs."""
    units = np.where(active, np.nan_to_num(units, nan=0.0), 0.0).astype(np.float64)
    B, L = units.shape
    H = calendar.shape[1] - L
    scale = series_scale(units, active)
    y = units / scale[:, None]
    priced = np.isfinite(price) & active
    n_priced = priced.sum(axis=1)
    mean_price = np.where(n_priced > 0, np.where(priced, price, 0.0).sum(axis=1) / np.maximum(n_priced, 1), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(np.isfinite(price) & (mean_price[:, None] > 0), price / mean_price[:, None] - 1.0, np.nan)
    rel = _forward_fill(rel)
    rel = np.clip(np.nan_to_num(rel, nan=0.0), -1.0, 1.0)
    promo = np.where(units > 0, np.clip(promo_units / np.maximum(units, 1e-9), 0.0, 1.0), 0.0)
    observed = np.stack([y, rel, promo, active.astype(np.float64)], axis=-1).astype(np.float32)
    days = np.asarray(origin_days, dtype=np.int64)[:, None] - L + 1 + np.arange(L + H)[None, :]
    known = np.concatenate([calendar.astype(np.float32), time_features(days)], axis=-1)
    history = active.sum(axis=1)
    static = np.stack([np.log(scale), history / L], axis=-1).astype(np.float32)
    return ModelInputs(observed, known, features.market_index(markets), static, scale, history.astype(np.int64))


def _forward_fill(a: np.ndarray) -> np.ndarray:
    """NaNs along axis 1 take the last finite value before them (leading NaNs stay)."""
    mask = np.isfinite(a)
    idx = np.where(mask, np.arange(a.shape[1])[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = a[np.arange(a.shape[0])[:, None], idx]
    return np.where(mask | (np.cumsum(mask, axis=1) > 0), filled, np.nan)
