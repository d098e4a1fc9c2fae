"""Sales events and the known-future calendar (campaigns, holidays, launches)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, Optional

from pydantic import Field, StrictBool

from schemas.common import EntityId, FiniteFloat, InputEvent, IsoDate, Name, OutputMessage, OutputPart


class SalesEvent(InputEvent):
    sku: EntityId
    market: Name
    units: FiniteFloat = Field(ge=0)
    unit_price: FiniteFloat = Field(ge=0)
    channel: Optional[Name] = None
    promo: StrictBool = False  # true or false: "yes" and 1 are type errors
    campaign_id: Optional[EntityId] = None


class CalendarEntry(InputEvent):
    """A known future covariate for a market (and optionally one SKU) over a date range."""

    kind: Literal["holiday", "campaign", "launch", "media"]
    market: Name
    sku: Optional[EntityId] = None
    start: IsoDate
    end: IsoDate
    intensity: FiniteFloat = 1.0


class ForecastDay(OutputPart):
    """Quantiles of one horizon day's units."""

    day: date
    horizon_days: int = Field(ge=1)
    p10: float = Field(ge=0)
    p50: float = Field(ge=0)
    p90: float = Field(ge=0)


class ForecastTotal(OutputPart):
    """Quantiles of the units over the next `days` days (not the sum of the daily quantiles)."""

    days: int = Field(ge=1)
    p10: float = Field(ge=0)
    p50: float = Field(ge=0)
    p90: float = Field(ge=0)


class DemandForecast(OutputMessage):
    """One per SKU x market per closed day: the forecast for the days after `day`, made when
    `day` closed (event time, UTC days, after the allowed lateness)."""

    forecast_id: str  # deterministic from sku, market, day and model version
    series_id: str  # "sku/market", the Kafka key of the series' sales
    sku: str
    market: str
    day: date  # the closed day this forecast answers; the horizon starts the day after
    units: float  # units sold on `day`, from `events_counted` sales events
    events_counted: int = Field(ge=0)
    # events that arrived after their day had closed, counted into that day's history since the
    # series' previous forecast (the earlier forecast is not re-issued)
    late_events: int = Field(0, ge=0)
    history_days: int = Field(ge=0)  # days of this series' history the forecast saw
    horizon: list[ForecastDay]
    total_7d: ForecastTotal
    total_30d: ForecastTotal
    confidence: float = Field(ge=0, le=1)
    decision_source: Literal["model", "rule"]
    reason: str
    model_name: str
    model_version: Optional[str]
    created_at: datetime
    # True on `demand-shadow-forecasts`: a candidate version's forecast, never acted on (no alerts).
    shadow: bool = False
