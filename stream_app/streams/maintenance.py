"""Predictive maintenance: sensor readings, keyed by machine; failures and repairs as truth."""

from __future__ import annotations

from typing import Sequence

from schemas import MaintenanceOutcome, SensorReading
from stream_app.scoring.maintenance import MODEL_NAME, ScoredReading
from stream_app.streams import StreamDeclaration


def drift_values(readings: Sequence[SensorReading], results: Sequence[ScoredReading]) -> dict[str, list[float]]:
    """Every sensor's raw values, the failure probability and the confidence."""
    values: dict[str, list[float]] = {}
    for reading in readings:
        for name, value in reading.sensors.items():
            if value is not None:
                values.setdefault(name, []).append(value)
    values["failure_probability"] = [r.fields["failure_probability"] for r in results]
    values["confidence"] = [r.fields["confidence"] for r in results]
    return values


MAINTENANCE = StreamDeclaration(
    name="maintenance", model_name=MODEL_NAME, event_model=SensorReading, truth_model=MaintenanceOutcome,
    input_topic="sensor_readings", truth_topic="maintenance_outcomes", section="maintenance",
    scorer_agent="maintenance-scorer", truth_agent="maintenance-outcomes", key_of=lambda reading: reading.machine_id,
    drift_values=drift_values, distribution=("failure_probability", "confidence"),
    truth_batch=100,  # each outcome is a machine's reset
)
