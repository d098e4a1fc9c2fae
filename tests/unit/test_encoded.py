"""Predictions published from their fields (stream_app/encoded.py) are what the schema's own model
would publish: the same JSON value, field for field, in the model's order."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from agents.maintenance import pipeline
from agents.publish import Outbox
from schemas import MaintenancePrediction
from stream_app.encoded import encode_fields
from stream_app.intake import RawMessage
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import MaintenanceSettings, Settings
from tests.unit.agent_fixtures import RecordingProducer
from tests.unit.maintenance_fixtures import fleet, readings_for, trained_model, write_artifact


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    model, features = trained_model()
    return write_artifact(tmp_path_factory.mktemp("store"), model, features)


@pytest.fixture
def scorer(registry: ModelRegistry) -> MaintenanceScorer:
    return MaintenanceScorer.load(registry, MaintenanceSettings())


def _readings(seed: int = 3) -> list:
    raw, _, _ = fleet(3, 30, seed=seed, missing=0.2)  # missing values: imputed sensors named
    out = []
    for m in range(3):
        out += readings_for(f"m{m}", raw[m], extra={"humidity": 0.4} if m == 1 else None)  # an unknown sensor
    return out


def test_each_prediction_encodes_as_the_schema_model_would(scorer: MaintenanceScorer) -> None:
    results = scorer.score_batch(_readings())
    assert any(r.fields["imputed_sensors"] for r in results) and any(r.fields["unknown_sensors"] for r in results)
    for r in results:
        model = r.prediction  # validates the fields
        encoded = encode_fields(r.fields)
        assert list(json.loads(encoded)) == list(MaintenancePrediction.model_fields)
        assert json.loads(encoded) == json.loads(model.model_dump_json())
        shadow = encode_fields(r.fields, shadow=True)
        assert json.loads(shadow) == json.loads(model.model_copy(update={"shadow": True}).model_dump_json())


def test_the_agent_publishes_the_encoded_predictions(scorer: MaintenanceScorer) -> None:
    readings = _readings(seed=4)
    messages = [RawMessage("sensor-readings", 0, i, r.machine_id.encode(), r.model_dump_json().encode())
                for i, r in enumerate(readings)]
    producer = RecordingProducer()
    with ThreadPoolExecutor(1) as executor:
        asyncio.run(pipeline(Settings(), scorer.score_batch, Outbox(producer), executor).process(messages))
    published = producer.on("maintenance-predictions")
    assert [p["event_id"] for p in published] == [r.event_id for r in readings]
    for p in published:
        assert MaintenancePrediction.model_validate(p).model_dump(mode="json") == p


def test_a_probability_out_of_range_fails_the_batch_as_validation_did(scorer: MaintenanceScorer) -> None:
    original = scorer._results

    def with_nan(b):  # noqa: ANN001 - the scorer's private batch
        b.p[:] = np.nan  # what a model broken at inference gives
        return original(b)

    scorer._results = with_nan  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="outside"):
        scorer.score_batch(_readings(seed=5)[:4])
