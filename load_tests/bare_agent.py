"""Baseline: a bare Faust agent that decodes each message (json.loads) and forwards it to an
output topic: the product's Faust app (stream_app.app.new_faust_app) read the Faust way,
take_events micro-batches of the maintenance batch size and a 10 ms wait, one output per
input, the batch's acks awaited before its offsets are acknowledged; nothing else: no
validation into models, no scoring, no building of outputs.

    python -m load_tests.bare_agent INPUT_TOPIC OUTPUT_TOPIC    (settings from the environment)
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import faust

from stream_app.app import new_faust_app
from stream_app.settings import Settings, get_settings

WITHIN_S = 0.01  # the wait the product's agents used with take_events, before they read whole fetches


def create_bare_app(settings: Settings, input_topic: str, output_topic: str) -> faust.App:
    app = new_faust_app(settings)  # the product's broker settings, no agents
    source = app.topic(input_topic, key_serializer="raw", value_serializer="raw")
    batch = settings.maintenance

    @app.agent(source, name="bare-forward", concurrency=1)
    async def forward(stream: Any) -> None:
        async for events in stream.take_events(batch.batch_max, within=WITHIN_S):
            pending = []
            for event in events:
                message = event.message
                json.loads(message.value)
                pending.append(await app.producer.send(output_topic, message.key, message.value, None, None, None))
            await asyncio.gather(*pending)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input_topic")
    parser.add_argument("output_topic")
    args = parser.parse_args()
    settings = get_settings()
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = create_bare_app(settings, args.input_topic, args.output_topic)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
