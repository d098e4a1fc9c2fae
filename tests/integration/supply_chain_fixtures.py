"""A small supply-chain world for tests: a three-region network, a 60-day history and a model
quick-trained on it once per session (about 2 s), plus live scenarios on the same network."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from schemas import SupplyChainTransaction, SupplyChainVerdict
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings
from stream_app.simulation.supply_chain import NetworkConfig, SupplyChainConfig, supply_chain_events

SMALL_NETWORK = NetworkConfig(
    regions=3, manufacturers=5, distributors_per_region=2, wholesalers_per_region=3, pharmacies_per_region=12,
    hospitals_per_region=3, products=16,
)
SMALL = SupplyChainConfig(network=SMALL_NETWORK, attacks_per_day=4.0)
HISTORY_DAYS = 60
LIVE_START = datetime(2025, 3, 3, tzinfo=timezone.utc)


@lru_cache(maxsize=1)
def small_history() -> tuple[list[SupplyChainTransaction], list[SupplyChainVerdict]]:
    from stream_app.training.supply_chain import simulated_history

    return simulated_history(HISTORY_DAYS, seed=3, network=SMALL_NETWORK, attacks_per_day=SMALL.attacks_per_day)


_trained: dict[str, Path] = {}


def train_small(root: Path) -> Path:
    """Train once per session into `root` (later calls return the first directory)."""
    if "dir" not in _trained:
        from stream_app.training.supply_chain import TrainConfig, train_supply_chain

        transactions, verdicts = small_history()
        train_supply_chain(ModelRegistry(root), transactions, verdicts, TrainConfig.quick())
        _trained["dir"] = root
    return _trained["dir"]


@pytest.fixture
def one_torch_thread() -> Any:
    """Torch on one thread, as the worker and the trainer run it: two threads on this shared
    2-core machine make small models 10-100x slower under contention."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def supply_chain_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "dir" in _trained:
        return _trained["dir"]
    return train_small(tmp_path_factory.mktemp("supply_chain_store"))


def live_scenario(transactions: int, seed: int = 21) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first `transactions` live transactions on the small network, and every verdict about
    them (read on until the last one is due; messages as the simulator sends them)."""
    txs: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    topics = Settings().topics
    last = None
    for topic, event in supply_chain_events(Settings(), seed=seed, start=LIVE_START, config=SMALL):
        if topic == topics.supply_chain_transactions:
            if len(txs) < transactions:
                txs.append(event.value)
                last = event.value["ts"]
        else:
            verdicts.append(event.value)
        if len(txs) == transactions and event.value["ts"] > _plus_hours(last, SMALL.verdict_delay_hours[1] + 1):
            break
    shipments = {t["shipment_id"] for t in txs}
    return txs, [v for v in verdicts if v["shipment_id"] in shipments]


def _plus_hours(iso: Any, hours: float) -> str:
    from datetime import timedelta

    ts = datetime.fromisoformat(str(iso).replace("Z", "+00:00")) + timedelta(hours=hours)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def attack_kinds(verdicts: list[dict[str, Any]]) -> dict[str, str]:
    """shipment_id -> attack kind (confirmed verdicts)."""
    return {v["shipment_id"]: v["attack_kind"] for v in verdicts if v["verdict"] == "confirmed"}
