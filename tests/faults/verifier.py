"""Reads every output topic from the beginning and checks, per stream, that each input event was
answered and how many times:

* maintenance and supply chain: per event id, a prediction / score naming it, or a dead letter;
  and every maintenance prediction is the one an uninterrupted scorer makes (per-machine state
  survived the faults);
* demand: a sale gets no answer of its own. What it gets is the forecast of its series for the
  day it counts in, published when that day closes (or a dead letter). An uninterrupted
  DemandScorer fed the topic's messages partition by partition, in offset order (what the
  worker group was handed) says which forecasts are due and with which values
  (`demand_reference`); `verify_demand` checks the published ones against it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from schemas import SalesEvent, SensorReading
from stream_app.intake import RawMessage, decode_batch, limits_from_settings
from stream_app.registry import ModelRegistry
from stream_app.scoring.demand import DemandScorer
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import MaintenanceSettings, Settings
from tests.integration.kafka_clients import OutputReader, RawRecord


@dataclass
class Verdict:
    expected: int
    answered: int
    missing: list[str]
    duplicates: int
    duplicated_ids: int
    by_topic: dict[str, int] = field(default_factory=dict)
    stream: str = ""  # named: one stream of several, summarised without the topic counts

    def summary(self) -> str:
        if self.stream:
            return (f"{self.stream}: {self.expected} events sent, {self.answered} answered, {len(self.missing)} missing, "
                    f"{self.duplicates} duplicates (over {self.duplicated_ids} ids)")
        return (f"{self.expected} events, {self.answered} answered, {len(self.missing)} missing, "
                f"{self.duplicates} duplicate outputs over {self.duplicated_ids} ids; outputs {self.by_topic}")


def answered_ids(
    reader: OutputReader, broken: Mapping[str, str], outputs: str = "maintenance-predictions", source_topic: Optional[str] = None
) -> Counter[str]:
    """Event ids answered: the `outputs` messages (predictions, scores) name theirs; dead letters
    (of `source_topic` only, when given) carry the payload (or, for a payload too broken to name
    its event, its hash: `broken` maps sha256 -> event id)."""
    counts: Counter[str] = Counter(p["event_id"] for p in reader.messages[outputs])
    for letter in reader.messages["dead-letters"]:
        if source_topic is not None and letter["source_topic"] != source_topic:
            continue
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


def verify(
    reader: OutputReader,
    expected: Iterable[str],
    broken: Mapping[str, str] = {},
    outputs: str = "maintenance-predictions",
    source_topic: Optional[str] = None,
    stream: str = "",
) -> Verdict:
    expected = list(expected)
    counts = answered_ids(reader, broken, outputs, source_topic)
    missing = [e for e in expected if counts[e] == 0]
    dup_ids = [e for e in expected if counts[e] > 1]
    return Verdict(
        expected=len(expected),
        answered=len(expected) - len(missing),
        missing=missing,
        duplicates=sum(counts[e] - 1 for e in dup_ids),
        duplicated_ids=len(dup_ids),
        by_topic={t: len(v) for t, v in reader.messages.items()},
        stream=stream,
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


# --- demand ----------------------------------------------------------------------------------
Position = tuple[int, int]  # (partition, offset) of a sales message
SeriesDay = tuple[str, str]  # (series_id "sku/market", closed day ISO): one forecast
Answer = tuple[str, Any, Any]  # ("forecast", series_id, day) or ("dead-letter", partition, offset)


@dataclass
class DemandReference:
    """What an uninterrupted demand scorer publishes for the sales in the topic."""

    forecasts: dict[SeriesDay, dict[str, Any]]  # as published, without created_at
    dead_letters: dict[Position, str]  # error code
    # per sales message: the output that answers it; None while the day it counts in (or, for a
    # late sale or a resent copy, its series' next day) has not closed: nothing sent closed it
    answers: dict[Position, Optional[Answer]]


def _comparable(message: Any) -> dict[str, Any]:
    """A published message's JSON without the wall-clock field."""
    out = json.loads(message.model_dump_json()) if not isinstance(message, dict) else dict(message)
    out.pop("created_at", None)
    return out


def demand_reference(model_dir: Path, records: Sequence[RawRecord], topic: str = "sales-events") -> DemandReference:
    """Feed one DemandScorer, loaded as a worker loads it (no demand model in `model_dir`: the
    rule fallback, which is deterministic), the topic's messages partition by partition in
    offset order, decoded as the worker decodes them. Its state is per input partition, so this
    is the state a worker group should have whatever happened to its workers: the replay on
    assignment rebuilds it exactly (agents/demand.py), and a forecast depends only on the
    partition's days, not on the forecasts kept for alerts."""
    settings = Settings()
    scorer = DemandScorer.load(ModelRegistry(model_dir), settings.demand)
    limits = limits_from_settings(settings)
    ref = DemandReference({}, {}, {})
    for partition in sorted({r.partition for r in records}):
        messages = [RawMessage(topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in records if r.partition == partition]
        intake = decode_batch(messages, SalesEvent, limits)
        for letter in intake.dead_letters:
            ref.dead_letters[(partition, letter.offset)] = letter.error_code
        waiting: dict[str, list[tuple[str, Position]]] = {}  # series -> (day, position) not answered yet
        for event, origin in zip(intake.events, intake.origin):
            position = (partition, origin.offset)
            [result] = scorer.score_batch([event], [partition])
            # Days this sale closed: their forecasts answer the earlier sales of those days (a
            # sale never closes its own day), and late or resent ones of the series.
            for fr in result.forecasts:
                f = fr.forecast
                day = f.day.isoformat()
                ref.forecasts[(f.series_id, day)] = _comparable(f)
                still = []
                for sale_day, where in waiting.get(f.series_id, []):
                    if sale_day <= day:
                        ref.answers[where] = ("forecast", f.series_id, day)
                    else:
                        still.append((sale_day, where))
                waiting[f.series_id] = still
            if result.rejection is not None:  # too old, unknown market: a dead letter
                ref.dead_letters[position] = result.rejection.code
            else:
                sale_day = datetime.fromtimestamp(event.ts.timestamp(), timezone.utc).date().isoformat()  # the scorer's UTC day
                waiting.setdefault(f"{event.sku}/{event.market}", []).append((sale_day, position))
                ref.answers[position] = None
        for position in ref.dead_letters:
            if position[0] == partition:
                ref.answers[position] = ("dead-letter", *position)
    return ref


@dataclass
class DemandVerdict:
    sent: int  # sales messages in the topic
    answered: int
    pending: int  # their day still open at the end: no answer due
    missing: list[Position]  # sales whose answer is due and was not published
    missing_forecasts: list[SeriesDay]
    missing_dead_letters: list[Position]
    expected_forecasts: int
    expected_dead_letters: int
    duplicates: int  # forecasts and dead letters published more than once: the extra copies
    duplicated: int  # how many forecasts / dead letters have extra copies
    compared: int  # published forecasts (copies included) compared with the reference
    # forecast, which copy of it (1: the first published; in publication order, one series' forecasts
    # share an output partition), its differing fields (the first 3 of the horizon's)
    mismatched: list[tuple[SeriesDay, int, list[str]]]
    unexpected: list[Any]  # forecasts, dead letters the reference does not publish

    @property
    def complete(self) -> bool:
        return not (self.missing or self.missing_forecasts or self.missing_dead_letters)

    def summary(self) -> str:
        return (f"demand: {self.sent} sales sent, {self.answered} answered (by {self.expected_forecasts - len(self.missing_forecasts)}"
                f"/{self.expected_forecasts} forecasts of the days they closed, "
                f"{self.expected_dead_letters - len(self.missing_dead_letters)}/{self.expected_dead_letters} dead letters), "
                f"{self.pending} pending (day still open), {len(self.missing)} missing, "
                f"{self.duplicates} duplicates (over {self.duplicated} outputs); {self.compared} forecasts checked against "
                f"the reference: {len(self.mismatched)} differ, {len(self.unexpected)} unexpected outputs")


def _differences(published: Any, reference: Any, path: str = "") -> list[str]:
    """Where two JSON values differ: 'path: published != reference' per differing leaf."""
    if isinstance(published, dict) and isinstance(reference, dict):
        return [d for k in sorted(set(published) | set(reference))
                for d in _differences(published.get(k), reference.get(k), f"{path}.{k}")]
    if isinstance(published, list) and isinstance(reference, list) and len(published) == len(reference):
        return [d for i, (a, b) in enumerate(zip(published, reference)) for d in _differences(a, b, f"{path}[{i}]")]
    return [] if published == reference else [f"{path or '.'}: {published!r} != {reference!r}"]


def verify_demand(reader: OutputReader, ref: DemandReference, topic: str = "sales-events") -> DemandVerdict:
    published: Counter[SeriesDay] = Counter()
    mismatched, unexpected = [], []
    for f in reader.messages["demand-forecasts"]:
        key = (f["series_id"], f["day"])
        published[key] += 1
        expected = ref.forecasts.get(key)
        if expected is None:
            unexpected.append(("forecast", *key))
        elif diff := _differences(_comparable(f), expected):
            horizon = [d for d in diff if d.startswith(".horizon")]
            mismatched.append((key, published[key], [d for d in diff if not d.startswith(".horizon")] + horizon[:3]))
    letters: Counter[Position] = Counter(
        (d["partition"], d["offset"]) for d in reader.messages["dead-letters"] if d["source_topic"] == topic)
    unexpected += [("dead-letter", *p) for p in letters if p not in ref.dead_letters]

    def answered(position: Position, answer: Answer) -> bool:
        if letters[position]:  # any dead letter keeps the sale (for replay)
            return True
        return bool(published[answer[1:]]) if answer[0] == "forecast" else False

    due = {p: a for p, a in ref.answers.items() if a is not None}
    missing = [p for p, a in due.items() if not answered(p, a)]
    copies = [c for c in published.values() if c > 1] + [c for c in letters.values() if c > 1]
    return DemandVerdict(
        sent=len(ref.answers),
        answered=len(due) - len(missing),
        pending=len(ref.answers) - len(due),
        missing=missing,
        missing_forecasts=[k for k in ref.forecasts if not published[k]],
        missing_dead_letters=[p for p in ref.dead_letters if not letters[p]],
        expected_forecasts=len(ref.forecasts),
        expected_dead_letters=len(ref.dead_letters),
        duplicates=sum(c - 1 for c in copies),
        duplicated=len(copies),
        compared=sum(c for k, c in published.items() if k in ref.forecasts),
        mismatched=mismatched,
        unexpected=unexpected,
    )
