"""The product's own demand simulator (stream_app.simulation.demand) as one case among the
independent ones: two years of its daily sales history to train on, the days after them held out,
and its calendar (holidays, campaigns, launches, announced media mentions)."""

from __future__ import annotations

from datetime import timedelta

from benchmarks.demand.dataset import Dataset, split
from stream_app.features.demand import day_date
from stream_app.simulation.demand import DemandConfig, DemandSimulator

TRAIN_DAYS = 730
SEED = 11  # not the seed `stream-app train demand` simulates with when given no data


def generate(quick: bool = False) -> Dataset:
    n_skus, heldout_days = (20, 91) if quick else (40, 182)
    history = DemandSimulator(DemandConfig(n_skus=n_skus, seed=SEED)).history(TRAIN_DAYS + heldout_days)
    start = day_date(history.first_day + TRAIN_DAYS)
    train, held = split(history.sales, start)
    return Dataset("product-simulator",
                   f"the product's simulator: {n_skus} print-on-demand titles in up to 24 markets, "
                   f"{len(history.series)} series", train, held, history.calendar, start,
                   start + timedelta(days=heldout_days - 1))
