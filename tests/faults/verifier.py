"""Reads every output topic from the beginning and checks, per input event id, that each was
answered (a prediction or a dead letter) and how many times."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

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
        items = payload if isinstance(payload, list) else [payload]
        if letter.get("item_index") is not None:
            items = [items[letter["item_index"]]]
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
