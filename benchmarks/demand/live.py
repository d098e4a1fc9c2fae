"""One data set through the user's path:

1. `stream-app train demand --data train-sales.jsonl --outcomes calendar.jsonl [--quick]` into a
   temporary registry, through the CLI's own train function;
2. the registry's current version loaded as a worker loads it (DemandScorer.load), with the
   calendar file loaded as the worker loads DEMAND__CALENDAR_FILE;
3. the training sales replayed as a worker rebuilds a partition from the retained topic (days
   close without forecasts), then the held-out sales decoded by the worker's decoder and fed in
   time order in batches of the worker's size: a day closes when the next day's sales pass its
   end plus the allowed lateness, and the forecasts that ride on the closing event are kept.

A version whose training found the rule fallback better on validation serves the rule (manifest
`serving`); `force_model` serves its transformer all the same, to measure the model itself.

All series go to one input partition: the partition's watermark closes every series' day at
once, as it does on each partition of a worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time as clock, timedelta, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from stream_app.features.demand import day_index
from stream_app.scoring.demand_fallback import ResidualQuantiles



@dataclass
class Streamed:
    """The live scorer's forecasts, one row per (series, origin day)."""

    series: list[str]  # "sku/market" per row
    origin: np.ndarray  # (N,) days since the epoch: the closed day the forecast was made at
    daily: np.ndarray  # (N, H, 3) P10 / P50 / P90 per horizon day
    totals: np.ndarray  # (N, 2, 3) the 7- and 30-day totals
    by_model: np.ndarray  # (N,) the model decided (else the rule fallback)
    fallback_method: str
    residuals: ResidualQuantiles
    history_days: int
    version: str
    rules_serve: Optional[str]  # why the version serves its rule fallback; None: its model serves
    seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    failed_days: list[date] = field(default_factory=list)


def train_through_cli(sales: Path, calendar: Optional[Path], registry_dir: Path, quick: bool) -> str:
    """What `stream-app train demand --data SALES [--outcomes CALENDAR] [--quick]` does; returns
    its output."""
    from stream_app.settings import Settings
    from stream_app.training.cli import train_streams

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = train_streams(Settings(model_dir=registry_dir), ["demand"], data=sales, outcomes=calendar, quick=quick)
    if rc != 0:
        raise RuntimeError(f"training failed ({rc}): {out.getvalue()}")
    return out.getvalue()


def stream(registry_dir: Path, paths: dict[str, Path], heldout_end: date, calendar: bool = True,
           force_model: bool = False) -> Streamed:
    """`paths`: the data set's files (Dataset.write); `calendar`: load its calendar file (a
    worker without DEMAND__CALENDAR_FILE and an empty calendar topic has none)."""
    import torch

    from schemas.sales import SalesEvent
    from stream_app.decoding import decode_message
    from stream_app.intake import limits_from_settings
    from stream_app.registry import ModelRegistry
    from stream_app.scoring.demand import MODEL_NAME, DemandScorer
    from stream_app.scoring.demand_model import LoadedDemandModel
    from stream_app.settings import Settings
    from stream_app.training.demand_data import load_calendar

    settings = Settings(model_dir=registry_dir)
    registry = ModelRegistry(registry_dir)
    scorer = DemandScorer.load(registry, settings.demand)  # as a worker loads it
    version = registry.current(MODEL_NAME)
    if scorer.model_version is None or version is None:
        raise RuntimeError(f"the trained version could not be loaded: {scorer.unavailable_reason}")
    model = LoadedDemandModel.from_version(version)
    rules_serve = getattr(model, "rules_serve", None)
    if force_model and rules_serve is not None:
        scorer = DemandScorer(settings.demand, dataclasses.replace(model, rules_serve=None))
    if calendar:
        scorer.update_calendar(load_calendar(paths["calendar"]).records)
    limits = limits_from_settings(settings)
    now = datetime.combine(heldout_end + timedelta(days=1), clock(), tzinfo=timezone.utc)  # as if fed live

    def decoded(path: Path) -> list[SalesEvent]:
        events: list[SalesEvent] = []
        with open(path, "rb") as f:
            for line in f:
                d = decode_message(line.rstrip(b"\n"), SalesEvent, limits, now=now)
                if d.failures:
                    raise ValueError(f"{path}: the worker's decoder rejects {d.failures[0]}")
                events += d.events
        return events

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker runs (stream_app/worker.py)
    try:
        scorer.replay(decoded(paths["sales"]))
        held = decoded(paths["heldout"])
        started = time.perf_counter()
        rows: list[tuple[str, int, np.ndarray, np.ndarray, bool]] = []
        outcomes: Counter[str] = Counter()
        failed: list[date] = []
        batch = settings.demand.batch_max
        for i in range(0, len(held), batch):
            for result in scorer.score_batch(held[i:i + batch]):
                outcomes[result.outcome] += 1
                failed += result.failed_days
                for fr in result.forecasts:
                    f = fr.forecast
                    daily = np.array([[d.p10, d.p50, d.p90] for d in f.horizon])
                    totals = np.array([[t.p10, t.p50, t.p90] for t in (f.total_7d, f.total_30d)])
                    rows.append((f.series_id, day_index(f.day), daily, totals, f.decision_source == "model"))
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    if not rows:
        raise RuntimeError(f"the live scorer made no forecasts ({dict(outcomes)}; days failed: {failed[:5]})")
    return Streamed(
        [r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.int64), np.stack([r[2] for r in rows]),
        np.stack([r[3] for r in rows]), np.array([r[4] for r in rows], dtype=bool), scorer.fallback_method,
        scorer.residuals, scorer.history_days, str(scorer.model_version), rules_serve, seconds, outcomes, failed,
    )
