"""Live accuracy counters per model version, written by workers, read by the promotion gate.

    model_store/<name>/live/<version>.json            one writer, or
    model_store/<name>/live/<version>@<worker>.json   one file per worker (summed when read)

    {"version": "v4", "since": "2026-11-22T08:00:00+00:00", "updated_at": "...",
     "scored": 120000, "alerts": 40, "outcomes_alerted": 18, "outcomes_missed": 2,
     "false_alerts": 6, "evaluated": 0, "metrics": {"wape": 0.41}}

`since` starts the counting window. A worker that shadows a candidate writes both versions'
counters with the same `since` (counting the same events), and the gate compares live
evidence only across records of one window. Each file is replaced whole (write, rename).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from stream_app.registry import ModelRegistry

LIVE_DIR = "live"
_WORKER_RE = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class LiveStats:
    version: str
    since: str  # UTC ISO start of the counting window
    scored: int = 0  # events scored (served, or in shadow)
    alerts: int = 0  # alerts raised (or that would have been, in shadow)
    outcomes_alerted: int = 0  # ground-truth incidents (failure, confirmed attack) alerted before
    outcomes_missed: int = 0  # incidents not alerted before
    false_alerts: int = 0  # alerts no incident followed within the horizon
    evaluated: int = 0  # scored items whose truth is known: the basis of `metrics`
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. wape, pinball (demand)
    updated_at: str = ""

    @property
    def outcomes(self) -> int:
        return self.outcomes_alerted + self.outcomes_missed

    def ground_truth(self, basis: str) -> int:
        return self.outcomes if basis == "outcomes" else self.evaluated

    def derived(self) -> dict[str, float]:
        """The metrics the gate compares: the free-form ones plus rates from the counters."""
        out = dict(self.metrics)
        if self.outcomes:
            out["recall"] = self.outcomes_alerted / self.outcomes
        if self.scored:
            out["false_alerts_per_1k"] = 1000.0 * self.false_alerts / self.scored
        return out


def live_dir(registry: ModelRegistry, name: str) -> Path:
    return registry.directory(name) / LIVE_DIR


def write_live(registry: ModelRegistry, name: str, stats: LiveStats, worker: str = "") -> Path:
    if worker and not _WORKER_RE.fullmatch(worker):
        raise ValueError(f"worker id {worker!r} must be letters, digits, '.', '_' or '-'")
    directory = live_dir(registry, name)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / (f"{stats.version}@{worker}.json" if worker else f"{stats.version}.json")
    stamped = replace(stats, updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    fd, tmp = tempfile.mkstemp(prefix=".live-", dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(stamped), f, sort_keys=True)
    os.replace(tmp, target)
    return target


def read_live(registry: ModelRegistry, name: str, version: str) -> Optional[LiveStats]:
    """The version's counters summed over its files of the latest window; None without any."""
    directory = live_dir(registry, name)
    shards = []
    for path in [directory / f"{version}.json", *sorted(directory.glob(f"{version}@*.json"))]:
        try:
            shards.append(LiveStats(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):  # absent, or not a counters file
            continue
    if not shards:
        return None
    since = max(s.since for s in shards)
    return _merge([s for s in shards if s.since == since])


def _merge(shards: list[LiveStats]) -> LiveStats:
    counters = ("scored", "alerts", "outcomes_alerted", "outcomes_missed", "false_alerts", "evaluated")
    totals = {c: sum(getattr(s, c) for s in shards) for c in counters}
    # Workers' free-form metrics are averages over their own items: weight them by those items.
    metrics: dict[str, float] = {}
    for key in {k for s in shards for k in s.metrics}:
        have = [s for s in shards if key in s.metrics]
        weight = sum(max(s.evaluated, 1) for s in have)
        metrics[key] = sum(s.metrics[key] * max(s.evaluated, 1) for s in have) / weight
    first = shards[0]
    return LiveStats(first.version, first.since, metrics=metrics, updated_at=max(s.updated_at for s in shards), **totals)
