"""Faults under steady load: every input event is answered at least once, whatever happens to
workers and broker. Run on its own with `make test-faults`.

Workers are real processes; the load is a real producer at a steady rate; faults are real
signals: kill -9 mid-batch, clean stops and restarts, a group growing from one to three
workers and back, and the broker frozen (SIGSTOP) for longer than the session timeout."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from stream_app.simulation.maintenance import FleetConfig, FleetSimulator
from tests.faults.verifier import check_state, reference_probabilities, verify
from tests.integration.kafka_clients import OutputReader, SteadyProducer

pytestmark = [pytest.mark.faults, pytest.mark.slow]

MAX_STATE_MISMATCH = 0.03  # share of predictions allowed to differ from the reference (see below)
TOPICS = ["maintenance-predictions", "alerts", "explanations", "dead-letters"]


def test_no_event_is_lost_through_kills_restarts_rebalances_and_a_frozen_broker(
    broker, start_worker, trained_model_dir: Path, tmp_path: Path
) -> None:
    events = FleetSimulator(FleetConfig(n_machines=60, seed=21)).live_readings(24_000)
    faults: list[str] = []
    first = start_worker(trained_model_dir)
    time.sleep(6)  # joined
    producer = SteadyProducer(broker.bootstrap, events, rate=600)
    started = time.monotonic()
    producer.start()

    time.sleep(5)
    second, third = start_worker(trained_model_dir), start_worker(trained_model_dir)
    faults.append("rebalance: 1 -> 3 workers")
    time.sleep(8)
    second.stop(signal.SIGKILL)
    faults.append("kill -9 worker 2 mid-batch")
    time.sleep(6)
    third.stop(signal.SIGTERM)
    faults.append("clean stop of worker 3 (3 -> 1)")
    time.sleep(4)
    broker.pause()
    time.sleep(12)  # longer than the 8 s session timeout
    broker.resume()
    faults.append("broker frozen (SIGSTOP) for 12 s")
    time.sleep(4)
    first.stop(signal.SIGKILL)
    faults.append("kill -9 worker 1")
    restarted = start_worker(trained_model_dir)
    faults.append("restart after kill")
    producer.join(timeout=120)
    assert not producer.failed, f"{len(producer.failed)} events the broker never acknowledged"

    reader = OutputReader(broker.bootstrap, TOPICS, 4)
    expected = [e["event_id"] for e in events]
    try:
        done = reader.until(lambda r: not verify(r, expected, producer.broken).missing, timeout=180, alive=restarted.alive)
        caught_up = time.monotonic() - started
        reader.poll(2.0)
        verdict = verify(reader, expected, producer.broken)
        broken_ids = set(producer.broken.values())
        sent = [e for e in events if e["event_id"] not in broken_ids]
        state = check_state(reader, reference_probabilities(trained_model_dir, sent))
    finally:
        reader.close()
    report = (f"faults: {faults}; {verdict.summary()}; all answered {caught_up:.0f}s after the start; "
              f"{state.summary()}")
    (tmp_path / "verdict.txt").write_text(report)
    print(report)
    assert done and not verdict.missing, f"{report}; first missing: {verdict.missing[:10]}; log:\n{restarted.log()[-3000:]}"
    # Machine state moved between workers with its partitions (snapshot + replay), so no
    # machine warmed up again: predictions, duplicates included, are the reference ones. Most
    # runs match exactly; some interleavings of rebalances leave a few machines slightly off
    # (1.4 % of predictions in one CI run, an open issue). Without the hand-over ~10 % differ.
    assert state.compared >= len(sent), report
    assert len(state.mismatched) <= MAX_STATE_MISMATCH * state.compared, f"{report}; first: {state.mismatched[:5]}"
