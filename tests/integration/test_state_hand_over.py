"""A maintenance partition moving between workers, step by step on a real broker: the old
owner scores, snapshots and scores on past its snapshot, then dies uncommitted; the new owner
restores from `maintenance-state`, replays, and scores live. Its machines and its drift
detectors must end exactly where one uninterrupted scorer fed the partition in order ends."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from agents.drift import DriftTracker
from agents.maintenance import drift_values
from agents.maintenance_state import MARKER_KEY, MachineStateKeeper
from schemas import SensorReading
from stream_app.intake import RawMessage
from stream_app.kafka_io import FaustStyleSender, encode_json, ensure_topics, read_partition_latest
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import DriftSettings, Settings
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator

pytestmark = pytest.mark.slow

PARTITIONS = 2
# Small reference windows so the detectors report drifts within a few thousand readings.
DRIFT = DriftSettings(reference_size=200, min_effect=0.5, kswin_every=5)


class _Worker:
    """What the maintenance agent does to state for a batch, without Faust around it."""

    def __init__(self, settings: Settings, model_dir: Path, restore: bool) -> None:
        self.scorer = MaintenanceScorer.load(ModelRegistry(model_dir), settings.maintenance)
        self.keeper = MachineStateKeeper(settings, self._run)
        self.keeper.drift = self.drift = DriftTracker("maintenance", DRIFT, drift_values, ("failure_probability", "confidence"))
        self.restore = restore
        self.probabilities: dict[str, float] = {}

    async def _run(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    async def batch(self, messages: list[RawMessage]) -> None:
        if self.restore:
            await self.keeper.ensure_warm(self.scorer, messages)
        events = [SensorReading.model_validate_json(m.value or b"") for m in messages]
        events, origin = self.keeper.admit(events, messages)
        self.drift.ensure({m.partition for m in origin})
        results = self.scorer.score_batch(events, explain=False)
        self.drift.observe(events, results, origin)
        self.probabilities.update({r.prediction.event_id: r.prediction.failure_probability for r in results})


def _partition(machine_id: str) -> int:
    return zlib.crc32(machine_id.encode()) % PARTITIONS


async def _produce(bootstrap: str, readings: list[dict[str, Any]]) -> list[list[RawMessage]]:
    """Sends every reading; returns each partition's messages in offset order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    by_partition: list[list[RawMessage]] = [[] for _ in range(PARTITIONS)]
    try:
        sent = []
        for r in readings:
            key, value, p = r["machine_id"].encode(), encode_json(r), _partition(r["machine_id"])
            sent.append((key, value, p, await producer.send("sensor-readings", value, key=key, partition=p)))
        for key, value, p, delivery in sent:
            meta = await delivery
            by_partition[p].append(RawMessage("sensor-readings", p, meta.offset, key, value))
        for messages in by_partition:
            messages.sort(key=lambda m: m.offset or 0)
    finally:
        await producer.stop()
    return by_partition


async def _hand_over(bootstrap: str, model_dir: Path, restore: bool) -> tuple[_Worker, _Worker, list[list[RawMessage]]]:
    settings = Settings(kafka_bootstrap_servers=bootstrap, drift=DRIFT)
    await ensure_topics(bootstrap, ["sensor-readings", "maintenance-state"], PARTITIONS, compacted=["maintenance-state"])
    readings = FleetSimulator(FleetConfig(n_machines=16, seed=5)).live_readings(6_000)
    log = await _produce(bootstrap, readings)
    old, new = _Worker(settings, model_dir, restore=True), _Worker(settings, model_dir, restore=restore)
    aio = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await aio.start()
    try:
        for p, messages in enumerate(log):
            snapshot_at, committed, died_at = len(messages) // 3, len(messages) // 2, 2 * len(messages) // 3
            for i in range(0, snapshot_at, 250):
                await old.batch(messages[i : min(i + 250, snapshot_at)])
            old.keeper._last_partition = p - 1  # this partition's turn
            assert await old.keeper.snapshot(old.scorer, FaustStyleSender(aio)) > 0
            await old.keeper.written()
            for i in range(snapshot_at, died_at, 250):  # scored past the snapshot, then dies
                await old.batch(messages[i : min(i + 250, died_at)])
            for i in range(committed, len(messages), 250):  # the new owner starts at the commit
                await new.batch(messages[i : i + 250])
    finally:
        await aio.stop()
    return old, new, log


def _reference(model_dir: Path, settings: Settings, log: list[list[RawMessage]]) -> tuple[dict[str, float], DriftTracker]:
    scorer = MaintenanceScorer.load(ModelRegistry(model_dir), settings.maintenance)
    drift: DriftTracker = DriftTracker("maintenance", DRIFT, drift_values, ("failure_probability", "confidence"))
    probabilities: dict[str, float] = {}
    for messages in log:
        drift.ensure({messages[0].partition})
        for i in range(0, len(messages), 500):
            chunk = messages[i : i + 500]
            events = [SensorReading.model_validate_json(m.value or b"") for m in chunk]
            results = scorer.score_batch(events, explain=False)
            drift.observe(events, results, chunk)
            probabilities.update({r.prediction.event_id: r.prediction.failure_probability for r in results})
    return probabilities, drift


def _drift_differences(worker: _Worker, drift: DriftTracker) -> list[str]:
    found: list[str] = []
    for p in range(PARTITIONS):
        mine, theirs = worker.drift.monitors[p].summary(), drift.monitors[p].summary()
        assert mine.keys() == theirs.keys()
        for feature, stats in theirs.items():
            for name, value in stats.items():
                if abs(mine[feature][name] - value) > 1e-6 * max(1.0, abs(value)):
                    found.append(f"p{p} {feature}.{name}: {mine[feature][name]} != {value}")
    return found


def _differences(worker: _Worker, reference: dict[str, float], drift: DriftTracker, log: list[list[RawMessage]]) -> tuple[int, list[str]]:
    live = [SensorReading.model_validate_json(m.value or b"").event_id for messages in log for m in messages[len(messages) // 2 :]]
    wrong = sum(1 for e in live if abs(worker.probabilities[e] - reference[e]) > 1e-4)
    return wrong, _drift_differences(worker, drift)


def test_machines_and_drift_detectors_move_with_their_partition(broker, trained_model_dir: Path) -> None:
    old, new, log = asyncio.run(_hand_over(broker.bootstrap, trained_model_dir, restore=True))
    reference, drift = _reference(trained_model_dir, Settings(), log)
    wrong, drifted = _differences(new, reference, drift, log)
    assert wrong == 0, f"{wrong} live predictions of the new owner differ from the uninterrupted scorer's"
    assert not drifted, drifted[:10]
    assert sum(m.detections for m in drift.monitors.values()) > 0, "the load must make the detectors report drifts"


def test_without_the_hand_over_the_same_checks_fail(broker, trained_model_dir: Path) -> None:
    """The checks above can fail: a new owner that starts cold differs on both counts."""
    old, new, log = asyncio.run(_hand_over(broker.bootstrap, trained_model_dir, restore=False))
    reference, drift = _reference(trained_model_dir, Settings(), log)
    wrong, drifted = _differences(new, reference, drift, log)
    assert wrong > 0 and drifted



async def _overlapping_owners(bootstrap: str, model_dir: Path) -> tuple[_Worker, list[list[RawMessage]], list[int]]:
    """Owner A keeps scoring and snapshotting after owner B took its partitions over (a worker
    whose session expired without it noticing), and writes last; then C takes over."""
    settings = Settings(kafka_bootstrap_servers=bootstrap, drift=DRIFT)
    await ensure_topics(bootstrap, ["sensor-readings", "maintenance-state"], PARTITIONS, compacted=["maintenance-state"])
    log = await _produce(bootstrap, FleetSimulator(FleetConfig(n_machines=16, seed=8)).live_readings(6_000))
    a, b, c = (_Worker(settings, model_dir, restore=True) for _ in range(3))
    aio = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await aio.start()
    starts = []
    try:
        for p, messages in enumerate(log):
            n = len(messages)
            s1, xb, s2, xa = n // 5, n // 4, n // 2, n // 2 + 3

            async def feed(worker: _Worker, lo: int, hi: int) -> None:
                for i in range(lo, hi, 250):
                    await worker.batch(messages[i : min(i + 250, hi)])

            async def snapshot(worker: _Worker) -> None:
                worker.keeper._last_partition = p - 1
                assert await worker.keeper.snapshot(worker.scorer, FaustStyleSender(aio)) > 0
                await worker.keeper.written()

            await feed(a, 0, s1)
            await snapshot(a)
            await feed(b, s1, xb)  # B takes over at A's commit (s1), reading A's marker
            await feed(a, s1, s2)
            await snapshot(a)  # A, no longer the owner, writes every machine at s2
            await snapshot(b)  # B writes every machine at xb < s2, over A's records
            await feed(a, s2, xa)
            await snapshot(a)  # ... and A writes last: a few machines and its marker, at xa
            await feed(c, xa, n)
            starts.append(xa)
    finally:
        await aio.stop()
    return c, log, starts


def test_a_writer_that_lost_its_partition_cannot_make_the_next_owner_skip_readings(broker, trained_model_dir: Path) -> None:
    c, log, starts = asyncio.run(_overlapping_owners(broker.bootstrap, trained_model_dir))
    reference, drift = _reference(trained_model_dir, Settings(), log)
    live = [SensorReading.model_validate_json(m.value or b"").event_id for p, messages in enumerate(log) for m in messages[starts[p] :]]
    wrong = sum(1 for e in live if abs(c.probabilities[e] - reference[e]) > 1e-4)
    assert wrong == 0, f"{wrong} of {len(live)} predictions of the third owner differ from the uninterrupted scorer's"
    assert not _drift_differences(c, drift)


def test_other_streams_drift_detectors_go_on_from_their_snapshot_on_the_drift_state_topic(broker) -> None:
    """Supply chain and demand: a worker's detectors are snapshot to `drift-state`; another
    worker taking the partition over (or this one, after a revocation) goes on from there."""
    from agents.drift import DriftSnapshots

    settings = Settings(kafka_bootstrap_servers=broker.bootstrap)
    extract = lambda events, results: {"x": list(events)}  # noqa: E731
    origin = [RawMessage("t", 1, i, None, b"") for i in range(400)]

    async def run() -> tuple[dict, dict]:
        await ensure_topics(broker.bootstrap, ["drift-state"], PARTITIONS, compacted=["drift-state"])
        aio = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await aio.start()
        try:
            store = DriftSnapshots(settings, lambda: FaustStyleSender(aio))
            old = DriftTracker("supply_chain", DRIFT, extract, (), store)
            await old.restore({1})
            old.observe([float(i % 7) for i in range(400)], list(range(400)), origin)
            await old.store(old.snapshots())
            new = DriftTracker("supply_chain", DRIFT, extract, (), DriftSnapshots(settings, lambda: FaustStyleSender(aio)))
            await new.restore({1})
            old.observe([5.0] * 10, list(range(10)), origin[:10])  # after the snapshot: not in it
            store.revoked({1})
            await old.restore({1})  # back after a revocation: from the snapshot, not its stale self
            return new.monitors[1].summary(), old.monitors[1].summary()
        finally:
            await aio.stop()

    taken_over, came_back = asyncio.run(run())
    assert taken_over["x"]["seen"] == 400 and taken_over["x"]["reference_n"] == DRIFT.reference_size
    assert came_back == taken_over


class _MarkerLost(FaustStyleSender):
    """A snapshot cut short: its machine records reach the broker, its marker never does (the
    writer killed, or the broker gone, between the two)."""

    async def send(self, topic: str, key: bytes, value: bytes, partition: int, _ts: Any, _headers: Any) -> Any:
        if key == MARKER_KEY:
            raise ConnectionError("the writer died before its marker")
        return await super().send(topic, key, value, partition, _ts, _headers)


async def _snapshot_cut_short(bootstrap: str, model_dir: Path) -> tuple[_Worker, list[list[RawMessage]], list[int]]:
    """The old owner snapshots completely, scores on, snapshots again but loses that marker,
    scores on and dies; the new owner starts at a commit below the second snapshot."""
    settings = Settings(kafka_bootstrap_servers=bootstrap, drift=DRIFT)
    await ensure_topics(bootstrap, ["sensor-readings", "maintenance-state"], PARTITIONS, compacted=["maintenance-state"])
    log = await _produce(bootstrap, FleetSimulator(FleetConfig(n_machines=16, seed=11)).live_readings(6_000))
    old, new = _Worker(settings, model_dir, restore=True), _Worker(settings, model_dir, restore=True)
    aio = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await aio.start()
    starts = []
    try:
        for p, messages in enumerate(log):
            n = len(messages)
            first, committed, second, died = n // 4, n // 3, n // 2, 2 * n // 3

            async def feed(worker: _Worker, lo: int, hi: int) -> None:
                for i in range(lo, hi, 250):
                    await worker.batch(messages[i : min(i + 250, hi)])

            await feed(old, 0, first)
            old.keeper._last_partition = p - 1
            assert await old.keeper.snapshot(old.scorer, FaustStyleSender(aio)) > 0
            await old.keeper.written()
            await feed(old, first, second)
            old.keeper._last_partition = p - 1
            assert await old.keeper.snapshot(old.scorer, _MarkerLost(aio)) > 0
            await old.keeper.written()  # the write fails after the records: logged, not raised
            await feed(old, second, died)
            await feed(new, committed, n)
            starts.append(committed)
    finally:
        await aio.stop()
    return new, log, starts


def test_a_snapshot_cut_short_before_its_marker_leaves_the_drift_detectors_exact(broker, trained_model_dir: Path) -> None:
    """Machines written at the second snapshot skip their readings since the first marker on
    replay (the state holds them); the partition's detectors must hold them all the same."""
    new, log, starts = asyncio.run(_snapshot_cut_short(broker.bootstrap, trained_model_dir))
    reference, drift = _reference(trained_model_dir, Settings(), log)
    live = [SensorReading.model_validate_json(m.value or b"").event_id for p, messages in enumerate(log)
            for m in messages[starts[p] :] if SensorReading.model_validate_json(m.value or b"").event_id in new.probabilities]
    wrong = sum(1 for e in live if abs(new.probabilities[e] - reference[e]) > 1e-4)
    assert live and wrong == 0, f"{wrong} of {len(live)} predictions of the new owner differ from the uninterrupted scorer's"
    # Only readings below the second snapshot may be skipped (their machines' states hold them).
    unanswered = [m.offset for messages in log for m in messages[len(messages) // 2 :]
                  if SensorReading.model_validate_json(m.value or b"").event_id not in new.probabilities]
    assert not unanswered, f"the new owner skipped readings past every snapshot: offsets {unanswered[:10]}"
    drifted = _drift_differences(new, drift)
    assert not drifted, drifted[:10]


async def _budget_hand_over(bootstrap: str, model_dir: Path) -> tuple[_Worker, _Worker, set[str], dict[bytes, bytes]]:
    """The old owner snapshots its partition with every machine, then its budget shrinks to
    three: the next snapshot must delete the forgotten machines from `maintenance-state`, so
    the new owner restores three machines, not every machine the partition ever had."""
    settings = Settings(kafka_bootstrap_servers=bootstrap, drift=DRIFT)
    await ensure_topics(bootstrap, ["sensor-readings", "maintenance-state"], PARTITIONS, compacted=["maintenance-state"])
    messages = (await _produce(bootstrap, FleetSimulator(FleetConfig(n_machines=16, seed=9)).live_readings(3_000)))[0]
    old = _Worker(settings, model_dir, restore=True)
    aio = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await aio.start()
    try:
        n = len(messages)

        async def feed(worker: _Worker, lo: int, hi: int) -> None:
            for i in range(lo, hi, 250):
                await worker.batch(messages[i : min(i + 250, hi)])

        async def snapshot() -> None:
            old.keeper._last_partition = -1
            await old.keeper.snapshot(old.scorer, FaustStyleSender(aio))
            await old.keeper.written()

        await feed(old, 0, n // 3)
        await snapshot()
        everyone = set(old.keeper.members[0])
        old.scorer.budget.max_entities = 3
        await feed(old, n // 3, 2 * n // 3)
        await snapshot()
        kept = {m for m in everyone | set(old.keeper.members[0]) if old.scorer.knows(m)}
        stored = await read_partition_latest(settings, "maintenance-state", 0)
        new = _Worker(settings.model_copy(update={"maintenance": settings.maintenance.model_copy(update={"max_machines": 3})}),
                      model_dir, restore=True)
        await feed(new, 2 * n // 3, n)
    finally:
        await aio.stop()
    assert len(everyone) > 3
    return old, new, kept, stored


def test_machines_the_budget_forgot_leave_the_state_topic(broker, trained_model_dir: Path) -> None:
    old, new, kept, stored = asyncio.run(_budget_hand_over(broker.bootstrap, trained_model_dir))
    machines = {k.decode() for k in stored if not k.startswith(b"\x00")}
    assert machines == kept and len(kept) == 3, (machines, kept)
    assert old.scorer.budget.evicted["budget"] > 0
    assert not old.keeper.tombstones[0] and set(old.keeper.members[0]) == kept
    assert new.scorer.entities <= 3
