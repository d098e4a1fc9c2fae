"""Per-machine scoring state survives its partition moving to another worker (a crash, a
rebalance, a restart): snapshots in the compacted `maintenance-state` topic, then a replay of
the readings since.

* Snapshot: every MAINTENANCE__SNAPSHOT_INTERVAL_S, between batches (so after the outputs of
  every reading applied so far were acknowledged), the state of each machine changed since the
  last snapshot goes to `maintenance-state`, keyed by machine, on its readings' partition,
  tagged with the offset it is valid at (the partition's next reading not yet applied); then,
  once those are acknowledged, a partition marker with that offset, carrying the partition's
  drift detectors as they stood at the same point. Compaction keeps the latest record per key.
  The detectors are also written on their own, before any machine: a snapshot cut short (a
  kill, a broker gone mid-write) can leave machines newer than the marker, and such a
  machine's readings since the marker are not replayed; the detectors must already hold them.
* Restore: the first batch from a partition this process does not hold reads that partition of
  `maintenance-state`, loads the machines and the newest drift detectors (the marker's or the
  stand-alone record's, whichever is valid at the later offset), and replays
  `sensor-readings` from the marker's offset up to the batch's first offset (scoring and
  feeding the detectors) without publishing (those outputs were acknowledged
  before the previous owner's offsets were committed). Readings a loaded state already
  includes (the previous owner published and snapshot them, but had not committed yet) are
  skipped, in the replay and in the live batch. No marker: the replay starts at the beginning
  of what the topic retains.
* Budget: machines the scorer forgot (MAINTENANCE__MAX_MACHINES, MAINTENANCE__MACHINE_IDLE_S)
  get a tombstone in `maintenance-state` at their partition's next snapshot, and the keeper
  forgets them too, so neither the topic nor a worker that takes the partition over brings
  them back: with churning machine ids, what a partition's state holds stays within the budget.
* Owners: each taking-over of a partition writes its records and markers under a new token.
  Normally every record carries the marker's token (a new owner rewrites every machine it
  loaded in its first snapshot). A record of another token means two writers overlapped (a
  worker whose session expired kept writing for a moment); the replay then starts at the
  oldest such record's offset instead of the marker's, so no machine skips readings.
* Exact: a machine ends up in the state one uninterrupted scorer would have (cooldowns and
  history for explanations included), and a partition's drift detectors in the state of one
  monitor fed the partition in offset order, up to float rounding of different batch shapes. Not
  restored: a failure/repair outcome of `maintenance-outcomes` read after the last snapshot
  by a worker that then died (the reading's own `cycle` restart still starts the new life).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import defaultdict
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from agents.drift import DriftTracker
from stream_app.intake import RawMessage, decode_batch, limits_from_settings
from stream_app.kafka_io import read_partition_latest, read_range
from schemas import SensorReading
from stream_app import metrics
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import Settings

log = logging.getLogger(__name__)

MARKER_KEY = b"\x00partition"  # not a machine id: ids are printable (schemas/sensor.py)
DRIFT_KEY = b"\x00drift"  # the partition's drift detectors, written before a snapshot's machines
STATE_MAGIC = b"MS1\x00"
MARKER_MAGIC = b"MK1\x00"
REPLAY_BATCH = 1000
REPLAY_STALL_S = 60.0  # no record for this long while replaying: give up on the rest


class StateRecord(NamedTuple):
    arrays: dict[str, np.ndarray]
    offset: int  # the partition's first reading not in the state
    owner: str  # the hand-over that wrote it (see `_restore`)


def encode_state(arrays: dict[str, np.ndarray], offset: int, owner: str = "") -> bytes:
    """A flat record: a JSON header (offset, each array's dtype and shape; object arrays, if
    any, inline as JSON) then the other arrays' raw bytes (numbers, and event ids as fixed-width
    bytes). No pickle: a record of this topic is data, never code; no zip container: ~10x
    cheaper than np.savez per machine."""
    fields, blobs, inline = [], [], {}
    for name, value in arrays.items():
        if value.dtype == object:
            inline[name] = value.tolist()
        else:
            fields.append([name, value.dtype.str, list(value.shape)])
            blobs.append(np.ascontiguousarray(value).tobytes())
    header = json.dumps({"offset": offset, "owner": owner, "fields": fields, "inline": inline}, separators=(",", ":")).encode()
    return STATE_MAGIC + len(header).to_bytes(4, "big") + header + b"".join(blobs)


def decode_state(blob: bytes) -> StateRecord:
    if not blob.startswith(STATE_MAGIC):
        raise ValueError("not a machine state record")
    start = len(STATE_MAGIC) + 4
    end = start + int.from_bytes(blob[len(STATE_MAGIC) : start], "big")
    header = json.loads(blob[start:end])
    arrays: dict[str, np.ndarray] = {}
    for name, values in header["inline"].items():
        arrays[name] = np.empty(len(values), dtype=object)
        arrays[name][:] = values
    pos = end
    for name, dtype, shape in header["fields"]:
        kind = np.dtype(dtype)
        if kind.hasobject:
            raise ValueError(f"state field {name} is not numeric")
        if not all(isinstance(n, int) and 0 <= n < 1 << 20 for n in shape):
            raise ValueError(f"state field {name} has an impossible shape")
        size = kind.itemsize * int(np.prod(shape, dtype=np.int64))
        if pos + size > len(blob):
            raise ValueError(f"state field {name} runs past the record")
        arrays[name] = np.frombuffer(blob, dtype=kind, count=size // kind.itemsize, offset=pos).reshape(shape).copy()
        pos += size
    return StateRecord(arrays, int(header["offset"]), str(header.get("owner", "")))


def encode_marker(info: dict[str, Any], drift: Optional[bytes]) -> bytes:
    """A partition marker: a JSON header (offset, model version, ...) and, in the same record so
    the two always agree, the partition's drift detectors as they stood at that offset."""
    header = json.dumps(info, separators=(",", ":")).encode()
    return MARKER_MAGIC + len(header).to_bytes(4, "big") + header + (drift or b"")


def decode_marker(blob: bytes) -> tuple[dict[str, Any], Optional[bytes]]:
    if blob.startswith(b"{"):  # markers written before drift travelled with them
        return json.loads(blob), None
    if not blob.startswith(MARKER_MAGIC):
        raise ValueError("not a partition marker")
    start = len(MARKER_MAGIC) + 4
    end = start + int.from_bytes(blob[len(MARKER_MAGIC) : start], "big")
    return json.loads(blob[start:end]), blob[end:] or None


def _export_partition(
    scorer: MaintenanceScorer, machines: list[str], offset: int, owner: str, drift: Optional[DriftTracker], p: int,
    members: Sequence[str] = (),
) -> tuple[dict[str, bytes], Optional[bytes], list[str]]:
    """In the inference thread, at one point between batches: the machines' states and the
    partition's drift detectors, all valid at `offset`, and which of the partition's `members`
    the scorer has forgotten (its state budget)."""
    records = {m: encode_state(a, offset, owner) for m, a in scorer.export_machines(machines).items()}
    gone = [m for m in members if not scorer.knows(m)]
    return records, drift.dumps(p) if drift is not None else None, gone


def _replay_batch(scorer: MaintenanceScorer, drift: Optional[DriftTracker], events: list[SensorReading],
                  origin: list[RawMessage]) -> None:
    """In the inference thread: what a live batch does to state, without its outputs."""
    results = scorer.score_batch(events, explain=False)
    if drift is not None and events:
        drift.observe(events, results, origin)


class MachineStateKeeper:
    """Knows which partition each machine's readings come from, which machines changed since
    the last snapshot, and how far each partition was applied. Used on the event loop only;
    the scorer's own methods run in the stream's inference thread via `run`."""

    def __init__(self, settings: Settings, run: Callable[..., Any]) -> None:
        self.settings = settings
        self.topic = settings.topics.maintenance_state
        self.readings_topic = settings.topics.sensor_readings
        self.interval = settings.maintenance.snapshot_interval_s
        self._run = run  # (fn, *args) -> awaitable result, in the inference thread
        self.warm: set[int] = set()
        self.partition_of: dict[str, int] = {}
        self.members: dict[int, set[str]] = defaultdict(set)  # partition -> its machines
        self.tombstones: dict[int, set[str]] = defaultdict(set)  # forgotten, not yet deleted from the topic
        self.dirty: dict[int, set[str]] = defaultdict(set)
        self.next_offset: dict[int, int] = {}
        # After a restore: readings below these offsets are already in the state.
        self.applied_before: dict[str, int] = {}
        self.partition_applied_before: dict[int, int] = {}
        self._last_snapshot = time.monotonic()
        self._last_partition = -1
        self._writing: Optional[asyncio.Future[None]] = None
        # The stream's drift detectors, handed over with the machines (set by the pipeline).
        self.drift: Optional[DriftTracker] = None
        # One token per taking-over of a partition, written into its records and markers.
        self.owner: dict[int, str] = {}

    # --- live batches ---------------------------------------------------------------------------
    def admit(self, events: list[SensorReading], origin: list[RawMessage]) -> tuple[list[SensorReading], list[RawMessage]]:
        """Before scoring: note partitions and changes; drop readings the state already has."""
        kept_e: list[SensorReading] = []
        kept_o: list[RawMessage] = []
        for event, message in zip(events, origin):
            p, offset = message.partition, message.offset
            if p is None or offset is None:
                kept_e.append(event)
                kept_o.append(message)
                continue
            if self._already_applied(event.machine_id, p, offset):
                metrics.STATE_SKIPPED.labels("maintenance").inc()
                continue
            self._member(event.machine_id, p)
            self.next_offset[p] = max(self.next_offset.get(p, 0), offset + 1)
            kept_e.append(event)
            kept_o.append(message)
        return kept_e, kept_o

    def _member(self, machine_id: str, p: int) -> None:
        """A reading of this machine on partition p changes its state."""
        before = self.partition_of.get(machine_id)
        if before != p:
            if before is not None:  # its readings now come keyed elsewhere: the old partition's
                self.members[before].discard(machine_id)  # revocation must not forget it, and its
                self.dirty[before].discard(machine_id)  # record there is stale (deleted next turn)
                self.tombstones[before].add(machine_id)
            self.partition_of[machine_id] = p
            self.members[p].add(machine_id)
            self.tombstones[p].discard(machine_id)
        self.dirty[p].add(machine_id)

    def _already_applied(self, machine_id: str, partition: int, offset: int) -> bool:
        return offset < max(self.applied_before.get(machine_id, -1), self.partition_applied_before.get(partition, -1))

    def changed(self, machine_id: str) -> None:
        """A machine's state changed outside a reading (an outcome reset it)."""
        p = self.partition_of.get(machine_id)
        if p is not None:
            self.dirty[p].add(machine_id)

    # --- snapshots ------------------------------------------------------------------------------
    def snapshot_due(self) -> bool:
        # One partition per turn, so each turn's pause stays short; each partition every
        # `interval`; never while the previous turn's records are still being written.
        if self._writing is not None and not self._writing.done():
            return False
        return time.monotonic() - self._last_snapshot >= self.interval / max(1, len(self.warm))

    async def snapshot(self, scorer: MaintenanceScorer, producer: Any) -> int:
        """Take the next partition's changed machines and its drift detectors (in the inference
        thread: a consistent point), then write them and the marker in the background, so
        scoring goes on meanwhile. Call between batches, after their outputs were acknowledged.
        Returns the number of machine records taken."""
        self._last_snapshot = time.monotonic()
        if scorer.model_version is None or not self.warm:
            return 0  # rules-only state is a few last values: nothing worth handing over
        order = sorted(self.warm)
        p = self._last_partition = next((q for q in order if q > self._last_partition), order[0])
        offset = self.next_offset.get(p)
        if offset is None:
            return 0  # nothing applied yet
        taken = self.dirty.pop(p, set())  # changes from now on (an outcome meanwhile) go to a new set
        try:
            owner = self.owner.setdefault(p, uuid.uuid4().hex)
            records, drift, gone = await self._run(_export_partition, scorer, sorted(taken), offset, owner, self.drift, p,
                                                   list(self.members[p]))
        except BaseException:
            self.dirty[p] |= taken  # not taken: the next turn tries again
            raise
        for m in gone:  # the scorer forgot them (its state budget): so does the partition's state
            if self.partition_of.get(m) == p and m not in self.dirty.get(p, ()):  # not back since
                del self.partition_of[m]
                self.members[p].discard(m)
                self.applied_before.pop(m, None)
                self.tombstones[p].add(m)
        deleted = set(self.tombstones[p])
        info = {"offset": offset, "owner": owner, "model_version": scorer.model_version, "machines": len(records)}
        detectors = encode_marker({k: info[k] for k in ("offset", "owner", "model_version")}, drift) if drift else None
        self._writing = asyncio.ensure_future(
            self._write(producer, p, taken, records, encode_marker(info, drift), detectors, deleted))
        return len(records)

    async def _write(self, producer: Any, p: int, taken: set[str], records: dict[str, bytes], marker: bytes,
                     detectors: Optional[bytes] = None, deleted: frozenset[str] | set[str] = frozenset()) -> None:
        """The drift detectors, then tombstones of forgotten machines, then the records, then
        (once all are acknowledged) the marker that vouches for them. Detectors first: no
        machine record is ever newer than them."""
        try:
            if detectors is not None:
                await (await producer.send(self.topic, DRIFT_KEY, detectors, p, None, None))
            pending = [await producer.send(self.topic, m.encode(), None, p, None, None) for m in deleted]
            pending += [await producer.send(self.topic, m.encode(), rec, p, None, None) for m, rec in records.items()]
            for fut in pending:
                await fut
            await (await producer.send(self.topic, MARKER_KEY, marker, p, None, None))
        except Exception:  # scoring goes on; these machines are written next turn
            if p in self.warm:
                self.dirty[p] |= taken
            log.exception("maintenance: state snapshot of partition %d failed", p)
            return
        self.tombstones[p] -= deleted
        metrics.STATE_SNAPSHOT_RECORDS.labels("maintenance").inc(len(records))

    async def written(self) -> None:
        """Wait for the snapshot being written, if any (tests, shutdown)."""
        if self._writing is not None:
            await asyncio.shield(self._writing)

    # --- hand-over ------------------------------------------------------------------------------
    async def ensure_warm(self, scorer: MaintenanceScorer, messages: Sequence[RawMessage],
                          assigned: Optional[Mapping[int, int]] = None) -> None:
        """Restore each partition this process does not hold yet, up to its first offset here:
        those of `messages`, and every one in `assigned` (partition -> the offset its records
        will start at), all at once, so a partition whose records come later is not restored
        (and its readings held back) one after another."""
        first = {p: offset for p, offset in (assigned or {}).items() if p not in self.warm}
        for m in messages:
            if m.partition is not None and m.offset is not None and m.partition not in self.warm:
                first[m.partition] = min(first.get(m.partition, m.offset), m.offset)
        self.warm.update(first)
        if first and self.settings.maintenance.restore_on_assign:
            await asyncio.gather(*(self._restore_logged(scorer, p, end) for p, end in sorted(first.items())))

    async def _restore_logged(self, scorer: MaintenanceScorer, p: int, end: int) -> None:
        started = time.monotonic()
        try:
            loaded, replayed = await self._restore(scorer, p, end)
            log.info("maintenance: partition %d handed over: %d machine states loaded, %d readings replayed "
                     "from offset %d to %d in %.1f s", p, loaded, replayed, self.partition_applied_before[p], end,
                     time.monotonic() - started)
        except Exception:  # scoring goes on; the partition's machines warm up again
            log.exception("maintenance: restoring partition %d failed; its machines start cold", p)

    async def _restore(self, scorer: MaintenanceScorer, p: int, end: int) -> tuple[int, int]:
        records = await self._read_state(p)
        marker = records.pop(MARKER_KEY, None)
        detectors = records.pop(DRIFT_KEY, None)
        start, version, drift, owner = 0, None, None, ""
        if marker is not None:
            info, drift = decode_marker(marker)
            start, version, owner = int(info["offset"]), info.get("model_version"), str(info.get("owner", ""))
        drift_at = start
        if detectors is not None and version is not None:
            # Written before a snapshot's machines: newer than the marker when that snapshot was
            # cut short, and then the only detectors that hold the readings its machines skip.
            d_info, d_blob = decode_marker(detectors)
            if d_blob and d_info.get("model_version") == version and int(d_info["offset"]) > drift_at:
                drift, drift_at = d_blob, int(d_info["offset"])
        states: dict[str, dict[str, np.ndarray]] = {}
        if version is not None and version == scorer.model_version:
            for key, blob in records.items():
                try:
                    record = decode_state(blob)
                    machine = key.decode()
                except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError, JSON errors included
                    # Not a record this product wrote: refused; that machine warms up again.
                    metrics.STATE_REFUSED.labels("maintenance", "machine_state").inc()
                    log.warning("maintenance: partition %d: a state record was refused (%s)", p, exc)
                    continue
                states[machine] = record.arrays
                self.applied_before[machine] = record.offset
                self.partition_of[machine] = p
                self.members[p].add(machine)
                if record.owner != owner:
                    # Written by another owner than the marker's: one that lost the partition
                    # but kept writing (a worker whose session expired unnoticed), or the owner
                    # the marker's writer had lost it to. Its machine may have readings the
                    # marker's offset skips: replay from the record's own offset.
                    start = min(start, record.offset)
            if start < drift_at:
                log.warning("maintenance: partition %d has states of more than one owner; replaying from %d, not %d",
                            p, start, drift_at)
            ahead = [m for m in states if self.applied_before[m] > drift_at]
            if ahead and drift is not None:
                # Only when two owners overlapped and the older one wrote last: the detectors
                # miss these machines' readings between their offsets and theirs.
                log.warning("maintenance: partition %d: %d machine states are newer than its drift detectors (%d); "
                            "drift statistics of this partition are approximate", p, len(ahead), drift_at)
        elif marker is not None:
            log.warning("maintenance: partition %d states are of model %s, this worker serves %s: replaying "
                        "from the beginning", p, version, scorer.model_version)
            start, drift = 0, None
        if self.drift is not None:
            self.drift.fresh(p)
            try:
                if drift is not None:
                    self.drift.load(p, drift, drift_at)
            except Exception:  # unreadable: the partition's detectors learn a new reference
                log.warning("maintenance: partition %d drift snapshot unreadable; detectors start afresh", p, exc_info=True)
        loaded = await self._run(scorer.import_machines, states)
        self.dirty[p] |= set(states)
        self.partition_applied_before[p] = start
        self.next_offset[p] = max(self.next_offset.get(p, 0), start, end)
        replayed = await self._replay(scorer, p, start, end) if start < end else 0
        metrics.STATE_RESTORED.labels("maintenance").inc(loaded)
        return loaded, replayed

    async def _read_state(self, p: int) -> dict[bytes, bytes]:
        """The partition's latest record per key. A read cut short is still consistent: every
        record pairs a state with the offset it is valid at, and an older marker only means a
        longer replay."""
        return await read_partition_latest(self.settings, self.topic, p, REPLAY_STALL_S, REPLAY_BATCH)

    async def _replay(self, scorer: MaintenanceScorer, p: int, start: int, end: int) -> int:
        """Apply readings [start, end) of partition `p`, in order, without publishing (when the
        range ends short: stream_app.kafka_io.read_range)."""
        limits = limits_from_settings(self.settings)
        replayed = 0
        async for records in read_range(self.settings, self.readings_topic, p, start, end, "maintenance",
                                        REPLAY_STALL_S, REPLAY_BATCH):
            raw = [RawMessage(r.topic, r.partition, r.offset, r.key, r.value) for r in records]
            intake = decode_batch(raw, SensorReading, limits)  # bad ones were dead-lettered the first time
            kept = [(e, m) for e, m in zip(intake.events, intake.origin)
                    if not self._already_applied(e.machine_id, p, m.offset or 0)]
            events, origin = [e for e, _ in kept], [m for _, m in kept]
            for e in events:
                self._member(e.machine_id, p)
            await self._run(_replay_batch, scorer, self.drift, events, origin)
            replayed += len(events)
        metrics.STATE_REPLAYED.labels("maintenance").inc(replayed)
        return replayed

    async def revoked(self, scorers: Sequence[Optional[MaintenanceScorer]], partitions: set[int]) -> None:
        """Forget what moved away (in the served and any shadow scorer): if it comes back, the
        snapshot and replay are the truth."""
        gone = partitions & self.warm
        if not gone:
            return
        machines = [m for p in gone for m in self.members.get(p, ())]
        for scorer in scorers:
            if scorer is not None:
                await self._run(scorer.forget, machines)
        if self.drift is not None:
            await self._run(self.drift.drop, gone)
        for m in machines:
            self.partition_of.pop(m, None)
            self.applied_before.pop(m, None)
        for p in gone:
            self.members.pop(p, None)
            self.tombstones.pop(p, None)
            self.warm.discard(p)
            self.owner.pop(p, None)
            self.dirty.pop(p, None)
            self.next_offset.pop(p, None)
            self.partition_applied_before.pop(p, None)

