"""`stream-app tail TOPIC`: print a topic's messages as JSON lines."""

from __future__ import annotations

import json
import sys
from typing import Optional

from stream_app.errors import NoBroker, UnknownTopic
from stream_app.kafka_io import consume_json
from stream_app.settings import Settings

PROBE_TIMEOUT_S = 5.0


async def require_topic(settings: Settings, topic: str) -> None:
    """Raise NoBroker, the broker's refusal of this client (TLS, login) or UnknownTopic, before
    any consumer subscribes: a consumer would wait silently for a topic that never comes."""
    from aiokafka.admin import AIOKafkaAdminClient

    from stream_app.kafka_preflight import KafkaAccessError, probe
    from stream_app.kafka_security import client_config

    config = client_config(settings)
    try:
        await probe(config, PROBE_TIMEOUT_S)
    except KafkaAccessError:
        raise
    except Exception as exc:  # down, starting or unreachable
        raise NoBroker(settings.bootstrap_servers, settings.uses_embedded_broker, _cause(exc)) from exc
    admin = AIOKafkaAdminClient(**config.aiokafka())
    await admin.start()
    try:
        topics = await admin.list_topics()
    finally:
        await admin.close()
    if topic not in topics:
        raise UnknownTopic(topic, settings.bootstrap_servers, topics)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer"
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


async def tail(settings: Settings, topic: str, *, from_beginning: bool, limit: Optional[int], idle: Optional[float]) -> int:
    await require_topic(settings, topic)
    printed = 0
    async for _, value in consume_json(settings.bootstrap_servers, [topic], from_beginning=from_beginning, idle_timeout=idle):
        text = json.dumps(value, ensure_ascii=False) if not isinstance(value, bytes) else repr(value)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        printed += 1
        if limit is not None and printed >= limit:
            break
    return printed
