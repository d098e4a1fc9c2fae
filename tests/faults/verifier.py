"""Reads every output topic from the beginning and checks, per input event id, that each was
answered (a prediction or a dead letter) and how many times; and that every prediction is the
one an uninterrupted scorer makes (per-machine state survived the faults)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from schemas import SensorReading
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import MaintenanceSettings
from tests.integration.kafka_clients import OutputReader


@dataclass
class Verdict:
    expected: int
    answered: int
    missing: list[str]
    duplicates: int
    duplicated_ids: int
    by_topic: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.expected} events, {self.answered} answered, {len(self.missing)} missing, "
                f"{self.duplicates} duplicate outputs over {self.duplicated_ids} ids; outputs {self.by_topic}")


def answered_ids(reader: OutputReader, broken: Mapping[str, str]) -> Counter[str]:
    """Event ids answered: predictions name theirs; dead letters carry the payload (or, for a
    payload too broken to name its event, its hash: `broken` maps sha256 -> event id)."""
    counts: Counter[str] = Counter(p["event_id"] for p in reader.messages["maintenance-predictions"])
    for letter in reader.messages["dead-letters"]:
        if letter["payload_sha256"] in broken:
            counts[broken[letter["payload_sha256"]]] += 1
            continue
        try:
            payload = json.loads(letter["payload"])
        except ValueError:
            continue
        # the whole message (an object, or an array refused whole), or one bad array element
        items = payload if isinstance(payload, list) and letter.get("item_index") is None else [payload]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("event_id"), str):
                counts[item["event_id"]] += 1
    return counts


def verify(reader: OutputReader, expected: Iterable[str], broken: Mapping[str, str] = {}) -> Verdict:
    expected = list(expected)
    counts = answered_ids(reader, broken)
    missing = [e for e in expected if counts[e] == 0]
    dup_ids = [e for e in expected if counts[e] > 1]
    return Verdict(
        expected=len(expected),
        answered=len(expected) - len(missing),
        missing=missing,
        duplicates=sum(counts[e] - 1 for e in dup_ids),
        duplicated_ids=len(dup_ids),
        by_topic={t: len(v) for t, v in reader.messages.items()},
    )


@dataclass
class StateCheck:
    """Every published prediction against one uninterrupted scorer's over the same input."""

    compared: int
    mismatched: list[tuple[str, float, float]]  # event id, published, reference probability
    max_difference: float

    def summary(self) -> str:
        return (f"{self.compared} predictions checked against the reference state: {len(self.mismatched)} differ "
                f"(max |dp| {self.max_difference:.2g})")


def reference_probabilities(model_dir: Path, readings: Sequence[dict[str, Any]], batch: int = 500) -> dict[str, float]:
    """Failure probability per event id from one scorer that sees every reading once, in the
    order sent (each machine's order is its partition's order): the per-machine state a worker
    group should have, whatever happened to its workers."""
    scorer = MaintenanceScorer.load(ModelRegistry(model_dir), MaintenanceSettings())
    events = [SensorReading.model_validate(r) for r in readings]
    out: dict[str, float] = {}
    for i in range(0, len(events), batch):
        for result in scorer.score_batch(events[i : i + batch], explain=False):
            out[result.prediction.event_id] = result.prediction.failure_probability
    return out


def check_state(reader: OutputReader, reference: Mapping[str, float], tolerance: float = 1e-3) -> StateCheck:
    mismatched, worst, compared = [], 0.0, 0
    for p in reader.messages["maintenance-predictions"]:
        expected = reference.get(p["event_id"])
        if expected is None:
            continue
        compared += 1
        diff = abs(p["failure_probability"] - expected)
        worst = max(worst, diff)
        if diff > tolerance:
            mismatched.append((p["event_id"], p["failure_probability"], expected))
    return StateCheck(compared, mismatched, worst)
