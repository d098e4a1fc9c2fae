"""Faults under steady load: every input event of every stream is answered at least once,
whatever happens to workers and broker. Run on its own with `make test-faults`.

Workers are real processes; the load is a real producer at a steady rate carrying the three
streams' input events (sensor readings, supply-chain transactions, sales); faults are real
signals: kill -9 mid-batch, clean stops and restarts, a group growing from one to three
workers and back, and the broker frozen (SIGSTOP) for longer than the session timeout.

What answers an event, per stream (tests/faults/verifier.py):
* maintenance: a prediction naming the reading, or a dead letter; predictions match an
  uninterrupted scorer's (per-machine state moved with the partitions);
* supply chain: a score naming the transaction, or a dead letter. Scores are not compared with a
  reference: a worker scores against the graph its follower has read so far (it waits at most
  graph_sync_timeout_s), so they depend on timing, not on the input alone;
* demand: a sale is answered by the forecast of its series for the day it counts in (published
  with the sale that closed the day), or by a dead letter; every forecast the sent sales closed
  must be published, with the values an uninterrupted scorer computes.

`trained_model_dir` holds a maintenance model only: supply chain and demand run their rule
fallbacks (rules-only scores; moving-average forecasts), which answer every event all the same
and exercise the same agents, intake, partition state and commits."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from stream_app.settings import DriftSettings
from tests.conftest import WorkerProcess, wait_for
from tests.faults.drift_reference import check_drift
from tests.faults.load import steady_load
from tests.faults.verifier import (
    DemandVerdict, Verdict, check_state, demand_reference, reference_probabilities, verify, verify_demand,
)
from tests.integration.kafka_clients import OutputReader, SteadyProducer, read_raw

pytestmark = [pytest.mark.faults, pytest.mark.slow]

TOPICS = ["maintenance-predictions", "supply-chain-scores", "demand-forecasts", "alerts", "explanations", "dead-letters",
          "drift-events"]
# Drift detectors with a short reference, so they report drifts within this load; the reference
# monitors of the check use the same settings.
DRIFT = DriftSettings(reference_size=300, min_effect=0.5)
WORKER_ENV = {"DRIFT__REFERENCE_SIZE": "300", "DRIFT__MIN_EFFECT": "0.5"}
# ~50 s of load, through every fault below. Other streams at modest rates: 2 cores carry the
# broker, up to three workers and this producer. 60 sales/s is ~25 simulated days (~1,100 forecasts).
SECONDS, READINGS_PER_S, TRANSACTIONS_PER_S, SALES_PER_S = 50, 600, 30, 60
READY = "[^Worker]: Ready"  # a worker's log line once it joined the group and got its partitions


def test_no_event_is_lost_through_kills_restarts_rebalances_and_a_frozen_broker(
    broker, start_worker, trained_model_dir: Path, tmp_path: Path
) -> None:
    load = steady_load(SECONDS, READINGS_PER_S, TRANSACTIONS_PER_S, SALES_PER_S)
    faults: list[str] = []
    first = start_worker(trained_model_dir, **WORKER_ENV)
    assert wait_for(lambda: READY in first.log(), 60, 0.5), first.log()[-3000:]
    producer = SteadyProducer(broker.bootstrap, load.messages, rate=load.rate)
    started = time.monotonic()
    producer.start()
    numbered = {1: first}

    def fault(what: str, *workers: WorkerProcess) -> None:
        """Note a fault with its time; and a worker it targets that had already exited (a crash
        nobody planned: the fault did not happen, so the report says so)."""
        exited = [f"worker {n} had already exited (rc {w.proc.returncode}): "
                  f"{next((line for line in reversed(w.log().splitlines()) if 'ERROR' in line), 'no error logged')[:300]}"
                  for n, w in numbered.items() if w in workers and not w.alive()]
        faults.append(f"{what} @{time.monotonic() - started:.0f}s" + "".join(f" [{e}]" for e in exited))

    time.sleep(5)
    second, third = start_worker(trained_model_dir, **WORKER_ENV), start_worker(trained_model_dir, **WORKER_ENV)
    numbered.update({2: second, 3: third})
    # Wait until both are in the group: starting a worker takes 10-15 s on a loaded 2-core
    # machine, and a fixed pause killed worker 2 before it had run a line of its own.
    joined = wait_for(lambda: READY in second.log() and READY in third.log(), 45, 0.5)
    fault("rebalance: 1 -> 3 workers" + ("" if joined else " (not all ready within 45 s)"), first, second, third)
    time.sleep(3)  # scoring their partitions
    fault("kill -9 worker 2 mid-batch", second)
    second.stop(signal.SIGKILL)
    time.sleep(6)
    fault("clean stop of worker 3 (3 -> 1)", third)
    third.stop(signal.SIGTERM)
    time.sleep(4)
    fault("broker frozen (SIGSTOP) for 12 s", first)
    broker.pause()
    time.sleep(12)  # longer than the 8 s session timeout
    broker.resume()
    time.sleep(4)
    fault("kill -9 worker 1", first)
    first.stop(signal.SIGKILL)
    restarted = start_worker(trained_model_dir, **WORKER_ENV)
    fault("restart after kill")
    producer.join(timeout=120)
    assert not producer.failed, f"{len(producer.failed)} events the broker never acknowledged"

    # The sales as the topic holds them, in each partition's order: what the group was handed.
    sales = read_raw(broker.bootstrap, "sales-events", producer.delivered["sales-events"])
    assert len(sales) >= producer.delivered["sales-events"], \
        f"the broker acknowledged {producer.delivered['sales-events']} sales, the topic holds {len(sales)}"
    demand_expected = demand_reference(trained_model_dir, sales)
    readings = [e["event_id"] for e in load.readings]
    transactions = [m.value["event_id"] for m in load.transactions]

    def verdicts(r: OutputReader) -> tuple[Verdict, Verdict, DemandVerdict]:
        return (verify(r, readings, producer.broken, source_topic="sensor-readings", stream="maintenance"),
                verify(r, transactions, producer.broken, "supply-chain-scores", "supply-chain-transactions", "supply chain"),
                verify_demand(r, demand_expected))

    def complete(r: OutputReader) -> bool:
        maintenance, supply_chain, demand = verdicts(r)
        return not maintenance.missing and not supply_chain.missing and demand.complete

    reader = OutputReader(broker.bootstrap, TOPICS, 4)
    try:
        reader.until(complete, timeout=180, alive=restarted.alive)
        caught_up = time.monotonic() - started
        reader.poll(2.0)
        maintenance, supply_chain, demand = verdicts(reader)
        broken_ids = set(producer.broken.values())
        sent = [e for e in load.readings if e["event_id"] not in broken_ids]
        state = check_state(reader, reference_probabilities(trained_model_dir, sent))
        drift = check_drift(broker.bootstrap, trained_model_dir, DRIFT, 4, reader.messages["drift-events"])
    finally:
        reader.close()
    report = (f"faults: {faults}; {maintenance.summary()}; {supply_chain.summary()}; {demand.summary()}; "
              f"outputs {maintenance.by_topic}; all answered {caught_up:.0f}s after the start; {state.summary()}; "
              f"{drift.summary()}")
    (tmp_path / "verdict.txt").write_text(report)
    partition_of = {r.key.decode(): r.partition for r in sales if r.key}
    (tmp_path / "missing.json").write_text(json.dumps({
        "maintenance": maintenance.missing, "supply_chain": supply_chain.missing, "demand_sales": demand.missing,
        "demand_forecasts": demand.missing_forecasts, "demand_dead_letters": demand.missing_dead_letters,
        "demand_mismatched": [(key, copy, partition_of.get(key[0]), diffs) for key, copy, diffs in demand.mismatched],
        "demand_unexpected": demand.unexpected}, indent=1))
    if not demand.complete or demand.mismatched or demand.unexpected:  # for a post-mortem
        with open(tmp_path / "sales-events.jsonl", "w") as out:
            for r in sales:
                out.write(json.dumps({"partition": r.partition, "offset": r.offset, "value": (r.value or b"").decode(errors="replace")}) + "\n")
        with open(tmp_path / "demand-forecasts.jsonl", "w") as out:
            for f in reader.messages["demand-forecasts"]:
                out.write(json.dumps(f) + "\n")
    print(report)
    crashed = [f for f in faults if "had already exited" in f]
    assert not crashed, f"a worker died before the fault meant for it (no worker may die of a fault it survives): {crashed}"
    log = restarted.log()[-3000:]
    assert not maintenance.missing, f"{report}; first missing readings: {maintenance.missing[:10]}; log:\n{log}"
    assert not supply_chain.missing, f"{report}; first missing transactions: {supply_chain.missing[:10]}; log:\n{log}"
    assert demand.complete, (f"{report}; first missing forecasts {demand.missing_forecasts[:10]}, dead letters "
                             f"{demand.missing_dead_letters[:10]}, sales {demand.missing[:10]}; log:\n{log}")
    # A failable demand check: the sales closed days (and were not all still pending).
    assert demand.expected_forecasts > 0 and demand.answered > demand.pending, report
    # Demand state per partition is rebuilt by replaying its sales on assignment, exactly
    # (agents/demand.py; the scorer's replay alone reproduces the uninterrupted forecasts at any
    # cut), and rule forecasts are deterministic: every copy of every forecast is the
    # reference's, and nothing else is published. missing.json and the .jsonl files in the
    # test's tmp dir are written for a post-mortem.
    assert not demand.unexpected, f"{report}; unexpected: {demand.unexpected[:5]}"
    assert not demand.mismatched, f"{report}; first differing (forecast, copy, fields): {demand.mismatched[:5]}"
    # Machine state moved between workers with its partitions (snapshot + replay), so no
    # machine warmed up again: predictions, duplicates included, are the reference ones
    # (without the hand-over ~10 % differ). Runs with the drift-state Faust table differed by
    # up to 1.4 %: its changelog recovery let inputs be read twice or skipped (agents/drift.py).
    assert state.compared >= len(sent), report
    assert not state.mismatched, f"{report}; first: {state.mismatched[:5]}"
    # Drift detectors moved with their partitions too (in the partition markers, fed during the
    # replay): each partition's statistics are those of one monitor fed its readings in order,
    # and the drift events published are exactly the reference's.
    assert drift.partitions == 4 and drift.statistics > 0, report
    assert not drift.differences, f"{report}; {drift.differences[:5]}"
    assert drift.events_expected > 0, f"{report}: the load must make the detectors report drifts"
    assert not drift.events_missing and not drift.events_unexpected, \
        f"{report}; missing {drift.events_missing[:5]}, unexpected {drift.events_unexpected[:5]}"
