"""The one place bad input becomes a dead letter. The dead letter keeps the raw payload (UTF-8
text, or base64 when it is not text), its hash and size, and where it came from, so it can be
inspected, fixed and replayed. For one bad element of a gateway array the payload is that
element alone (re-serialized); the hash and size are always the whole source message's.

Whatever the input, a dead letter stays far below the broker's message limit: the payload is
cut to `max_payload_bytes`, and further while its JSON encoding exceeds twice that (control
characters grow sixfold when escaped),
the key to MAX_KEY_BYTES, field errors to MAX_FIELD_ERRORS (stream_app/decoding.py). The source topic/partition/offset
and the hash still identify the original.

Every published dead letter also carries the error and its origin in Kafka headers (`Header`),
as Kafka Connect's dead-letter queues do, so a consumer can route or count dead letters without
parsing their value; `original_payload` and `original_key` give back what a replay re-sends.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Optional

from schemas import DeadLetter, deterministic_id, digest
from stream_app.decoding import DecodeFailure

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
MAX_KEY_BYTES = 1024
MAX_MESSAGE_CHARS = 2000
# The error message in a header: enough to read, small beside the value that has it in full.
MAX_HEADER_MESSAGE_BYTES = 512


class Header:
    """Kafka header names: on every dead letter (values UTF-8 text; partition, offset and item
    index in decimal, each left out when the dead letter has none), and on a replayed message."""

    ID = "dlq.id"
    ERROR_CODE = "dlq.error.code"
    ERROR_MESSAGE = "dlq.error.message"
    SOURCE_TOPIC = "dlq.source.topic"
    SOURCE_PARTITION = "dlq.source.partition"
    SOURCE_OFFSET = "dlq.source.offset"
    PAYLOAD_SHA256 = "dlq.payload.sha256"
    ITEM_INDEX = "dlq.item.index"
    APP_VERSION = "dlq.app.version"
    # On a message `stream-app dead-letters replay` re-sent to its source topic: the dead letter's id.
    REPLAY_OF = "dlq.replay.id"


def _text(raw: Optional[bytes]) -> tuple[str, str]:
    if raw is None:
        return "", "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _payload(body: bytes, limit: int) -> tuple[str, str, bool]:
    """(payload, encoding, truncated): a prefix of at most `limit` bytes, shorter when its JSON
    encoding would exceed twice that (escaped control characters)."""
    kept = body[:limit]
    while True:
        payload, encoding = _text(kept)
        if encoding == "base64" and len(kept) < len(body):
            # A cut may split a UTF-8 character; retry on the whole-character prefix.
            text, enc = _text(kept.decode("utf-8", errors="ignore").encode())
            if body.startswith(text.encode()):
                payload, encoding = text, enc
        if len(json.dumps(payload, ensure_ascii=False).encode()) <= 2 * limit or not kept:
            return payload, encoding, len(kept) < len(body)
        kept = kept[: len(kept) // 2]


def _item_bytes(item: object) -> bytes:
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()


_MISSING = object()


@lru_cache(maxsize=4)
def _parsed(raw: bytes) -> Any:
    """A message parsed once for all its rejected elements (a scorer may reject thousands of one
    gateway array); read only."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return _MISSING


def _element(raw: bytes, index: int) -> Any:
    """Element `index` of a gateway array message, or _MISSING when `raw` is no such array."""
    items = _parsed(raw)
    return items[index] if isinstance(items, list) and 0 <= index < len(items) else _MISSING


def build_dead_letter(
    failure: DecodeFailure,
    *,
    topic: str,
    partition: Optional[int],
    offset: Optional[int],
    key: Optional[bytes],
    raw: Optional[bytes],
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> DeadLetter:
    raw = raw or b""
    body = raw
    if failure.item_index is not None:
        # Decoding hands over the bad element; a scorer's rejection names it by index only.
        item = failure.item if failure.item is not None else _element(raw, failure.item_index)
        body = raw if item is _MISSING else _item_bytes(item)
    payload, encoding, truncated = _payload(body, max_payload_bytes)
    key_text, key_encoding, key_truncated = _payload(key, MAX_KEY_BYTES) if key is not None else (None, "utf-8", False)
    position = (partition, offset) if offset is not None else ("sha256", digest(raw))
    return DeadLetter(
        dead_letter_id=deterministic_id("dead-letter", topic, *position, failure.item_index),
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key_text,
        key_encoding=key_encoding,
        key_truncated=key_truncated,
        payload=payload,
        payload_encoding=encoding,
        payload_bytes=len(raw),
        payload_truncated=truncated,
        payload_sha256=digest(raw),
        item_index=failure.item_index,
        error_code=failure.code,
        error_message=failure.message[:MAX_MESSAGE_CHARS],
        errors=failure.errors,
        failed_at=datetime.now(timezone.utc),
    )


@lru_cache(maxsize=1)
def app_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stream-app")
    except PackageNotFoundError:  # a source tree that was never installed
        from stream_app import __version__

        return __version__


def _cut(text: str, limit: int) -> bytes:
    """UTF-8 of `text`, cut to `limit` bytes on a character boundary."""
    return text.encode()[:limit].decode("utf-8", errors="ignore").encode()


def kafka_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The Kafka headers every published dead letter carries."""
    headers = [
        (Header.ID, letter.dead_letter_id.encode()),
        (Header.ERROR_CODE, letter.error_code.encode()),
        (Header.ERROR_MESSAGE, _cut(letter.error_message, MAX_HEADER_MESSAGE_BYTES)),
        (Header.SOURCE_TOPIC, letter.source_topic.encode()),
        (Header.SOURCE_PARTITION, letter.partition),
        (Header.SOURCE_OFFSET, letter.offset),
        (Header.PAYLOAD_SHA256, letter.payload_sha256.encode()),
        (Header.ITEM_INDEX, letter.item_index),
        (Header.APP_VERSION, app_version().encode()),
    ]
    return [(name, value if isinstance(value, bytes) else str(value).encode()) for name, value in headers
            if value is not None]


def original_payload(letter: DeadLetter) -> bytes:
    """The bytes the dead letter keeps of its input (all of them unless `payload_truncated`): the
    source message, or the one bad element of a gateway array."""
    if letter.payload_encoding == "base64":
        return base64.b64decode(letter.payload)
    body = letter.payload.encode()
    if letter.item_index is not None and not letter.payload_truncated and digest(body) == letter.payload_sha256:
        # Written before the element was kept alone: the payload is the whole array.
        element = _element(body, letter.item_index)
        if element is not _MISSING:
            return _item_bytes(element)
    return body


def original_key(letter: DeadLetter) -> Optional[bytes]:
    """The source message's key (as kept: see `key_truncated`)."""
    if letter.key is None:
        return None
    return base64.b64decode(letter.key) if letter.key_encoding == "base64" else letter.key.encode()
