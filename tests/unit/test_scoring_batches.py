"""What scoring whole fetches relies on: a scorer's results do not depend on where a stream is
cut into batches. The agent now scores whatever the consumer fetched (a few readings on a paced
stream, thousands from a backlog), so the same readings must give the same predictions, alerts
and explanations whether they come one at a time, in uneven pieces or all at once. On the golden
models and input (tests/golden/)."""

from __future__ import annotations

import random
from typing import Any

from schemas import SensorReading
from stream_app.decoding import decode_message
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MODEL_NAME, MaintenanceScorer
from stream_app.settings import MaintenanceSettings
from tests.golden import harness
from tests.golden.compare import close_differences

WALL_CLOCK = {"created_at"}


def _readings(limit: int) -> list[SensorReading]:
    return [e for _, value in harness.read_input("sensor-readings") for e in decode_message(value, SensorReading).events][:limit]


def _scorer() -> MaintenanceScorer:
    version = ModelRegistry(harness.MODELS).current(MODEL_NAME)
    assert version is not None
    return MaintenanceScorer.from_version(version, MaintenanceSettings())


def _outputs(readings: list[SensorReading], sizes: list[int]) -> list[dict[str, Any]]:
    scorer, out, start = _scorer(), [], 0
    for size in sizes:
        for r in scorer.score_batch(readings[start:start + size]):
            out.append({"prediction": r.prediction.model_dump(exclude=WALL_CLOCK),
                        "alert": r.alert.model_dump(exclude=WALL_CLOCK) if r.alert else None,
                        "explanation": r.explanation.model_dump(exclude=WALL_CLOCK) if r.explanation else None})
        start += size
    assert start >= len(readings)
    return out


def test_maintenance_results_do_not_depend_on_how_the_stream_is_batched() -> None:
    readings = _readings(3000)
    whole = _outputs(readings, [len(readings)])
    assert any(o["alert"] for o in whole), "the input must make alerts for this to test them"
    rng = random.Random(3)
    uneven = []
    while sum(uneven) < len(readings):
        uneven.append(rng.choice([1, 2, 7, 70, 333]))
    for sizes in (uneven, [500] * (len(readings) // 500 + 1)):
        differences = close_differences(whole, _outputs(readings, sizes))
        assert not differences, f"{len(differences)} differences, first: {differences[:5]}"
