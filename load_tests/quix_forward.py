"""Peer: a Quix Streams application that decodes each message (json.loads) and forwards its
bytes to an output topic, at-least-once, with the library's defaults otherwise (librdkafka
consumer and producer, commits every 5 s). The same work as the bare Faust agent
(load_tests/bare_agent.py), in the stream-processing library the product is measured against.

    python -m load_tests.quix_forward INPUT_TOPIC OUTPUT_TOPIC    (settings from the environment)

Needs the `load` extra (`pip install -e '.[load]'`)."""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    from quixstreams import Application

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input_topic")
    parser.add_argument("output_topic")
    args = parser.parse_args()
    app = Application(
        broker_address=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        consumer_group=os.environ["APP_ID"],
        auto_offset_reset="earliest",
        state_dir=os.path.join(os.environ.get("DATA_DIR", "var"), "quix-state"),
        # The harness created both topics; the peer, like the product, declares none.
        auto_create_topics=False,
        use_changelog_topics=False,
        loglevel="WARNING",
    )
    source = app.topic(args.input_topic, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(args.output_topic, key_serializer="bytes", value_serializer="bytes")

    def decode(value: bytes) -> bytes:
        json.loads(value)
        return value

    app.dataframe(source).apply(decode).to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
