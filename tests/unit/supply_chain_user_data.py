"""A user's own supply network for tests: a small multi-tier parts network from the independent
benchmark generator (benchmarks/supply_chain/), five weeks of normal, unlabelled history written
as the JSON Lines `train supply-chain --data` reads, and a model trained on it through the CLI's
train function once per session."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from benchmarks.supply_chain import shapes
from benchmarks.supply_chain.world import DAY, World

START = datetime(2025, 6, 2, 6, tzinfo=timezone.utc)
WEEKS = 5


@lru_cache(maxsize=1)
def user_world() -> World:
    net = shapes.parts_tiers(3, part_makers=12, module_makers=5, plants=2, distributors=2, dealers=12, workshops=80,
                             raws=6, parts=12, modules=5, raw_suppliers=5)
    world = World(net, START, 3)
    world.run_until(world.t0 + WEEKS * 7 * DAY)
    return world


def user_history() -> list[dict[str, Any]]:
    return sorted(user_world().transactions, key=lambda r: (r["ts"], r["event_id"]))


def write_history(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in user_history()))
    return path


def train_on_user_data(registry_dir: Path, data_dir: Path) -> str:
    """`stream-app train supply-chain --data history.jsonl --quick` into `registry_dir` (no
    verdicts), as the benchmark trains; returns what the command printed."""
    from benchmarks.supply_chain.evaluate import train_through_cli

    return train_through_cli(write_history(data_dir / "history.jsonl"), registry_dir, quick=True)
