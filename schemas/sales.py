"""Sales events and the known-future calendar (campaigns, holidays, launches)."""

from __future__ import annotations

from datetime import date
from typing import Literal, Optional

from pydantic import Field

from schemas.common import EntityId, FiniteFloat, InputEvent, Name


class SalesEvent(InputEvent):
    sku: EntityId
    market: Name
    units: FiniteFloat = Field(ge=0)
    unit_price: FiniteFloat = Field(ge=0)
    channel: Optional[Name] = None
    promo: bool = False
    campaign_id: Optional[EntityId] = None


class CalendarEntry(InputEvent):
    """A known future covariate for a market (and optionally one SKU) over a date range."""

    kind: Literal["holiday", "campaign", "launch", "media"]
    market: Name
    sku: Optional[EntityId] = None
    start: date
    end: date
    intensity: FiniteFloat = 1.0
