"""The supply-chain graph as a shared snapshot: what one worker writes to the compacted
`supply-chain-graph` topic and every other worker starts from, instead of replaying the whole
transactions topic (agents/graph_snapshots.py does the Kafka side).

A snapshot is the graph and the amount statistics as plain containers (`TransactionGraph.to_state`,
`RobustStats.to_state`), the model version whose graph it continues, and, per partition of the
transactions and verdicts topics, the offset of the first record it does not include. It is
JSON (no pickle: a record of a topic is data, never code), zlib-compressed, cut into chunks
small enough for a broker's default message size, with a SHA-256 over the whole.

Records (keys): `head` names the slot and chunk count and carries the digest; `chunk:<slot>:<i>`
hold the bytes. Snapshots alternate between two slots, and the head is written last, once every
chunk of its slot was acknowledged: a reader takes the latest record per key, so a snapshot cut
short (a crash mid-write) leaves the previous head and its intact slot. A head whose chunks do
not hash to its digest is refused (`BadSnapshot`) and the reader replays the topic instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Optional

FORMAT = 1
HEAD_KEY = b"head"
CHUNK_BYTES = 900_000  # below the 1 MB default max.message.bytes of Apache Kafka
MAX_CHUNKS = 4096


class BadSnapshot(ValueError):
    """A graph snapshot that is incomplete, damaged or not one this product wrote."""


@dataclass(frozen=True)
class GraphSnapshot:
    model_version: str
    offsets: dict[str, dict[int, int]]  # topic -> partition -> first offset not included
    graph: dict[str, Any]  # TransactionGraph.to_state()
    stats: dict[str, Any]  # RobustStats.to_state()
    written_at: float  # epoch seconds


def chunk_key(slot: int, i: int) -> bytes:
    return f"chunk:{slot}:{i}".encode()


def encode(snapshot: GraphSnapshot, slot: int, chunk_bytes: int = CHUNK_BYTES) -> list[tuple[bytes, bytes]]:
    """The records to write, in order (the head last)."""
    body = json.dumps({
        "model_version": snapshot.model_version,
        "offsets": {t: {str(p): o for p, o in parts.items()} for t, parts in snapshot.offsets.items()},
        "graph": snapshot.graph, "stats": snapshot.stats,
    }, separators=(",", ":")).encode()
    blob = zlib.compress(body, 6)
    n = max(1, math.ceil(len(blob) / chunk_bytes))
    if n > MAX_CHUNKS:
        raise BadSnapshot(f"a graph snapshot of {len(blob)} bytes needs {n} chunks, more than {MAX_CHUNKS}")
    records = [(chunk_key(slot, i), blob[i * chunk_bytes:(i + 1) * chunk_bytes]) for i in range(n)]
    head = {"format": FORMAT, "slot": slot, "chunks": n, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
            "model_version": snapshot.model_version, "written_at": snapshot.written_at}
    return records + [(HEAD_KEY, json.dumps(head, separators=(",", ":")).encode())]


def head_of(records: Mapping[bytes, bytes]) -> Optional[dict[str, Any]]:
    """The head record (None: no snapshot written yet)."""
    raw = records.get(HEAD_KEY)
    if raw is None:
        return None
    try:
        head = json.loads(raw)
        fmt = head.get("format")
        checked = {"slot": int(head["slot"]), "chunks": int(head["chunks"]), "sha256": str(head["sha256"]),
                   "model_version": str(head["model_version"]), "written_at": float(head["written_at"])}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadSnapshot(f"unreadable graph snapshot head: {exc}") from exc
    if fmt != FORMAT:
        raise BadSnapshot(f"graph snapshot format {fmt!r}, this worker reads {FORMAT}")
    if checked["slot"] not in (0, 1) or not 1 <= checked["chunks"] <= MAX_CHUNKS:
        raise BadSnapshot(f"graph snapshot head with slot {checked['slot']} and {checked['chunks']} chunks")
    return checked


def next_slot(records: Mapping[bytes, bytes]) -> int:
    """The slot the next snapshot goes to: not the one the current head names."""
    try:
        head = head_of(records)
    except BadSnapshot:
        return 0
    return 1 - int(head["slot"]) if head else 0


def decode(records: Mapping[bytes, bytes]) -> Optional[GraphSnapshot]:
    """The snapshot the head names, from the latest record per key; None when there is none."""
    head = head_of(records)
    if head is None:
        return None
    parts = [records.get(chunk_key(head["slot"], i)) for i in range(head["chunks"])]
    if any(p is None for p in parts):
        raise BadSnapshot("graph snapshot chunks are missing")
    blob = b"".join(p for p in parts if p is not None)
    if hashlib.sha256(blob).hexdigest() != head["sha256"]:
        raise BadSnapshot("graph snapshot chunks do not match their head (overwritten, damaged or forged)")
    try:
        body = json.loads(zlib.decompress(blob))
        offsets = {str(t): {int(p): int(o) for p, o in parts_.items()} for t, parts_ in body["offsets"].items()}
        graph, stats = body["graph"], body["stats"]
        if not isinstance(graph, dict) or not isinstance(stats, dict) or body["model_version"] != head["model_version"]:
            raise ValueError("graph, statistics or model version do not match the head")
    except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as exc:
        raise BadSnapshot(f"unreadable graph snapshot: {exc}") from exc
    if any(o < 0 for parts_ in offsets.values() for o in parts_.values()):
        raise BadSnapshot("graph snapshot with a negative offset")
    return GraphSnapshot(str(head["model_version"]), offsets, graph, stats, float(head["written_at"]))
