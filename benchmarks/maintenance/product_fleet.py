"""The product's own fleet simulator (stream_app.simulation.maintenance) as one case among the
independent ones: a training history of one fleet, and another fleet (other seed, other
machines) after it as the held-out period."""

from __future__ import annotations

from datetime import datetime, timedelta

from benchmarks.maintenance.dataset import Dataset, Part
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator


def _history(n: int, seed: int, start: datetime, prefix: str, lives: int) -> Part:
    history = FleetSimulator(FleetConfig(n_machines=n, seed=seed, start=start)).history(lives_per_machine=lives)
    part = Part()
    for r in history.readings:
        part.readings.append({**r, "machine_id": prefix + r["machine_id"], "event_id": prefix + r["event_id"]})
    for o in history.outcomes:
        part.outcomes.append({**o, "machine_id": prefix + o["machine_id"], "event_id": prefix + o["event_id"]})
    return part


def generate(quick: bool = False) -> Dataset:
    n_train, n_held = (30, 16) if quick else (80, 30)
    train = _history(n_train, 21, FleetConfig().start, "", 2)
    last = max(r["ts"] for r in train.readings)
    start = datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(days=1)
    heldout = _history(n_held, 22, start, "new-", 2)
    return Dataset("product-simulator", "the product's own fleet simulator (eight sensors, four failure modes, "
                   "readings every 30 minutes)", train, heldout)
