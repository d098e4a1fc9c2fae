"""Golden outputs on disk, and the rules by which a run's outputs equal them.

Per topic, messages are matched by id (harness.ID_FIELDS): the same ids must be there. Within a
message: the same fields; strings, booleans, integers and nulls equal (ids, decisions, severities,
error codes, event times, partitions and offsets, counts); floats within a tolerance (below);
free texts (reasons, explanation texts, error messages) equal once their numbers are masked,
since the numbers in them are the message's own fields rounded for reading, and a rounding may
flip with float noise. Wall-clock fields are not kept at all.

Tolerances. Two runs on one machine differ by at most ~1e-6 relative (batches of other sizes
through the same float32 models), so the defaults leave two orders of magnitude: rel 1e-4 / abs
1e-5. Looser where a number is an aggregate of many such values (explanation contributions,
counterfactual scores, drift window statistics): rel 1e-3 / abs 1e-4. Where the product rounds a
number before publishing it, the tolerance covers one step of that rounding, which noise can
flip: demand quantiles and totals (3 decimals), supply-chain detector scores and demand alert
scores and confidences (4 decimals).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from tests.golden.harness import ID_FIELDS, Outputs
from tests.golden.thresholds import events_of

# Stamped with the worker's clock when the message was made.
WALL_CLOCK = frozenset({"created_at", "failed_at", "detected_at"})
TEXT_FIELDS = frozenset({"reason", "explanation", "summary", "text", "error_message"})
# Timing-dependent fields, not compared (each one a finding about the product):
# * a drift event's event_ts is the time of the partition's last event in the batch whose values
#   tripped the detector (agents/drift.py, DriftTracker.observe), not of the value that tripped
#   it, so it moves with the batch boundaries, which fall where fetches happen to end;
# * a demand alert's inputs name only those of its event_ids (a day's or a week's sales) whose
#   messages were in the batch that closed the day (agents/pipeline.py, with_inputs), so they
#   too depend on the batch boundaries. Maintenance and supply-chain alerts answer the one event
#   of the batch: their inputs are compared.
# An alert's chain link hashes its exact figures (compared here within float tolerance) and its
# place among its partition's alerts: checked by tests/unit/test_audit_chain.py and
# tests/integration/test_audit_trail.py, not against golden files.
NOT_COMPARED: dict[str, Callable[[dict[str, Any]], set[str]]] = {
    "drift-events": lambda message: {"event_ts"},
    "alerts": lambda message: {"inputs", "chain"} if str(message.get("kind", "")).startswith("demand.") else {"chain"},
    "explanations": lambda message: {"chain"},
}
REL, ABS = 1e-4, 1e-5
AGGREGATE = (1e-3, 1e-4)
# (topic, field path without list indices) -> (rel, abs); by prefix, the longest wins.
TOLERANCES: dict[tuple[str, str], tuple[float, float]] = {
    ("explanations", ".features"): AGGREGATE,
    ("explanations", ".time_steps"): AGGREGATE,
    ("explanations", ".counterfactuals"): AGGREGATE,
    ("explanations", ".rules"): AGGREGATE,
    ("drift-events", ""): AGGREGATE,
    ("demand-forecasts", ".horizon"): (REL, 1.5e-3),
    ("demand-forecasts", ".total_"): (REL, 1.5e-3),
    ("demand-forecasts", ".confidence"): (REL, 1.5e-4),
    ("supply-chain-scores", ".detector_scores"): (REL, 1.5e-4),
    ("alerts", ".score"): (REL, 1.5e-4),
    ("alerts", ".confidence"): (REL, 1.5e-4),
}
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
# Counterparties with equal counts are listed in the order the graph first saw their edges,
# which is the order the graph follower happened to read the partitions in.
_TIED_LISTS = re.compile(r"^(.* usually (?:ships to|receives from) )(.*)\.$")
_INDEX = re.compile(r"\[\d+\]")


def mask_numbers(text: str) -> str:
    lines = []
    for line in _NUMBER.sub("#", text).splitlines():
        tied = _TIED_LISTS.match(line)
        lines.append(f"{tied.group(1)}{', '.join(sorted(tied.group(2).split(', ')))}." if tied else line)
    return "\n".join(lines)


def tolerance(topic: str, path: str) -> tuple[float, float]:
    field = _INDEX.sub("", path)
    best = max((p for t, p in TOLERANCES if t == topic and field.startswith(p)), key=len, default=None)
    return TOLERANCES[(topic, best)] if best is not None else (REL, ABS)


def normalize(outputs: Outputs) -> Outputs:
    """One message per id (at-least-once delivery may repeat one), sorted by id, without
    wall-clock fields."""
    golden: Outputs = {}
    for topic, messages in outputs.items():
        by_id: dict[str, dict[str, Any]] = {}
        for message in messages:
            by_id.setdefault(message[ID_FIELDS[topic]], {k: v for k, v in message.items() if k not in WALL_CLOCK})
        golden[topic] = [by_id[i] for i in sorted(by_id)]
    return golden


def write_expected(golden: Outputs, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for topic, messages in golden.items():
        text = "".join(json.dumps(m, sort_keys=True) + "\n" for m in messages).encode()
        # mtime 0: the same outputs give the same bytes, so a recapture shows as no change
        (folder / f"{topic}.jsonl.gz").write_bytes(gzip.compress(text, mtime=0))


def read_expected(folder: Path) -> Outputs:
    return {topic: [json.loads(line) for line in gzip.decompress((folder / f"{topic}.jsonl.gz").read_bytes()).splitlines()]
            for topic in ID_FIELDS}


def comparable(topic: str, message: dict[str, Any]) -> dict[str, Any]:
    left_out = NOT_COMPARED.get(topic, lambda m: set())(message)
    return {k: v for k, v in message.items() if k not in left_out}


def differences(topic: str, expected: Any, actual: Any, path: str = "") -> Iterator[str]:
    """Where `actual` differs from `expected` beyond the rules above."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted((set(expected) | set(actual)) - WALL_CLOCK):
            where = f"{path}.{key}"
            if key not in actual or key not in expected:
                yield f"{where}: {'missing' if key not in actual else 'unexpected'}"
            elif key in TEXT_FIELDS and isinstance(expected[key], str) and isinstance(actual[key], str):
                if mask_numbers(expected[key]) != mask_numbers(actual[key]):
                    yield f"{where}: {expected[key]!r} != {actual[key]!r}"
            else:
                yield from differences(topic, expected[key], actual[key], where)
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            yield f"{path}: {len(expected)} items != {len(actual)}"
        else:
            for i, (e, a) in enumerate(zip(expected, actual)):
                yield from differences(topic, e, a, f"{path}[{i}]")
    elif _number(expected) and _number(actual) and (isinstance(expected, float) or isinstance(actual, float)):
        rel, abs_ = tolerance(topic, path)
        if not math.isclose(expected, actual, rel_tol=rel, abs_tol=abs_):
            yield f"{path}: {expected!r} != {actual!r} (tolerance rel {rel:g}, abs {abs_:g})"
    elif type(expected) is not type(actual) or expected != actual:
        yield f"{path}: {expected!r} != {actual!r}"


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def compare(expected: Outputs, actual: Outputs, excused: set[str] = frozenset()) -> list[str]:
    """Every difference of a run's (normalized) outputs from the golden ones, per topic and id.
    Messages answering an `excused` event id (a decision on its threshold, thresholds.py) may
    differ or be missing or extra."""
    alerts = {m["alert_id"]: m for m in expected.get("alerts", []) + actual.get("alerts", [])}
    found: list[str] = []
    for topic, golden in expected.items():
        field = ID_FIELDS[topic]
        want = {m[field]: m for m in golden}
        got = {m[field]: m for m in actual.get(topic, [])}
        for i in sorted(set(want) | set(got)):
            message = want.get(i) or got[i]
            if events_of(message, alerts) & excused:
                continue
            if i not in got:
                found.append(f"{topic}: missing {field} {i}")
            elif i not in want:
                found.append(f"{topic}: unexpected {field} {i}")
            else:
                found += [f"{topic} {i}{d}" for d in differences(topic, comparable(topic, want[i]), comparable(topic, got[i]))]
    return found


def repeats_that_differ(outputs: Outputs) -> list[str]:
    """At-least-once delivery may publish a message twice; its id promises the same content."""
    found: list[str] = []
    for topic, messages in outputs.items():
        first: dict[str, dict[str, Any]] = {}
        for message in messages:
            i = message[ID_FIELDS[topic]]
            if i in first:
                found += [f"{topic} {i} repeated{d}"
                          for d in differences(topic, comparable(topic, first[i]), comparable(topic, message))]
            first.setdefault(i, message)
    return found


def close_differences(a: Any, b: Any, path: str = "", rel: float = 1e-4, abs_: float = 1e-5) -> list[str]:
    """Where two plain-data results differ beyond float32 rounding (runs of one scorer cut into
    batches differently: tests/unit/test_scoring_batches.py, tests/contract)."""
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= max(abs_, rel * max(abs(a), abs(b))) else [f"{path}: {a} != {b}"]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: fields {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in close_differences(a[k], b[k], f"{path}.{k}", rel, abs_)]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in close_differences(x, y, f"{path}[{i}]", rel, abs_)]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
