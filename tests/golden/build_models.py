"""Train the golden run's model versions once and keep only what workers load.

    python -m tests.golden.build_models

Run it only to replace the committed models on purpose (then recapture the expected outputs
with `python -m tests.golden.capture`): weights trained on another CPU or torch differ in
their last bits, and every golden figure moves with them. Each stream is trained by its own
trainer with its quick configuration on a small seeded simulated history, on one thread with
deterministic kernels (as tests/conftest.py trains), into a scratch registry; then the files the
scorers' `from_version` loaders read are copied to tests/golden/models/<stream>/v1/ beside a
CURRENT pointer. Reports, figures and baselines are left out: no worker reads them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from schemas import SupplyChainTransaction, SupplyChainVerdict
from stream_app.registry import CURRENT, MANIFEST, ModelRegistry
from tests.golden import world as w

MODELS = Path(__file__).parent / "models"
# What each stream's loader reads (stream_app/scoring/*: from_version); the rest stays behind.
SERVED_FILES = {
    "maintenance": ("model.pt",),
    "supply-chain": ("gnn.pt", "vae.pt", "hst_reference.npy", "graph.pt"),
    "demand": ("model.pt",),
}


def _train(registry: ModelRegistry) -> None:
    from stream_app.training import demand, maintenance, supply_chain
    from stream_app.training.demand_data import simulated_history as demand_history

    readings, outcomes = maintenance.simulated_history(n_machines=w.MAINTENANCE_TRAIN_MACHINES, seed=w.MAINTENANCE_TRAIN_SEED)
    maintenance.train_maintenance(registry, readings, outcomes, maintenance.TrainConfig.quick(tree_baseline=False))
    # The small network and short history keep graph.pt (the live graph's starting point) small.
    transactions, verdicts = _supply_chain_history()
    supply_chain.train_supply_chain(registry, transactions, verdicts, supply_chain.TrainConfig.quick())
    sales, calendar = demand_history(n_skus=w.DEMAND_TRAIN_SKUS, days=w.DEMAND_TRAIN_DAYS, seed=w.DEMAND_TRAIN_SEED)
    demand.train_demand(registry, sales, calendar, demand.TrainConfig.quick(serve="model"))  # the model's path is what is guarded


def _supply_chain_history() -> tuple[list[SupplyChainTransaction], list[SupplyChainVerdict]]:
    """The run's transactions before the cut and the verdicts known by then."""
    transactions, verdicts = [], []
    for kind, value in w.supply_chain_run():
        if value["ts"] >= w.SUPPLY_CUT_TS:
            break
        if kind == "transaction":
            transactions.append(SupplyChainTransaction.model_validate(value))
        else:
            verdicts.append(SupplyChainVerdict.model_validate(value))
    return transactions, verdicts


def _keep_served(registry: ModelRegistry, out: Path) -> None:
    for name, files in SERVED_FILES.items():
        version = registry.current(name)
        assert version is not None, f"no {name} model was trained"
        target = out / name / version.version
        target.mkdir(parents=True)
        shutil.copy(version.file(MANIFEST), target / MANIFEST)
        for f in files:
            shutil.copy(version.file(f), target / f)
        (out / name / CURRENT).write_text(version.version + "\n")


def main() -> None:
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        registry = ModelRegistry(Path(scratch) / "store")
        _train(registry)
        staged = Path(scratch) / "models"
        _keep_served(registry, staged)
        shutil.rmtree(MODELS, ignore_errors=True)
        shutil.copytree(staged, MODELS)
    for path in sorted(MODELS.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(MODELS)}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
