"""Load harness: a stream's figures measured in one run, on one embedded broker, against
baselines and a peer measured in the same run.

    python -m load_tests.harness [--stream maintenance|supply-chain|demand|all] [--rate N | --max]
        [--events N] [--workers 1,2] [--machines N] [--gateway-batch N] [--out DIR]

Per stream, the same simulated events drive, case after case: the bare Faust agent
(load_tests/bare_agent.py; a plain aiokafka consumer then reads its input), the same
decode-and-forward in Quix Streams (load_tests/quix_forward.py; `load` extra), 1, then N
`stream-app worker` processes, and for maintenance one worker on gateway messages
(`--gateway-batch` readings per JSON array). Each case has its own topics and consumer group;
it starts its processes, waits until they have scored a warm-up (start-up, group join and model
load are not measured), then produces the events as fast as it can: a backlog. A paced
producer then drives one worker at half the one-worker rate (`--rate N`: at N; `--max`: no
paced cases) for the end-to-end latency, for maintenance also the bare agent (the latency of
Faust and the broker alone). In-process: naive scoring, the scorer alone and the state of an 8,000-machine fleet.
Writes JSON and a PNG into --out, prints a table and the targets (PASS / MISS).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import psutil
import torch

from load_tests import baselines, report
from load_tests.cluster import Launcher, Process, all_topic_names, case_topics, free_port
from load_tests.loadgen import (
    STREAM_SPECS, Feed, Message, SimulatedEvent, StreamSpec, feed_topics, simulate, split_events, to_messages,
)
from load_tests.measure import CaseResult
from load_tests.runner import Broker, Case, Drive, run_case
from stream_app.broker import EmbeddedBroker
from stream_app.kafka_io import ensure_topics
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings

WARM_UP_EVENTS = 200


class Run:
    """One harness run: the broker, where processes start, and the arguments."""

    def __init__(self, broker: Broker, launcher: Launcher, args: argparse.Namespace) -> None:
        self.broker = broker
        self.launcher = launcher
        self.args = args

    async def _feed(self, spec: StreamSpec, case: str, drive: Drive) -> Feed:
        """The case's own input topics, empty: the case produces into them."""
        fields = sorted({m.topic_field for m in [*drive.warm_up, *drive.messages]} | {spec.input_field})
        feed = Feed(spec, feed_topics(case, fields))
        await ensure_topics(self.broker.bootstrap, feed.topics.values(), self.broker.partitions)
        return feed

    async def workers(self, spec: StreamSpec, case: str, drive: Drive, n: int = 1, plain: bool = False,
                      env: Optional[dict[str, str]] = None) -> list[CaseResult]:
        feed = await self._feed(spec, case, drive)
        topics = case_topics(case, feed.topics)
        await ensure_topics(self.broker.bootstrap, all_topic_names(topics), self.broker.partitions)
        extra = _limits(drive.messages) | (env or {}) | dict(kv.split("=", 1) for kv in self.args.worker_env)
        app_id = f"load-{case}"

        def start() -> list[Process]:
            return [self.launcher.worker(f"{case}-{i}", app_id, topics, extra) for i in range(n)]

        output = topics[spec.output_field]
        return await self._run(Case(case, "worker", feed, output, app_id, start, drive, self.args.timeout), plain)

    async def bare_agent(self, spec: StreamSpec, case: str, drive: Drive, plain: bool = False) -> list[CaseResult]:
        return await self._forwarder(spec, case, drive, "bare-faust", self.launcher.bare_agent, plain)

    async def quix(self, spec: StreamSpec, case: str, drive: Drive) -> list[CaseResult]:
        """The peer: a Quix Streams application doing the bare agent's work (load_tests/quix_forward.py)."""
        if importlib.util.find_spec("quixstreams") is None:
            say(f"  {case}: skipped, quixstreams is not installed (pip install -e '.[load]')")
            return []
        return await self._forwarder(spec, case, drive, "quix", self.launcher.quix, False)

    async def _forwarder(self, spec: StreamSpec, case: str, drive: Drive, kind: str,
                         launch: Callable[[str, str, str, str], Process], plain: bool) -> list[CaseResult]:
        """A process that decodes each message and forwards it to `<case>.forwarded`."""
        feed = await self._feed(spec, case, drive)
        output = f"{case}.forwarded"
        await ensure_topics(self.broker.bootstrap, [output], self.broker.partitions)
        app_id = f"load-{case}"

        def start() -> list[Process]:
            return [launch(case, app_id, feed.input_topic, output)]

        return await self._run(Case(case, kind, feed, output, app_id, start, drive, self.args.timeout), plain)

    async def _run(self, case: Case, plain: bool) -> list[CaseResult]:
        """The case; with `plain`, then the plain consumer on the case's input, all in the topic now."""
        results = [await run_case(self.broker, case)]
        say(f"  {case.name}: {_summary(results[0])}")
        if plain:
            results.append(await baselines.plain_consumer(self.broker.bootstrap, case.feed))
            say(f"  {results[-1].case}: {_summary(results[-1])}")
        return results


def _limits(messages: Sequence[Message]) -> dict[str, str]:
    """Raise the workers' bad-input limits only as far as big gateway messages need."""
    extra, settings = {}, Settings()
    largest = max((len(m.value) for m in messages), default=0)
    most = max((len(m.event_ids) for m in messages), default=0)
    if largest > settings.max_message_bytes:
        extra["MAX_MESSAGE_BYTES"] = str(largest + 1024)
    if most > settings.max_events_per_message:
        extra["MAX_EVENTS_PER_MESSAGE"] = str(most)
    return extra


def _summary(r: CaseResult) -> str:
    rate = f"{r.events_per_s:,.0f} events/s" if r.events_per_s else "no rate"
    if r.sustained_per_s:
        rate += f" (sustained {r.sustained_per_s:,.0f})"
    lat = f", p99 {r.latency_ms['p99']:,.1f} ms" if r.mode == "paced" and r.latency_ms else ""
    if r.extra.get("longest_output_gap_s", 0) >= 1.0:
        lat += f", outputs stopped for {r.extra['longest_output_gap_s']:.1f} s once"
    notes = f" ({'; '.join(r.notes)})" if r.notes else ""
    return f"{rate}{lat}{notes}"


def say(text: str) -> None:
    print(text, flush=True)


def make_drive(
    spec: StreamSpec, events: Sequence[SimulatedEvent], gateway_batch: int = 1, rate: Optional[float] = None
) -> Drive:
    """Warm-up as single-event messages (every partition sees some), the rest as asked."""
    warm, measured = split_events(spec, events, WARM_UP_EVENTS)
    return Drive(to_messages(spec, warm), to_messages(spec, measured, gateway_batch), rate)


async def run_stream(run: Run, spec: StreamSpec) -> list[CaseResult]:
    args = run.args
    size = args.machines if spec.name == "maintenance" else None
    n = args.events or spec.default_events
    say(f"{spec.name}: {n:,} events" + (f" of {size:,} machines" if size else "") + f" after {WARM_UP_EVENTS} warm-up events")
    events = simulate(spec.name, WARM_UP_EVENTS + n, size)
    backlog = make_drive(spec, events)
    results = await run.bare_agent(spec, f"{spec.name}-bare", backlog, plain=True)
    results.extend(await run.quix(spec, f"{spec.name}-quix", backlog))
    for w in args.workers:
        results.extend(await run.workers(spec, f"{spec.name}-w{w}", backlog, w))
    if spec.name == "maintenance" and args.gateway_batch > 1:
        gateway = make_drive(spec, events, args.gateway_batch)
        results.extend(await run.workers(spec, f"{spec.name}-gateway{args.gateway_batch}-w1", gateway))
        results.extend(await run.workers(spec, f"{spec.name}-gateway{args.gateway_batch}-arrays-w1", gateway,
                                         env={"TOPIC_CONFIG__SENSOR_READINGS__ANSWER_ARRAYS": "true"}))

    if not args.max:
        rate = args.rate or _half_max(results)
        if rate:
            results.extend(await paced_cases(run, spec, size, rate))
        else:
            say("  paced cases skipped: no one-worker rate measured")
    return results


async def paced_cases(run: Run, spec: StreamSpec, size: Optional[int], rate: float) -> list[CaseResult]:
    """One worker at `rate`; for maintenance also the bare Faust agent at the same rate: the
    latency of Faust and the broker alone."""
    count = max(int(rate * run.args.paced_seconds), 1)
    # The backlog's simulated stream (its first events), so that the rate is half of what one
    # worker did on the same kind of load: another seed's demand stream closed 2.7x as many
    # series-days per sale, and its paced worker fell seconds behind at "half" its rate.
    paced = make_drive(spec, simulate(spec.name, WARM_UP_EVENTS + count, size), rate=rate)
    results = await run.workers(spec, f"{spec.name}-paced-w1", paced)
    if spec.name == "maintenance":
        results.extend(await run.bare_agent(spec, f"{spec.name}-paced-bare", paced))
    return results


def _half_max(results: Sequence[CaseResult]) -> Optional[float]:
    one = next((r for r in results if r.kind == "worker" and r.mode == "backlog" and r.workers == 1), None)
    max_rate = report.rate(one)
    return max_rate / 2 if max_rate else None


def in_process_cases(args: argparse.Namespace) -> list[CaseResult]:
    # As in a worker (stream_app/worker.py): one thread for inference.
    torch.set_num_threads(1)
    results = [
        baselines.naive_scoring(args.model_dir, args.naive_events, min(args.machines, 50)),
        *baselines.scorer_alone(args.model_dir, baselines.sensor_readings(args.events or 30_000, args.machines),
                                Settings().maintenance.batch_max),
    ]
    if args.memory_machines:
        results.append(baselines.memory_case(args.model_dir, args.memory_machines, args.memory_readings,
                                             Settings().maintenance.batch_max))
    for r in results:
        detail = f", {r.extra['state_bytes_per_machine']:,.0f} B/machine" if r.kind == "memory" else ""
        if "explanation_ms_per_alert" in r.extra:  # alerts include rule alerts (not explained): a lower bound
            detail = f", {r.extra['alerts']:,} alerts, >= {r.extra['explanation_ms_per_alert']:.1f} ms of explanation each"
        say(f"  {r.case}: {_summary(r)}{detail}")
    return results


def _busy_cpu_s() -> tuple[float, float]:
    """(CPU seconds every process on the machine used, CPU seconds this run used: the harness
    and the processes it started and waited for) since boot / since this process started."""
    system = psutil.cpu_times()
    idle = system.idle + getattr(system, "iowait", 0.0)
    ours = os.times()
    return sum(system) - idle, ours.user + ours.system + ours.children_user + ours.children_system


def _meta(
    args: argparse.Namespace, streams: Sequence[str], started: float, cpu_at_start: tuple[float, float], git_at_start: str
) -> dict[str, Any]:
    registry = ModelRegistry(args.model_dir)
    models = {}
    for name in streams:
        version = registry.current(name)
        models[name] = version.version if version else None
    system, ours = (now - before for now, before in zip(_busy_cpu_s(), cpu_at_start))
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        # Others' share: how shared the machine was while this ran.
        "cpu_seconds": {"machine": round(system, 1), "this_run": round(ours, 1), "others": round(max(system - ours, 0.0), 1)},
        "host": platform.node(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "python": platform.python_version(), "torch": torch.__version__,
        # Workers run the code checked out when each case starts: a commit during the run shows here.
        "git": _git_describe(), "git_at_start": git_at_start, "models": models, "model_dir": str(args.model_dir),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "lag_note": "lag = events produced - events answered by outputs (and - events before the group's "
                    "committed offsets); the embedded broker's end offsets are wrong after multi-record batches",
    }


def _git_describe() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_streams(args: argparse.Namespace, streams: Sequence[str], work_dir: Path) -> list[CaseResult]:
    # Started outside the event loop: the broker's readiness probe runs its own.
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_file=work_dir / "logs" / "broker.log") as broker:
        run = Run(Broker(broker.bootstrap, broker.pid, Settings().topic_partitions),
                  Launcher(broker.bootstrap, args.model_dir, work_dir), args)

        async def all_streams() -> list[CaseResult]:
            return [r for name in streams for r in await run_stream(run, STREAM_SPECS[name])]

        return asyncio.run(all_streams())


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", choices=[*STREAM_SPECS, "all"], default="maintenance")
    drive = parser.add_mutually_exclusive_group()
    drive.add_argument("--rate", type=float, help="paced case at N events/s (default: half the measured one-worker rate)")
    drive.add_argument("--max", action="store_true", help="backlog cases only: no paced latency case")
    parser.add_argument("--events", type=int, help="events per backlog (default per stream: maintenance 30000, "
                        "supply-chain 10000, demand 20000)")
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                        help="worker processes per backlog case, comma-separated (default 1,2)")
    parser.add_argument("--machines", type=int, default=2_000, help="simulated fleet size (maintenance)")
    parser.add_argument("--gateway-batch", type=int, default=100, help="readings per gateway message; 0: no gateway case")
    parser.add_argument("--paced-seconds", type=float, default=15.0, help="length of the paced case")
    parser.add_argument("--naive-events", type=int, default=1_000)
    parser.add_argument("--memory-machines", type=int, default=report.MEMORY_MACHINES, help="0: no memory case")
    parser.add_argument("--memory-readings", type=int, default=63,
                        help="readings per machine in the memory case (the explanation window is full by then)")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "model_store")))
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for every worker, e.g. MAINTENANCE__BATCH_MAX=1000 (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a case may take")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    streams = list(STREAM_SPECS) if args.stream == "all" else [args.stream]
    registry = ModelRegistry(args.model_dir)
    for name in streams:
        if registry.current(name) is None:
            say(f"WARNING: no {name} model in {args.model_dir}: its workers score with rules only "
                f"(`stream-app train {name}`, or --model-dir)")
    if "maintenance" in streams and registry.current("maintenance") is None:
        say("no maintenance model: the in-process cases are skipped")
    started, cpu_at_start, git_at_start = time.time(), _busy_cpu_s(), _git_describe()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        work_dir = Path(tmp)
        results = run_streams(args, streams, work_dir)
        logs = args.out / f"load-{stamp}-logs"
        shutil.copytree(work_dir / "logs", logs, dirs_exist_ok=True)
    if "maintenance" in streams and registry.current("maintenance") is not None:
        say("maintenance, in-process:")
        results.extend(in_process_cases(args))

    found = report.targets(results)
    meta = _meta(args, streams, started, cpu_at_start, git_at_start)
    json_path, png_path = args.out / f"load-{stamp}.json", args.out / f"load-{stamp}.png"
    report.write_json(json_path, results, found, meta)
    report.plot(png_path, results, f"stream-app load harness, {meta['date'][:10]}, {meta['cpus']} CPUs, git {meta['git']}")
    print()
    print(report.table(results))
    if "maintenance" in streams:  # the targets are the maintenance stream's
        print()
        print(report.targets_text(found))
    cpu = meta["cpu_seconds"]
    print(f"\n{meta['seconds']:.0f} s, {meta['cpus']} CPUs; CPU seconds: this run {cpu['this_run']:,.0f}, "
          f"other processes on the machine {cpu['others']:,.0f}")
    print(f"written: {json_path}, {png_path} (process logs: {logs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
