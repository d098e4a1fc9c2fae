"""`stream-app worker`: one Faust worker process running every stream's agent."""

from __future__ import annotations

import asyncio
import logging

import faust
import torch

from stream_app.health import Health, serve
from stream_app.app import create_app
from stream_app.broker import ensure_broker
from stream_app.kafka_io import ensure_topics
from stream_app.settings import Settings

log = logging.getLogger(__name__)


def contract_topics(settings: Settings) -> list[str]:
    return list(settings.topics.model_dump().values())


async def ensure_contract_topics(settings: Settings) -> list[str]:
    """Every topic of the contract, with the partition count workers expect."""
    return await ensure_topics(
        settings.bootstrap_servers, contract_topics(settings), settings.topic_partitions,
        compacted=[settings.topics.maintenance_state, settings.topics.drift_state],
    )


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    # Two cores: one for the event loop, one for the inference thread.
    torch.set_num_threads(1)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    broker = ensure_broker(settings.bootstrap_servers, settings.uses_embedded_broker, settings.data_dir / "broker.log")
    try:
        asyncio.run(ensure_contract_topics(settings))
        health = Health()
        serve(settings.metrics_port, health)
        app = create_app(settings, health)
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        if broker is not None:
            broker.stop()
