"""The topic plan from the settings, and a cluster's topics compared with it (no broker: the
states are what a broker would report)."""

from __future__ import annotations

from typing import Any

import pytest

from stream_app.settings import DemandSettings, Settings
from stream_app.topics import TopicsError, TopicState, compare, new_topic, plan, replication_factor

CLUSTER = "kafka-1:9092"


def specs(brokers: int = 3, **values: Any) -> dict[str, Any]:
    return {spec.name: spec for spec in plan(Settings(**{"kafka_bootstrap_servers": CLUSTER, **values}), brokers)}


def test_sales_retention_covers_what_demand_rereads() -> None:
    sales = specs()["sales-events"]
    assert sales.min_retention_hours == (90 + 28) * 24 and sales.retention_hours == sales.min_retention_hours
    assert new_topic(specs(topic_replication_factor=3)["sales-events"]).topic_configs == {"retention.ms": str(118 * 24 * 3_600_000)}
    # More correction days need more retained sales; no replay needs none.
    assert specs(demand=DemandSettings(correction_days=60))["sales-events"].min_retention_hours == 150 * 24
    assert specs(demand=DemandSettings(replay_on_assign=False))["sales-events"].min_retention_hours is None


def test_replication_is_never_chosen_silently() -> None:
    assert replication_factor(Settings(kafka_bootstrap_servers=""), brokers=1) == 1  # embedded broker
    assert replication_factor(Settings(kafka_bootstrap_servers=CLUSTER), brokers=1) == 1  # one broker holds one copy
    assert replication_factor(Settings(kafka_bootstrap_servers=CLUSTER), brokers=3) is None
    assert replication_factor(Settings(kafka_bootstrap_servers=CLUSTER, topic_replication_factor=3), brokers=3) == 3
    unset = specs(brokers=3)["alerts"]
    with pytest.raises(TopicsError, match="TOPIC_REPLICATION_FACTOR is not set"):
        new_topic(unset)


def test_per_topic_settings_override_the_defaults() -> None:
    planned = specs(topic_partitions=6, topic_replication_factor=3,
                    topic_config={"sensor_readings": {"partitions": 24, "replication_factor": 5},
                                  "sales_events": {"retention_hours": -1}})
    assert (planned["sensor-readings"].partitions, planned["sensor-readings"].replication_factor) == (24, 5)
    assert (planned["alerts"].partitions, planned["alerts"].replication_factor) == (6, 3)
    assert planned["sales-events"].configs() == {"retention.ms": "-1"}
    assert planned["maintenance-state"].configs() == {"cleanup.policy": "compact"}


def test_a_per_topic_setting_for_no_topic_is_refused() -> None:
    with pytest.raises(TopicsError, match="TOPIC_CONFIG__SALES: no such topic"):
        specs(topic_config={"sales": {"partitions": 2}})
    with pytest.raises(TopicsError, match="RETENTION_HOURS=0"):
        specs(topic_config={"alerts": {"retention_hours": 0}})


def state(name: str, partitions: int = 4, replicas: int = 3, **configs: str) -> TopicState:
    return TopicState(name, partitions, replicas, {k.replace("_", "."): v for k, v in configs.items()})


def test_compare_fails_on_what_breaks_the_product() -> None:
    planned = specs(topic_replication_factor=3)
    sales, state_topic = planned["sales-events"], planned["maintenance-state"]
    short = compare(sales, state("sales-events", retention_ms=str(7 * 24 * 3_600_000)))
    assert short.problems and "retention 168 h < 2832 h" in short.problems[0]
    assert compare(sales, state("sales-events", retention_ms="-1")).status == "ok"
    assert compare(sales, state("sales-events", retention_ms=str(200 * 24 * 3_600_000))).status == "ok"
    assert "retention.bytes" in compare(sales, state("sales-events", retention_ms="-1", retention_bytes="1000")).status
    assert "compaction would drop" in compare(sales, state("sales-events", retention_ms="-1", cleanup_policy="compact")).status
    assert "must be compact" in compare(state_topic, state("maintenance-state", cleanup_policy="delete")).status
    assert "replication factor 1 < 3" in compare(planned["alerts"], state("alerts", replicas=1)).status
    assert compare(planned["alerts"], None).status == "missing"


def test_what_the_broker_does_not_report_is_unknown_not_failed() -> None:
    planned = specs(topic_replication_factor=3)
    unknown = compare(planned["sales-events"], state("sales-events"))
    assert not unknown.problems and unknown.status.startswith("unknown: the broker does not report retention.ms")
    assert compare(planned["maintenance-state"], state("maintenance-state")).status.startswith("unknown")
    # Another partition count is told, not failed: keys are already spread over the existing ones.
    other = compare(planned["alerts"], state("alerts", partitions=12))
    assert not other.problems and other.status == "ok (12 partitions, the plan says 4)"
