"""The simulated streams by name: what `simulate`, `simulate --history` and the demo run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from stream_app.settings import Settings
from stream_app.simulation.maintenance import SimEvent

Events = Iterator[tuple[str, SimEvent]]


@dataclass(frozen=True)
class SimulatedStream:
    name: str
    # (settings, seed, size) -> live (topic, event) pairs; size: machines, SKUs, ...
    live: Callable[[Settings, int, Optional[int]], Events]
    # (seed, size, lives) -> history files' contents: {file name: events in the contract layout};
    # lives (runs to failure per machine) means something to maintenance only.
    history: Callable[[int, Optional[int], int], dict[str, list[dict[str, Any]]]]
    topics: Callable[[Settings], list[str]]
    # Events per second that make a watchable demo.
    demo_rate: float


def _maintenance_live(settings: Settings, seed: int, size: Optional[int]) -> Events:
    from stream_app.simulation.producer import maintenance_events

    return maintenance_events(settings, size or 50, seed)


def _maintenance_history(seed: int, size: Optional[int], lives: int = 1) -> dict[str, list[dict[str, Any]]]:
    from stream_app.simulation.maintenance import FleetConfig, FleetSimulator

    h = FleetSimulator(FleetConfig(n_machines=size or 50, seed=seed)).history(lives)
    return {"readings.jsonl": h.readings, "outcomes.jsonl": h.outcomes}


def _supply_chain_live(settings: Settings, seed: int, size: Optional[int]) -> Events:
    from stream_app.simulation.supply_chain import supply_chain_events

    return supply_chain_events(settings, seed)


def _supply_chain_history(seed: int, size: Optional[int], lives: int = 1) -> dict[str, list[dict[str, Any]]]:
    from stream_app.simulation.supply_chain import SupplyChainConfig, SupplyChainSimulator

    h = SupplyChainSimulator(SupplyChainConfig(seed=seed)).history(float(size or 120))
    return {"transactions.jsonl": h.transactions, "verdicts.jsonl": h.verdicts}


def _demand_live(settings: Settings, seed: int, size: Optional[int]) -> Events:
    from stream_app.simulation.demand import demand_events

    return demand_events(settings, seed, n_skus=size or 12)


def _demand_history(seed: int, size: Optional[int], lives: int = 1) -> dict[str, list[dict[str, Any]]]:
    from stream_app.simulation.demand import DemandConfig, DemandSimulator

    h = DemandSimulator(DemandConfig(n_skus=size or 40, seed=seed)).history(730)
    return {"sales.jsonl": h.sales, "calendar.jsonl": h.calendar}


STREAMS: dict[str, SimulatedStream] = {
    "maintenance": SimulatedStream(
        "maintenance", _maintenance_live, _maintenance_history,
        lambda s: [s.topics.sensor_readings, s.topics.maintenance_outcomes], demo_rate=80.0,
    ),
    "supply-chain": SimulatedStream(
        "supply-chain", _supply_chain_live, _supply_chain_history,
        lambda s: [s.topics.supply_chain_transactions, s.topics.supply_chain_verdicts], demo_rate=60.0,
    ),
    "demand": SimulatedStream(
        "demand", _demand_live, _demand_history,
        lambda s: [s.topics.sales_events, s.topics.demand_calendar], demo_rate=120.0,
    ),
}
