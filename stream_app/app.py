"""The Faust application: one factory, so the CLI, tests and benchmarks build the same app."""

from __future__ import annotations

from typing import Any, Optional

import faust

from agents import demand, maintenance, stream_agent, supply_chain
from agents.drift import DriftSnapshots
from stream_app import metrics
from stream_app.faust_transport import StreamApp
from stream_app.health import Health
from stream_app.kafka_security import client_config
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings



def new_faust_app(settings: Settings) -> faust.App:
    """The Faust app with the product's broker settings and no agents (benchmarks reuse it)."""
    return StreamApp(
        settings.app_id,
        fetch_max_wait_ms=settings.broker_fetch_max_wait_ms,
        broker=f"kafka://{settings.bootstrap_servers}",
        # The same TLS/SASL as every other client (stream_app/kafka_security.py).
        broker_credentials=client_config(settings).faust_credentials(),
        # The worker creates the topics, to the plan, before Faust starts (stream_app/topics.py);
        # Faust would create its own with a replication factor of its own. The product elects
        # no leader, and Faust's leader topic would be one more such topic.
        topic_allow_declare=False,
        topic_disable_leader=True,
        # Agents decode raw bytes themselves: faust's decoding errors kill or skip records.
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        # On the embedded broker these must stay short, or a group's first join waits seconds.
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        # A new consumer group starts from the oldest retained event: nothing produced before the
        # first deployment is silently skipped.
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,
        logging_config=None,
    )


def create_app(settings: Settings, health: Optional[Health] = None) -> faust.App:
    app = new_faust_app(settings)
    registry = ModelRegistry(settings.model_dir)
    # No Faust tables: see agents/drift.py for why drift snapshots live in a plain topic.
    drift_snapshots = DriftSnapshots(settings, lambda: app.producer)
    health = health or Health()
    # Each stream's module says what it adds (its wiring); one generic module registers them,
    # each reporting its progress to the readiness probe (a worker serving demand alone is ready).
    for stream in (maintenance, demand, supply_chain):
        stream_agent.register(app, settings, stream.wiring(settings, registry, drift_snapshots), health)

    lag_series = metrics.LagSeries()

    @app.on_partitions_revoked.connect
    async def forget_revoked(_app: Any, revoked: set[Any], **_: Any) -> None:
        drift_snapshots.revoked({tp.partition for tp in revoked})
        lag_series.drop({(tp.topic, tp.partition) for tp in revoked})

    @app.timer(interval=2.0)
    async def report_health_and_lag() -> None:
        # On the embedded broker high-water marks are off after multi-record batches (see README).
        consumer = app.consumer
        assignment = consumer.assignment()
        lags: dict[tuple[str, int], int] = {}
        for tp in assignment:
            try:
                position, highwater = await consumer.position(tp), consumer.highwater(tp)
            except Exception:  # revoked since the assignment was read: next beat
                continue  # (aiokafka asserts the partition is assigned; a timer that raises stops the worker)
            if position is not None and highwater is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - position)
        # Read again after the awaits: a partition revoked meanwhile gets no series back.
        lag_series.update(lags, {(tp.topic, tp.partition) for tp in consumer.assignment()})
        health.beat(assigned=bool(assignment), rebalancing=bool(app.rebalancing), lag=sum(lags.values()))

    return app
