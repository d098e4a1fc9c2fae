"""The simulated world the golden models are trained on and the golden input is drawn from:
seeds, sizes and dates in one place, so the two build scripts agree. Changing anything here
changes the committed files only when those scripts are run again."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

from stream_app.settings import Settings
from stream_app.simulation.supply_chain import NetworkConfig, SupplyChainConfig, supply_chain_events

# Maintenance: the model learns from a fleet's runs to failure; the input is another fleet's
# live days (another seed, so other machines and lives).
MAINTENANCE_TRAIN_MACHINES, MAINTENANCE_TRAIN_SEED = 24, 7
MAINTENANCE_MACHINES, MAINTENANCE_SEED = 18, 5
MAINTENANCE_START = datetime(2026, 3, 2, tzinfo=timezone.utc)
MAINTENANCE_DAYS = 4

# Supply chain: a three-region network, small enough that its graph (the model's starting
# point) stays small. One simulated run: the model trains on its first SUPPLY_TRAIN_DAYS, the
# input is what follows. The input continues the history, so the worker goes on from the
# model's graph as it is; one far from it would be re-anchored to whichever transaction the
# worker happens to apply first, and every age and window in the graph would move with it.
SUPPLY_NETWORK = NetworkConfig(
    regions=3, manufacturers=5, distributors_per_region=2, wholesalers_per_region=3, pharmacies_per_region=12,
    hospitals_per_region=3, products=16,
)
SUPPLY_ATTACKS_PER_DAY = 4.0
SUPPLY_SEED = 21
SUPPLY_START = datetime(2025, 1, 6, tzinfo=timezone.utc)
SUPPLY_TRAIN_DAYS = 60
SUPPLY_CUT = SUPPLY_START + timedelta(days=SUPPLY_TRAIN_DAYS)
SUPPLY_CUT_TS = SUPPLY_CUT.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # as the simulator writes times: they compare as text

# Demand: the model learns from 400 days of 10 SKUs; the input is a few series of another
# seed's live orders, long enough for the model to take over (14 days) and to alert.
DEMAND_TRAIN_SKUS, DEMAND_TRAIN_DAYS, DEMAND_TRAIN_SEED = 10, 400, 3
DEMAND_SKUS, DEMAND_SEED = 4, 8
DEMAND_START = date(2025, 9, 1)
DEMAND_DAYS = 45


def supply_chain_run() -> Iterator[tuple[str, dict[str, Any]]]:
    """("transaction" | "verdict", message) in the order the simulator sends them, from SUPPLY_START."""
    config = SupplyChainConfig(network=SUPPLY_NETWORK, attacks_per_day=SUPPLY_ATTACKS_PER_DAY)
    transactions = Settings().topics.supply_chain_transactions
    for topic, event in supply_chain_events(Settings(), seed=SUPPLY_SEED, start=SUPPLY_START, config=config):
        yield ("transaction" if topic == transactions else "verdict"), event.value
