"""The simulated streams by name: what `simulate`, `simulate --history` and the demo run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Optional

from stream_app.settings import Settings
from stream_app.simulation.maintenance import SimEvent

Events = Iterator[tuple[str, SimEvent]]

# How far back each live stream's simulated clock starts. Events never go out before their own
# timestamp (clock.py), so a stream runs at full speed until its clock reaches the present and
# at the wall clock's pace after that; at the demo's rates (below) full speed lasts 1.5-2.5
# hours: maintenance, 40 machines at 80 readings/s, a simulated hour a second: 2.5 h; supply
# chain, ~1,100 transactions a simulated day at 60/s: 1.9 h; demand, 12 SKUs, ~175-200 orders a
# simulated day (by seed) at 30/s: 1.5-1.8 h.
MAINTENANCE_LOOKBACK = timedelta(days=365)
SUPPLY_CHAIN_LOOKBACK = timedelta(days=365)
DEMAND_LOOKBACK = timedelta(days=3 * 365)


@dataclass(frozen=True)
class SimulatedStream:
    name: str
    # (settings, seed, size, start=None) -> live (topic, event) pairs; size: machines, SKUs, ...;
    # start: when simulated time begins (default: `lookback` before now).
    live: Callable[..., Events]
    # (seed, size, lives) -> history files' contents: {file name: events in the contract layout};
    # lives (runs to failure per machine) means something to maintenance only.
    history: Callable[[int, Optional[int], int], dict[str, list[dict[str, Any]]]]
    topics: Callable[[Settings], list[str]]
    # Events per second that make a watchable demo.
    demo_rate: float
    lookback: timedelta


def _maintenance_live(settings: Settings, seed: int, size: Optional[int], start: Optional[datetime] = None) -> Events:
    from stream_app.simulation.producer import maintenance_events

    # Machines start healthy: what a live watcher sees of each fault starts at its onset.
    return maintenance_events(settings, size or 50, seed, start, healthy_start=True)


def _maintenance_history(seed: int, size: Optional[int], lives: int = 1) -> dict[str, list[dict[str, Any]]]:
    from stream_app.simulation.maintenance import FleetConfig, FleetSimulator

    h = FleetSimulator(FleetConfig(n_machines=size or 50, seed=seed)).history(lives)
    return {"readings.jsonl": h.readings, "outcomes.jsonl": h.outcomes}


# Attack instances per simulated day in a live stream: the training history's 12 make one likely
# attack a few seconds at demo rates, more than a person can read; 3 leave time for each.
LIVE_ATTACKS_PER_DAY = 3.0


def _supply_chain_live(settings: Settings, seed: int, size: Optional[int], start: Optional[datetime] = None) -> Events:
    from stream_app.simulation.supply_chain import SupplyChainConfig, supply_chain_events

    config = SupplyChainConfig(attacks_per_day=LIVE_ATTACKS_PER_DAY)
    return supply_chain_events(settings, seed, start, config=config)


def _supply_chain_history(seed: int, size: Optional[int], lives: int = 1) -> dict[str, list[dict[str, Any]]]:
    from stream_app.simulation.supply_chain import SupplyChainConfig, SupplyChainSimulator

    h = SupplyChainSimulator(SupplyChainConfig(seed=seed)).history(float(size or 120))
    return {"transactions.jsonl": h.transactions, "verdicts.jsonl": h.verdicts}


def _demand_live(settings: Settings, seed: int, size: Optional[int], start: Optional[datetime] = None) -> Events:
    from stream_app.simulation.demand import demand_events

    return demand_events(settings, seed, start, n_skus=size or 12)


def _demand_history(seed: int, size: Optional[int], lives: int = 1) -> dict[str, list[dict[str, Any]]]:
    from stream_app.simulation.demand import DemandConfig, DemandSimulator

    h = DemandSimulator(DemandConfig(n_skus=size or 40, seed=seed)).history(730)
    return {"sales.jsonl": h.sales, "calendar.jsonl": h.calendar}


STREAMS: dict[str, SimulatedStream] = {
    "maintenance": SimulatedStream(
        "maintenance", _maintenance_live, _maintenance_history,
        lambda s: [s.topics.sensor_readings, s.topics.maintenance_outcomes], demo_rate=80.0,
        lookback=MAINTENANCE_LOOKBACK,
    ),
    "supply-chain": SimulatedStream(
        "supply-chain", _supply_chain_live, _supply_chain_history,
        lambda s: [s.topics.supply_chain_transactions, s.topics.supply_chain_verdicts], demo_rate=60.0,
        lookback=SUPPLY_CHAIN_LOOKBACK,
    ),
    "demand": SimulatedStream(
        "demand", _demand_live, _demand_history,
        # A simulated day every ~6 s: the model takes a series over after its first 14 days.
        lambda s: [s.topics.sales_events, s.topics.demand_calendar], demo_rate=30.0,
        lookback=DEMAND_LOOKBACK,
    ),
}
