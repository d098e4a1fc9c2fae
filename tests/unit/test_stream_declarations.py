"""Each stream is declared once (stream_app/streams/) and registered by the one generic agent
module (agents/stream_agent.py): the app built from the declarations subscribes each stream's
topics with its agents, and each declaration agrees with the scorer it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.app import create_app
from stream_app.settings import Settings
from stream_app.streams.demand import DEMAND
from stream_app.streams.maintenance import MAINTENANCE
from stream_app.streams.supply_chain import SUPPLY_CHAIN

DECLARATIONS = (MAINTENANCE, SUPPLY_CHAIN, DEMAND)


@pytest.fixture
def app(tmp_path: Path) -> object:
    return create_app(Settings(model_dir=tmp_path / "models", data_dir=tmp_path / "data"))


def _subscribed(app: object) -> dict[str, set[str]]:
    return {name: set(agent.channel.topics) for name, agent in ((a.name.rsplit(".", 1)[-1], a) for a in app.agents.values())}


def test_every_declared_stream_has_its_agents_on_its_topics(app: object) -> None:
    settings = Settings()
    subscribed = _subscribed(app)
    for d in DECLARATIONS:
        assert subscribed[d.scorer_agent] == {d.topic(settings)}
        if d.truth_topic is not None:
            assert subscribed[d.truth_agent] == {d.truths_topic(settings)}
    expected = {d.scorer_agent for d in DECLARATIONS} | {d.truth_agent for d in DECLARATIONS if d.truth_agent}
    assert set(subscribed) == expected


def test_every_stream_follows_its_models(app: object) -> None:
    tasks = {t.__name__ for t in app._app_tasks}
    assert {f"follow_{d.name}_models" for d in DECLARATIONS} <= tasks
    assert {"follow_transaction_graph", "follow_demand_calendar"} <= tasks


TS = "2025-03-04T10:00:00Z"
EVENTS = {
    "maintenance": ({"event_id": "r1", "machine_id": "m-7", "ts": TS, "sensors": {"rpm": 1500.0}}, "m-7"),
    "supply_chain": ({"event_id": "t1", "ts": TS, "shipment_id": "shp-9", "product_id": "p", "lot_id": "l",
                      "source_id": "a", "source_type": "manufacturer", "target_id": "b", "target_type": "distributor",
                      "quantity": 5, "unit_price": 2.0}, "shp-9"),
    "demand": ({"event_id": "s1", "ts": TS, "sku": "sku-1", "market": "DE", "units": 3, "unit_price": 9.5}, "sku-1/DE"),
}


@pytest.mark.parametrize("declaration", DECLARATIONS, ids=lambda d: d.name)
def test_the_declared_key_is_the_entity_the_input_topic_is_keyed_by(declaration) -> None:
    value, key = EVENTS[declaration.name]
    assert declaration.key_of(declaration.event_model.model_validate(value)) == key
