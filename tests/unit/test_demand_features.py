"""The demand model's inputs (calendar covariates, time features, scaling) and the rule forecasts
(seasonal naive, moving average) with their intervals."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from schemas.sales import CalendarEntry
from stream_app.features.demand import (
    CALENDAR_CHANNELS,
    SCALE_FLOOR,
    TIME_CHANNELS,
    CalendarIndex,
    DemandFeatures,
    day_index,
    encode,
    time_features,
)
from stream_app.scoring import demand_fallback as fb

D = day_index(date(2026, 3, 2))  # a Monday


def _entry(event_id: str, kind: str, market: str, start: str, end: str, sku: str | None = None, intensity: float = 1.0) -> CalendarEntry:
    return CalendarEntry(event_id=event_id, ts="2026-01-01T00:00:00Z", kind=kind, market=market, sku=sku,
                         start=date.fromisoformat(start), end=date.fromisoformat(end), intensity=intensity)


def test_calendar_covariates_by_market_and_sku() -> None:
    cal = CalendarIndex([
        _entry("c1", "campaign", "DE", "2026-03-03", "2026-03-04", intensity=0.5),
        _entry("c2", "campaign", "DE", "2026-03-04", "2026-03-04", sku="bk-2", intensity=1.0),
        _entry("l1", "launch", "DE", "2026-03-02", "2026-03-06", sku="bk-2", intensity=4.0),
        _entry("h1", "holiday", "FR", "2026-03-02", "2026-03-02"),
    ])
    m = cal.matrix(["DE", "DE", "FR"], ["bk-1", "bk-2", "bk-1"], D, 5)
    c = {name: i for i, name in enumerate(CALENDAR_CHANNELS)}
    assert m.shape == (3, 5, len(CALENDAR_CHANNELS))
    assert m[0, :, c["campaign"]].tolist() == [0, 0.5, 0.5, 0, 0]
    assert m[1, :, c["campaign"]].tolist() == [0, 0.5, 1.5, 0, 0]  # market-wide plus its own, added
    assert m[1, :, c["launch"]].tolist() == [4, 4, 4, 4, 4] and m[0, :, c["launch"]].sum() == 0
    assert m[1, :, c["launch_age"]].tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert m[2, :, c["holiday"]].tolist() == [1, 0, 0, 0, 0]
    assert cal.markets == {"DE", "FR"}
    # re-sent with the same id: replaces (a correction), does not add
    cal.update([_entry("h1", "holiday", "FR", "2026-03-05", "2026-03-05", intensity=2.0)])
    assert cal.matrix(["FR"], ["bk-1"], D, 5)[0, :, c["holiday"]].tolist() == [0, 0, 0, 2, 0]


def test_time_features_know_the_weekday_and_season() -> None:
    t = time_features(np.array([D, D + 5, D + 6]))
    names = {n: i for i, n in enumerate(TIME_CHANNELS)}
    assert t[0, names["mon"]] == 1 and t[1, names["sat"]] == 1 and t[2, names["sun"]] == 1
    assert np.allclose(t[:, names["year_sin"]] ** 2 + t[:, names["year_cos"]] ** 2, 1.0)


def test_encode_scales_by_the_active_mean_and_masks_days_before_the_first_sale() -> None:
    L, H = 14, 30
    features = DemandFeatures(("DE", "US"), L, H)
    units = np.array([[0.0] * 7 + [2.0, 4.0, 0.0, 2.0, 4.0, 0.0, 2.0], [0.0] * L])
    active = np.array([[False] * 7 + [True] * 7, [True] * L])
    price = np.where(units > 0, 10.0, np.nan)
    inputs = encode(features, units, price, np.zeros_like(units), active, np.zeros((2, L + H, len(CALENDAR_CHANNELS))),
                    np.array([D, D]), ["US", "XX"])
    assert inputs.observed.shape == (2, L, 4) and inputs.known.shape == (2, L + H, len(CALENDAR_CHANNELS) + len(TIME_CHANNELS))
    assert inputs.scale.tolist() == [2.0, SCALE_FLOOR]
    assert inputs.observed[0, -7:, 0].tolist() == [1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0]
    assert inputs.observed[0, :7, 3].sum() == 0 and inputs.history_days.tolist() == [7, 14]
    assert inputs.market.tolist() == [2, 0]  # XX: a market the model was not trained on


def test_seasonal_naive_repeats_the_last_same_weekday_and_moving_average_is_flat() -> None:
    units = np.arange(28, dtype=float)[None, :]
    active = np.ones_like(units, dtype=bool)
    sn = fb.point_forecast("seasonal_naive", units, active, 14)
    assert sn[0, :7].tolist() == list(range(21, 28)) and sn[0, 7:14].tolist() == list(range(21, 28))
    ma = fb.point_forecast("moving_average", units, active, 3)
    assert ma.tolist() == [[13.5, 13.5, 13.5]]
    with pytest.raises(ValueError):
        fb.point_forecast("prophet", units, active, 3)


def test_rule_intervals_widen_with_the_series_spread_and_fit_their_residuals() -> None:
    rng = np.random.default_rng(0)
    steady = rng.poisson(20, (200, 60)).astype(float)
    active = np.ones_like(steady, dtype=bool)
    rq = fb.fit_residual_quantiles("moving_average", steady[:, :28], active[:, :28], steady[:, 28:58])
    daily, totals = fb.forecast("moving_average", steady[:, :28], active[:, :28], 30, rq)
    y = steady[:, 28:58]
    coverage = ((daily[..., 0] <= y) & (y <= daily[..., 2])).mean()
    assert 0.75 <= coverage <= 0.85
    assert (daily[..., 0] <= daily[..., 1]).all() and (daily[..., 1] <= daily[..., 2]).all()
    assert totals.shape == (200, 2, 3) and (totals[:, 1, 1] > totals[:, 0, 1]).all()
    normal = fb.ResidualQuantiles.normal(30)
    assert fb.ResidualQuantiles.from_dict(normal.to_dict(), 30).daily.shape == (30, 3)
    with pytest.raises(ValueError):
        fb.ResidualQuantiles.from_dict(normal.to_dict(), 7)
