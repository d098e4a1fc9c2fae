"""Demand forecasting: sales events, keyed by SKU x market; the sales themselves are the truth."""

from __future__ import annotations

from typing import Any, Sequence

from schemas import SalesEvent
from stream_app.scoring.demand import MODEL_NAME
from stream_app.streams import StreamDeclaration


def drift_values(events: Sequence[SalesEvent], results: Sequence[Any]) -> dict[str, list[float]]:
    """Units and prices as sold, and the forecasts' 7-day P50 and confidence. `results`: the
    scorer's per-event results, each with the day forecasts it closed (`forecasts`)."""
    forecasts = [fr.forecast for result in results for fr in result.forecasts]
    return {
        "units": [event.units for event in events],
        "unit_price": [event.unit_price for event in events],
        "forecast_7d_p50": [f.total_7d.p50 for f in forecasts],
        "confidence": [f.confidence for f in forecasts],
    }


DEMAND = StreamDeclaration(
    name="demand", model_name=MODEL_NAME, event_model=SalesEvent, truth_model=None,
    input_topic="sales_events", truth_topic=None, section="demand",
    scorer_agent="demand-forecaster", truth_agent=None, key_of=lambda sale: f"{sale.sku}/{sale.market}",
    drift_values=drift_values, distribution=("forecast_7d_p50", "confidence"),
)
