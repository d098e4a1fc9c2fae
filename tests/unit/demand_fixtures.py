"""Shared by the demand unit tests: sales events by day, and a demand model trained once per test
process on a short simulated history (a few seconds)."""

from __future__ import annotations

import functools
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from schemas.sales import SalesEvent
from stream_app.registry import ModelRegistry

DAY0 = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday
DAY0_INDEX = int(DAY0.timestamp() // 86400)


def sale(event_id: str, day: int, hour: float = 12.0, units: float = 1.0, sku: str = "bk-1", market: str = "DE", **extra: Any) -> SalesEvent:
    return SalesEvent(event_id=event_id, ts=DAY0 + timedelta(days=day, hours=hour), sku=sku, market=market,
                      units=units, unit_price=10.0, **extra)


@functools.lru_cache(maxsize=1)
def quick_model_dir() -> Path:
    """A registry holding demand v1, trained quickly on 330 simulated days of 8 SKUs. Two epochs
    need not beat the rule fallback on validation; the tests here exercise the model, so it
    serves regardless (serve="model")."""
    from stream_app.training.demand import TrainConfig, simulated_history, train_demand

    root = Path(tempfile.mkdtemp(prefix="demand-model-"))
    sales, calendar = simulated_history(n_skus=8, days=330, seed=1)
    train_demand(ModelRegistry(root), sales, calendar, TrainConfig.quick(epochs=2, samples_per_epoch=768, max_validation_samples=800,
                                                                           serve="model"))
    return root
