"""Capture the golden outputs: what the product publishes for the committed input on the
committed models.

    python -m tests.golden.capture [--out DIR]

Run it only when the outputs change on purpose (a model, scoring or message change meant to
change them), and say why in the commit: the test (test_golden_outputs.py) then holds the
product to the new outputs. It runs the same path as the test (tests/golden/harness.py: a fresh
embedded broker, one worker, the input sent in its fixed order), waits until every valid
reading and transaction has its answer and nothing more arrives for a few seconds, and writes
one gzip JSON Lines file per output topic to tests/golden/expected/ (or DIR), deduplicated by
id, sorted by id, wall-clock fields left out. Two captures should be equal by the rules of
tests/golden/compare.py (capture once more with `--out` another folder to check).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stream_app.broker import EmbeddedBroker
from tests.conftest import WorkerProcess, free_port
from tests.golden import harness
from tests.golden.compare import ABS, REL, normalize, repeats_that_differ, write_expected
from tests.golden.thresholds import on_threshold
from tests.integration.kafka_clients import OutputReader

QUIET_S = 5.0


def _launcher(bootstrap: str, workdir: Path, started: list[WorkerProcess]) -> harness.StartWorker:
    """Starts workers as tests/conftest.py's start_worker does (`started`: to stop them)."""

    def start(model_dir: Path, **env: str) -> WorkerProcess:
        log_path = workdir / "worker.log"
        full_env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MODEL_DIR": str(model_dir),
                    "DATA_DIR": str(workdir / "data"), "METRICS_PORT": "0", "BROKER_REBALANCE_TIMEOUT_S": "4",
                    "PYTHONUNBUFFERED": "1", **env}
        proc = subprocess.Popen([sys.executable, "-m", "stream_app", "worker"], stdout=open(log_path, "ab"),  # noqa: SIM115
                                stderr=subprocess.STDOUT, env=full_env)
        started.append(WorkerProcess(proc, log_path))
        return started[-1]

    return start


def capture(out: Path) -> harness.Outputs:
    def answered(reader: OutputReader) -> bool:
        return not harness.unanswered(reader.messages)

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_file=workdir / "broker.log") as broker:
            started: list[WorkerProcess] = []
            try:
                outputs = harness.run(broker.bootstrap, _launcher(broker.bootstrap, workdir, started), workdir,
                                      harness.quiet_for(QUIET_S, answered), timeout=300.0, settle=0.0)
            finally:
                for worker in started:
                    worker.stop()
    missing = harness.unanswered(outputs)
    if missing:
        raise SystemExit(f"capture incomplete, nothing written: {len(missing)} valid events unanswered, e.g. {sorted(missing)[:5]}")
    repeats = repeats_that_differ(outputs)
    if repeats:
        raise SystemExit("a message published twice differs from its first copy, nothing written:\n" + "\n".join(repeats[:20]))
    golden = normalize(outputs)
    write_expected(golden, out)
    return golden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=harness.EXPECTED)
    golden = capture(parser.parse_args().out)
    for topic, messages in golden.items():
        print(f"{topic}: {len(messages)}")
    # Their decisions may flip with float noise; the test lets them.
    print(f"events on a decision threshold: {sorted(on_threshold(golden, harness.MODELS, REL, ABS)) or 'none'}")


if __name__ == "__main__":
    main()
