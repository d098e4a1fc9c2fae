"""Run one data set through the user's path and score it like a worker:

1. `stream-app train supply-chain --data history.jsonl` (no verdicts) into a temporary registry,
   through the CLI's own train function;
2. the registry's current version loaded by the scorer class the worker uses, fed the test weeks
   in time order in batches (its graph, statistics and custody state carried from batch to
   batch), every transaction's decision kept;
3. the same test weeks through simple baselines fitted on the same history.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmarks.supply_chain.baselines import BASELINES
from benchmarks.supply_chain.datasets import Dataset

BATCH = 256


@dataclass
class Scored:
    model: str
    flagged: np.ndarray  # (N,) per test transaction
    score: np.ndarray  # larger = more unusual (for plots)
    seconds: float
    notes: dict[str, Any] = field(default_factory=dict)


def train_through_cli(history: Path, registry_dir: Path, quick: bool) -> str:
    """What `stream-app train supply-chain --data FILE [--quick]` does; returns its output."""
    from stream_app.settings import Settings
    from stream_app.training.cli import train_streams

    settings = Settings(model_dir=registry_dir)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = train_streams(settings, ["supply-chain"], data=history, outcomes=None, quick=quick)
    if rc != 0:
        raise RuntimeError(f"training failed ({rc}): {out.getvalue()}")
    return out.getvalue()


def score_product(test: list[dict[str, Any]], registry_dir: Path) -> Scored:
    from schemas import SupplyChainTransaction
    from stream_app.registry import ModelRegistry
    from stream_app.scoring.supply_chain import SupplyChainScorer
    from stream_app.settings import Settings

    settings = Settings(model_dir=registry_dir)
    scorer = SupplyChainScorer.load(ModelRegistry(registry_dir), settings.supply_chain, background_refresh=False)
    if scorer.model is None:
        raise RuntimeError("the trained version could not be loaded")
    txs = [SupplyChainTransaction.model_validate(r) for r in test]
    flagged = np.zeros(len(txs), bool)
    evidence = np.zeros(len(txs))
    rules = np.zeros(len(txs), bool)
    started = time.perf_counter()
    try:
        for i in range(0, len(txs), BATCH):
            for j, r in enumerate(scorer.score_batch(txs[i:i + BATCH])):
                flagged[i + j] = r.score.flagged
                evidence[i + j] = r.score.detector_scores.get("evidence", 0.0)
                rules[i + j] = r.score.decision_source == "rule"
    finally:
        scorer.close()
    return Scored("product", flagged, evidence, time.perf_counter() - started,
                  {"rule_decided": rules, "threshold": scorer.model.ensemble.threshold if scorer.model.ensemble else None})


def score_baselines(data: Dataset, target_flag_rate: float = 0.01) -> list[Scored]:
    out = []
    for name, make in BASELINES.items():
        started = time.perf_counter()
        baseline = make()
        history_scores = baseline.fit(data.history)
        # threshold for the target flag rate on the history's last two weeks (normal, unlabelled)
        tail = history_scores[-max(1, len(history_scores) // 4):]
        threshold = float(np.quantile(tail, 1 - target_flag_rate))
        scores = baseline.score(data.test)
        out.append(Scored(name, scores >= threshold, scores, time.perf_counter() - started))
    return out


def metrics(data: Dataset, scored: Scored, families: list[str]) -> dict[str, Any]:
    family = np.array([data.family(r["event_id"]) for r in data.test], dtype=object)
    normal = family == "normal"
    out: dict[str, Any] = {}
    for f in families:
        m = family == f
        out[f] = float(scored.flagged[m].mean()) if m.any() else None
    attacks = ~normal
    out["detection"] = float(scored.flagged[attacks].mean()) if attacks.any() else None
    out["flag_rate"] = float(scored.flagged[normal].mean())
    out["attacks"] = int(attacks.sum())
    if scored.model == "product":  # the live scorer's whole cost, batches of BATCH (baselines' include fitting)
        out["us_per_tx"] = 1e6 * scored.seconds / max(1, len(data.test))
    return out


def per_kind(data: Dataset, scored: Scored) -> dict[str, tuple[int, int]]:
    """kind -> (flagged, shipments)."""
    found: dict[str, list[int]] = {}
    for r, f in zip(data.test, scored.flagged):
        label: Optional[tuple[str, str]] = data.labels.get(r["event_id"])
        if label:
            c = found.setdefault(label[0], [0, 0])
            c[0] += int(f)
            c[1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(found.items())}
