"""One worker's scoring throughput on the embedded broker, against a plain consumer baseline.

    python -m load_tests.worker_throughput [--readings 30000] [--machines 2000] [--gateway-batch 100]

A short version of the load harness (load_tests/harness.py, whose modules it uses): on one
embedded broker, one worker process scores a backlog of simulated readings in single-reading
messages, then in gateway messages that each carry `--gateway-batch` readings; a plain aiokafka
consumer that only decodes JSON reads the single-reading backlog (the ceiling of reading the
topic from Python). Each worker first scores a warm-up, so start-up and the group join are not
measured; its rate runs from its first prediction of the backlog to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from load_tests import harness
from load_tests.cluster import Launcher, free_port
from load_tests.loadgen import STREAM_SPECS, simulate
from load_tests.measure import CaseResult
from load_tests.runner import Broker
from stream_app.broker import EmbeddedBroker
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings


def _figures(worker: CaseResult, plain: Optional[CaseResult]) -> dict[str, Any]:
    out = {"readings": worker.events, "messages": worker.messages, "scored": worker.answered,
           "worker_readings_per_s": worker.events_per_s or 0.0}
    if plain is not None:
        out["plain_consumer_msgs_per_s"] = plain.events_per_s or 0.0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=30_000)
    parser.add_argument("--machines", type=int, default=2_000)
    parser.add_argument("--gateway-batch", type=int, default=100)
    parser.add_argument("--model-dir", type=Path, default=Path("model_store"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    if ModelRegistry(args.model_dir).current("maintenance") is None:
        print(f"no maintenance model in {args.model_dir}: run `stream-app train maintenance` first", file=sys.stderr)
        return 2
    spec = STREAM_SPECS["maintenance"]
    events = simulate(spec.name, harness.WARM_UP_EVENTS + args.readings, args.machines)
    run_args = harness.parse_args(["--model-dir", str(args.model_dir), "--machines", str(args.machines)])
    with tempfile.TemporaryDirectory(prefix="load-") as tmp, EmbeddedBroker(f"127.0.0.1:{free_port()}") as broker:
        run = harness.Run(Broker(broker.bootstrap, broker.pid, Settings().topic_partitions),
                          Launcher(broker.bootstrap, args.model_dir, Path(tmp)), run_args)

        async def cases() -> tuple[list[CaseResult], list[CaseResult]]:
            single = await run.workers(spec, "single", harness.make_drive(spec, events), plain=True)
            gateway = await run.workers(spec, "gateway", harness.make_drive(spec, events, args.gateway_batch))
            return single, gateway

        (single, plain), (gateway,) = asyncio.run(cases())

    print(f"\n{single.events} readings of {args.machines} machines, one worker process, embedded broker")
    print(f"{'case':<46}{'per second':>12}")
    print(f"{'plain aiokafka consumer, json.loads only':<46}{plain.events_per_s or 0:>12,.0f}")
    print(f"{'worker, one reading per message':<46}{single.events_per_s or 0:>12,.0f}")
    print(f"{f'worker, {args.gateway_batch} readings per gateway message':<46}{gateway.events_per_s or 0:>12,.0f}")
    if single.events_per_s and plain.events_per_s:
        print(f"worker / plain consumer (single): {single.events_per_s / plain.events_per_s:.2f}")
    for name, case in (("single", single), ("gateway", gateway)):
        if case.answered < case.events:
            print(f"WARNING: {name}: only {case.answered} of {case.events} predictions seen")
    if args.json:
        args.json.write_text(json.dumps({"single": _figures(single, plain), "gateway": _figures(gateway, None)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
