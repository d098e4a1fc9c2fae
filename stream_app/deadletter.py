"""The one place bad input becomes a dead letter. The dead letter keeps the raw payload (UTF-8
text, or base64 when it is not text), its hash and size, and where it came from, so it can be
inspected, fixed and replayed. Payloads above `max_payload_bytes` are cut so the dead letter
itself fits the broker's message limit; the source topic/partition/offset and the hash of the
whole payload still identify the original."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Optional

from schemas import DeadLetter, deterministic_id, digest
from stream_app.decoding import DecodeFailure

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024


def _text(raw: Optional[bytes]) -> tuple[str, str]:
    if raw is None:
        return "", "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


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
    kept = raw[:max_payload_bytes]
    payload, encoding = _text(kept)
    if encoding == "base64" and len(kept) < len(raw):
        # A cut may split a UTF-8 character; retry on the whole-character prefix.
        text, enc = _text(kept.decode("utf-8", errors="ignore").encode())
        if raw.startswith(text.encode()):
            payload, encoding = text, enc
    position = (partition, offset) if offset is not None else ("sha256", digest(raw))
    return DeadLetter(
        dead_letter_id=deterministic_id("dead-letter", topic, *position, failure.item_index),
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=_text(key)[0] if key is not None else None,
        payload=payload,
        payload_encoding=encoding,
        payload_bytes=len(raw),
        payload_truncated=len(kept) < len(raw),
        payload_sha256=digest(raw),
        item_index=failure.item_index,
        error_code=failure.code,
        error_message=failure.message,
        errors=failure.errors,
        failed_at=datetime.now(timezone.utc),
    )
