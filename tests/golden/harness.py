"""One golden run: the committed models served by one real worker on a fresh broker, the
committed input produced to the input topics (same keys, same order, every time), and every
output topic read back. Shared by the capture (tests/golden/capture.py) and the test, so both
run exactly this path."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from schemas import SensorReading, SupplyChainTransaction
from stream_app.decoding import decode_message
from tests.integration.kafka_clients import OutputReader, produce

HERE = Path(__file__).parent
INPUT, MODELS, EXPECTED = HERE / "input", HERE / "models", HERE / "expected"
PARTITIONS = 4  # of every topic (TOPIC_PARTITIONS' default): where each input key lands depends on it

# Send order: every input is in its topic before the worker starts, so what a worker reads
# beside its own partitions is whole before its first batch: the demand calendar (the sales
# agent waits for the calendar reader's first pass) and the supply-chain graph follower's view
# of all transactions and verdicts (each scoring batch waits until the follower has read what
# the topics held when the batch came). With input still arriving, what the follower had read
# by each batch, and so each score, would depend on timing.
INPUT_TOPICS = ("demand-calendar", "sensor-readings", "maintenance-outcomes", "supply-chain-transactions",
                "supply-chain-verdicts", "sales-events")

# Each output topic and the field that identifies its messages (schemas/outputs.py, schemas/sales.py,
# schemas/supply_chain.py).
ID_FIELDS = {
    "maintenance-predictions": "prediction_id",
    "supply-chain-scores": "score_id",
    "demand-forecasts": "forecast_id",
    "alerts": "alert_id",
    "explanations": "alert_id",
    "dead-letters": "dead_letter_id",
    "drift-events": "drift_id",
}
OUTPUT_TOPICS = list(ID_FIELDS)

# Settings of the golden worker beyond the test defaults (tests/conftest.py: start_worker).
WORKER_ENV: dict[str, str] = {
    # Drift reports from a few days of input: the default reference (2000 values per partition)
    # is more than a partition holds here.
    "DRIFT__REFERENCE_SIZE": "200",
    # Each scoring batch waits for the graph follower to have read what the topics hold (see
    # INPUT_TOPICS); the default 1 s may run out on a loaded machine, and a score would then
    # depend on how far the follower got. The wait ends as soon as it has caught up.
    "SUPPLY_CHAIN__GRAPH_SYNC_TIMEOUT_S": "15",
    # Node embeddings are recomputed in a background thread once the follower has applied 1000
    # transactions (or after 30 s), and a batch scored before the new table is in place uses the
    # old one: which batches do depends on thread timing (without these, a run scored every
    # transaction with the refreshed table, mostly; with the model's own table 2,165 figures of
    # 1,200 scores differ). So the golden run keeps the table computed at load.
    "SUPPLY_CHAIN__EMBEDDING_REFRESH_EVERY": "1000000000",
    "SUPPLY_CHAIN__EMBEDDING_REFRESH_S": "1000000000",
}

Message = tuple[Optional[bytes], bytes]
Outputs = dict[str, list[dict[str, Any]]]


class WorkerLike(Protocol):
    def alive(self) -> bool: ...
    def log(self) -> str: ...


StartWorker = Callable[..., WorkerLike]


def read_input(topic: str) -> list[Message]:
    """The messages of one input topic, as bytes, in send order (format: build_input.py)."""
    messages: list[Message] = []
    for line in (INPUT / f"{topic}.jsonl").read_text().splitlines():
        row = json.loads(line)
        key = row["key"].encode() if row["key"] is not None else None
        if "value" in row:
            value = json.dumps(row["value"]).encode()
        elif "text" in row:
            value = row["text"].encode()
        else:
            value = base64.b64decode(row["b64"])
        messages.append((key, value))
    return messages


@lru_cache(maxsize=None)
def valid_events(topic: str, model: Any) -> frozenset[str]:
    """The event ids of an input topic the worker accepts (each must get its answer)."""
    return frozenset(e.event_id for _, value in read_input(topic) for e in decode_message(value, model).events)


def unanswered(outputs: Outputs) -> set[str]:
    """Valid readings without a prediction and valid transactions without a score."""
    return ((valid_events("sensor-readings", SensorReading) - {p["event_id"] for p in outputs["maintenance-predictions"]})
            | (valid_events("supply-chain-transactions", SupplyChainTransaction)
               - {s["event_id"] for s in outputs["supply-chain-scores"]}))


def create_topics(bootstrap: str) -> None:
    """As the worker would create them, before anything is produced (a produce to a missing
    topic would create it with the broker's defaults)."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **WORKER_ENV}
    done = subprocess.run([sys.executable, "-m", "stream_app", "topics", "create"], env=env, capture_output=True, text=True)
    if "created" not in done.stdout:
        raise RuntimeError(f"topics not created:\n{done.stdout}\n{done.stderr}")


def expected_outputs_present(golden: Outputs) -> Callable[[OutputReader], bool]:
    """Done when every golden id of every topic has arrived."""
    wanted = {topic: {m[ID_FIELDS[topic]] for m in messages} for topic, messages in golden.items()}

    def done(reader: OutputReader) -> bool:
        return all(ids <= {m[ID_FIELDS[t]] for m in reader.messages[t]} for t, ids in wanted.items())

    return done


def quiet_for(seconds: float, at_least: Callable[[OutputReader], bool]) -> Callable[[OutputReader], bool]:
    """Done when `at_least` holds and no output came for `seconds`: the capture's rule (it knows
    no golden ids yet), and the test's when outputs differ (they will never all arrive)."""
    last = {"count": -1, "since": time.monotonic()}

    def done(reader: OutputReader) -> bool:
        count = sum(len(v) for v in reader.messages.values())
        if count != last["count"]:
            last.update(count=count, since=time.monotonic())
        return at_least(reader) and time.monotonic() - last["since"] >= seconds

    return done


def either(*rules: Callable[[OutputReader], bool]) -> Callable[[OutputReader], bool]:
    return lambda reader: any([rule(reader) for rule in rules])  # every rule sees every poll


def run(bootstrap: str, start_worker: StartWorker, workdir: Path, done: Callable[[OutputReader], bool],
        timeout: float = 120.0, settle: float = 2.0) -> Outputs:
    """Produce the whole input through one worker and read every output topic until `done` or
    `timeout` (what came by then is returned), then `settle` seconds more for stragglers.
    Raises when the worker died."""
    models = workdir / "models"
    shutil.copytree(MODELS, models)  # workers write live counters into the store
    create_topics(bootstrap)
    for topic in INPUT_TOPICS:
        produce(bootstrap, topic, read_input(topic))
    worker = start_worker(models, **WORKER_ENV)
    reader = OutputReader(bootstrap, OUTPUT_TOPICS, PARTITIONS)
    try:
        if reader.until(done, timeout=timeout, alive=worker.alive):
            reader.poll(settle)
    finally:
        reader.close()
    if not worker.alive():
        raise AssertionError(f"the worker died; its log:\n{worker.log()[-4000:]}")
    return {topic: list(reader.messages[topic]) for topic in OUTPUT_TOPICS}
