"""The one place bad input becomes a dead letter. The dead letter keeps the raw payload (UTF-8
text, or base64 when it is not text), its hash and size, and where it came from, so it can be
inspected, fixed and replayed. For one bad element of a gateway array the payload is that
element alone (re-serialized); the hash and size are always the whole source message's.

Whatever the input, a dead letter stays far below the broker's message limit: the payload is
cut to `max_payload_bytes`, and further while its JSON encoding exceeds twice that (control
characters grow sixfold when escaped),
the key to MAX_KEY_BYTES, field errors to MAX_FIELD_ERRORS (stream_app/decoding.py). The source topic/partition/offset
and the hash still identify the original."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Optional

from schemas import DeadLetter, deterministic_id, digest
from stream_app.decoding import DecodeFailure

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
MAX_KEY_BYTES = 1024
MAX_MESSAGE_CHARS = 2000


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
    body = raw if failure.item is None else _item_bytes(failure.item)
    payload, encoding, truncated = _payload(body, max_payload_bytes)
    position = (partition, offset) if offset is not None else ("sha256", digest(raw))
    return DeadLetter(
        dead_letter_id=deterministic_id("dead-letter", topic, *position, failure.item_index),
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=_payload(key, MAX_KEY_BYTES)[0] if key is not None else None,
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
