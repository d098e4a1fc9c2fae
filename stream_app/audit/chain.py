"""Tamper-evident alert chains: each published alert carries a hash that chains it to the
previous alert of the same chain, and covers its explanation.

A chain is a stream's alerts from one input partition (`maintenance/3`): a partition has one
owner at a time, so each chain has one writer. Link n of a chain:

    alert_sha256        sha256 of the alert's canonical JSON, without `created_at` (the
                        publisher's wall clock, which a redelivery changes) and `chain`
    explanation_sha256  the same of its explanation, if it has one
    hash                sha256("<chain>\\n<n>\\n<prev>\\n<alert_sha256>\\n<explanation_sha256>")
    prev                link n-1's hash (GENESIS for the first)

The alert and its explanation carry the link (`chain`); the link itself goes to the
`alert-audit` topic, keyed by the chain, in the same batch. Every link of a chain lands on one
partition of that topic, in order, so a worker taking a partition over reads the chain's last
link there and goes on from it (the head moves with the partition, whoever published last).

At-least-once delivery may publish an alert again after a crash: the copy gets a new link at
the end of the chain, and `stream-app audit verify` counts it as a redelivery (same alert id
and content), not as a change. What the chain proves is relative to a head kept elsewhere:
anyone who can write to the broker can also compute hashes, so an auditor anchors the heads
(`stream-app audit verify --write-anchor FILE`, daily, to storage the broker's users cannot
rewrite); afterwards any alert changed, removed, reordered or inserted before an anchored head
breaks the chain at that link or makes the anchored head disappear.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any, Awaitable, Callable, Iterable, Optional

from schemas import Alert, Explanation
from schemas.outputs import AuditRecord, ChainLink

log = logging.getLogger(__name__)

GENESIS = "0" * 64
WALL_CLOCK = {"created_at", "chain"}

# (chain id) -> its last link's (seq, hash), or None when the chain has none yet
TailReader = Callable[[str], Awaitable[Optional[tuple[int, str]]]]


def content_sha256(message: Any) -> str:
    """sha256 of a message's canonical JSON, without the fields a redelivery may change."""
    data = message.model_dump(mode="json") if hasattr(message, "model_dump") else message
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in WALL_CLOCK}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def link_hash(chain: str, seq: int, prev: str, alert_sha256: str, explanation_sha256: Optional[str]) -> str:
    return hashlib.sha256(f"{chain}\n{seq}\n{prev}\n{alert_sha256}\n{explanation_sha256 or ''}".encode()).hexdigest()


def chain_id(stream: str, partition: Optional[int]) -> str:
    return f"{stream}/{partition if partition is not None else '-'}"


class AlertChain:
    """One stream's chains on this worker: the head of each input partition it publishes for."""

    def __init__(self, stream: str, read_tail: TailReader) -> None:
        self.stream = stream
        self._read_tail = read_tail
        self.heads: dict[Optional[int], tuple[int, str]] = {}
        self._reading: dict[Optional[int], asyncio.Future[Optional[tuple[int, str]]]] = {}

    def prefetch(self, partitions: Iterable[Optional[int]]) -> None:
        """Start reading the heads not known yet, in the background: a partition just assigned
        has its head by its first alert, which would otherwise wait for the read (a consumer
        started per chain: the paced load case saw a second of latency at its first alerts)."""
        for p in set(partitions) - self.heads.keys() - self._reading.keys():
            task = self._reading[p] = asyncio.ensure_future(self._read_tail(chain_id(self.stream, p)))
            task.add_done_callback(_retrieved)

    async def ensure(self, partitions: Iterable[Optional[int]]) -> None:
        """Know the head of each partition's chain: its last link on the audit topic. A read
        that fails raises here, as the batch's own read would."""
        wanted = set(partitions)
        while missing := sorted(wanted - self.heads.keys(), key=str):
            self.prefetch(missing)
            reads = {p: self._reading[p] for p in missing}
            await asyncio.wait(reads.values())
            for p, read in reads.items():
                if self._reading.get(p) is not read:
                    continue  # forgotten meanwhile: read again
                del self._reading[p]
                tail = read.result()
                self.heads[p] = tail if tail is not None else (0, GENESIS)
                if tail is not None:
                    log.info("%s: alert chain %s goes on from link %d", self.stream, chain_id(self.stream, p), tail[0])

    def link(self, partition: Optional[int], alert: Alert, explanation: Optional[Explanation]
             ) -> tuple[Alert, Optional[Explanation], AuditRecord]:
        """The alert and explanation with the next link of the partition's chain, and the link's
        audit record (call `ensure` first)."""
        seq, prev = self.heads[partition]
        chain, seq = chain_id(self.stream, partition), seq + 1
        alert_sha = content_sha256(alert)
        explanation_sha = content_sha256(explanation) if explanation is not None else None
        h = link_hash(chain, seq, prev, alert_sha, explanation_sha)
        self.heads[partition] = (seq, h)
        link = ChainLink(chain=chain, seq=seq, prev=prev, hash=h)
        record = AuditRecord(chain=chain, seq=seq, prev=prev, hash=h, alert_id=alert.alert_id,
                             alert_sha256=alert_sha, explanation_sha256=explanation_sha)
        return (alert.model_copy(update={"chain": link}),
                explanation.model_copy(update={"chain": link}) if explanation is not None else None, record)

    def forget(self, partitions: Iterable[Optional[int]]) -> None:
        """Read these heads again before their next alert: the partition moved away, or a batch
        failed after its links were made (what reached the topic is the truth)."""
        for p in partitions:
            self.heads.pop(p, None)
            read = self._reading.pop(p, None)
            if read is not None:
                read.cancel()


def _retrieved(read: "asyncio.Future[Any]") -> None:
    """A read nobody awaits any more (forgotten) must not log its outcome as never retrieved."""
    if not read.cancelled():
        read.exception()
