"""`stream-app worker`: one Faust worker process running every stream's agent."""

from __future__ import annotations

import asyncio
import logging

from stream_app.health import Health, serve
from stream_app.broker import ensure_broker
from stream_app.kafka_preflight import wait_for_cluster
from stream_app.kafka_security import client_config
from stream_app.settings import Settings
from stream_app.topics import check, create_missing

log = logging.getLogger(__name__)


def contract_topics(settings: Settings) -> list[str]:
    return list(settings.topics.model_dump().values())


async def ensure_contract_topics(settings: Settings) -> list[str]:
    """Every topic of the contract, as planned (stream_app/topics.py). On a configured cluster of
    several brokers a missing topic is created only with a chosen replication factor (else the
    worker stops, naming it), and what differs from the plan is logged (`stream-app topics
    check` fails on it)."""
    config = client_config(settings)
    created = await create_missing(config, settings)
    if not settings.uses_embedded_broker:
        for verdict in await check(config, settings):
            if verdict.problems:
                log.warning("topic %s: %s", verdict.spec.name, "; ".join(verdict.problems))
    return created


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    config = client_config(settings)  # a misconfiguration stops the worker here, in one line
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    broker = None
    if settings.uses_embedded_broker:
        broker = ensure_broker(settings.bootstrap_servers, True, settings.data_dir / "broker.log")
    else:
        wait_for_cluster(config)  # waits while the cluster is down; a refused login stops the worker
    try:
        # Imported once the cluster answered: a misconfiguration stops the worker within a second
        # or two, not after torch and the agents have loaded.
        import faust
        import torch

        from stream_app.app import create_app

        # Two cores: one for the event loop, one for the inference thread.
        torch.set_num_threads(1)
        asyncio.run(ensure_contract_topics(settings))
        health = Health()
        serve(settings.metrics_port, health, settings.metrics_bind_address)
        app = create_app(settings, health)
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        if broker is not None:
            broker.stop()
