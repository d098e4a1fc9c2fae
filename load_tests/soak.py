"""Soak: one `stream-app worker` under entity churn for a long run, its memory sampled
throughout. Once each stream's state budget is reached, resident memory must stay flat.

    python -m load_tests.soak [--readings 1000000] [--machines 200000] [--transactions 200000]
        [--nodes 60000] [--sales 100000] [--series 40000] [--max-machines 20000]
        [--max-nodes 20000] [--max-series 20000] [--model-dir model_store] [--out var/load/soak]

Events are the simulators' own, re-keyed so that ids churn: reading i belongs to machine
i * machines / readings (about five readings each, then the machine is never heard of again),
transaction i to nodes drawn from a window that slides over `nodes` ids, sale i to a SKU of a
window sliding over `series` SKU x market series. Event time advances throughout (a reading
every 6 s, a transaction every 30 s, a sale every 10 s: machines also go idle, and each closed
day forecasts every series a worker keeps, demand's cost). They go out
as gateway arrays of 100 events, a chunk at a time, the producer waiting while the worker is more
than a chunk behind. Every second: the worker's RSS (psutil); every two: its metrics (events
scored, entities kept, evictions). Writes `OUT/soak.json` and `OUT/soak.png` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import psutil

from load_tests.cluster import Launcher, free_port
from load_tests.loadgen import simulate
from stream_app.broker import EmbeddedBroker
from stream_app.kafka_io import ensure_topics, json_producer
from stream_app.settings import Settings, Topics
from stream_app.worker import contract_topics

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
ARRAY = 100  # events per gateway message
CHUNK = 20_000  # events produced before checking how far behind the worker is
STREAMS = ("maintenance", "supply_chain", "demand")


@dataclass
class Samples:
    rss: list[tuple[float, float]] = field(default_factory=list)  # (s since start, MB)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # s, scored / entities / evicted per stream


class RssSampler(threading.Thread):
    def __init__(self, pid: int, samples: Samples, started: float) -> None:
        super().__init__(daemon=True)
        self.process, self.samples, self.started = psutil.Process(pid), samples, started
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            try:
                self.samples.rss.append((time.monotonic() - self.started, self.process.memory_info().rss / 2**20))
            except psutil.Error:
                return


_METRIC = re.compile(r'^stream_app_(events_total|state_entities|state_evictions_total)\{([^}]*)\} ([0-9.e+-]+)$')


def scrape(port: int) -> dict[str, dict[str, float]]:
    """stream -> scored, entities, evicted (budget + idle), from the worker's /metrics."""
    out: dict[str, dict[str, float]] = {s: {"scored": 0.0, "entities": 0.0, "evicted": 0.0} for s in STREAMS}
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        m = _METRIC.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(kv.split("=", 1) for kv in m.group(2).split(",")), float(m.group(3))
        stream = labels.get("stream", "").strip('"').replace("-", "_")
        if stream not in out:
            continue
        if name == "events_total" and labels.get("outcome", "").strip('"') == "scored":
            out[stream]["scored"] += value
        elif name == "state_entities":
            out[stream]["entities"] = value
        elif name == "state_evictions_total":
            out[stream]["evicted"] += value
    return out


def churned(args: argparse.Namespace) -> dict[str, Iterator[dict[str, Any]]]:
    """Each stream's events, re-keyed so that entity ids churn (module docstring)."""
    templates = {
        "maintenance": [v for f, v, _ in simulate("maintenance", 3000, 40) if f == "sensor_readings"],
        "supply_chain": [v for f, v, _ in simulate("supply-chain", 3000, None) if f == "supply_chain_transactions"],
        "demand": [v for f, v, _ in simulate("demand", 3000, None) if f == "sales_events"],
    }

    def readings() -> Iterator[dict[str, Any]]:
        t = templates["maintenance"]
        for i in range(args.readings):
            machine = i * args.machines // args.readings
            yield {**t[i % len(t)], "event_id": f"soak-r{i}", "machine_id": f"churn-m{machine}", "cycle": None,
                   "ts": (T0 + timedelta(seconds=6 * i)).isoformat()}

    def transactions() -> Iterator[dict[str, Any]]:
        t, window = templates["supply_chain"], max(50, args.nodes // 20)
        for i in range(args.transactions):
            base = i * (args.nodes - window) // max(1, args.transactions)
            src, dst = base + (i * 7919) % window, base + (i * 104729 + 13) % window
            yield {**t[i % len(t)], "event_id": f"soak-t{i}", "shipment_id": f"soak-s{i}", "lot_id": f"soak-l{i // 3}",
                   "source_id": f"churn-n{src}", "target_id": f"churn-n{dst}",
                   "ts": (T0 + timedelta(seconds=30 * i)).isoformat()}

    def sales() -> Iterator[dict[str, Any]]:
        t, window = templates["demand"], max(50, args.series // 20)
        for i in range(args.sales):
            base = i * (args.series - window) // max(1, args.sales)
            row = t[i % len(t)]
            yield {**row, "event_id": f"soak-d{i}", "sku": f"churn-sku{base + (i * 7919) % window}",
                   "ts": (T0 + timedelta(seconds=10 * i)).isoformat()}

    return {"maintenance": readings(), "supply_chain": transactions(), "demand": sales()}


async def produce(bootstrap: str, topics: Topics, args: argparse.Namespace, port: int, samples: Samples,
                  started: float) -> dict[str, int]:
    names = {"maintenance": topics.sensor_readings, "supply_chain": topics.supply_chain_transactions,
             "demand": topics.sales_events}
    totals = {"maintenance": args.readings, "supply_chain": args.transactions, "demand": args.sales}
    sent = {s: 0 for s in STREAMS}
    sources = churned(args)
    producer = json_producer(bootstrap, max_request_size=8_000_000)
    await producer.start()
    try:
        while any(sent[s] < totals[s] for s in STREAMS):
            for s in STREAMS:  # a chunk of each stream, in proportion to its total
                share = min(totals[s] - sent[s], max(ARRAY, CHUNK * totals[s] // max(totals.values())))
                pending = []
                for first in range(0, share, ARRAY):
                    batch = [next(sources[s]) for _ in range(min(ARRAY, share - first))]
                    key = f"gw-{(sent[s] + first) // ARRAY % 64}".encode()
                    pending.append(await producer.send(names[s], json.dumps(batch).encode(), key=key))
                await asyncio.gather(*pending)
                sent[s] += share
            while True:  # the worker at most about a chunk behind on every stream
                state = await asyncio.to_thread(scrape, port)
                samples.metrics.append({"s": time.monotonic() - started, **state})
                if all(sent[s] - state[s]["scored"] <= 1.5 * CHUNK for s in STREAMS):
                    break
                await asyncio.sleep(2.0)
    finally:
        await producer.stop()
    return sent


async def drain(port: int, sent: dict[str, int], samples: Samples, started: float, timeout: float) -> None:
    deadline, last, still = time.monotonic() + timeout, None, 0
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(scrape, port)
        samples.metrics.append({"s": time.monotonic() - started, **state})
        scored = tuple(state[s]["scored"] for s in STREAMS)
        still = still + 1 if scored == last else 0
        if all(state[s]["scored"] >= sent[s] for s in STREAMS) or still >= 60:
            return  # every event scored (or nothing moved for 2 minutes: the rest were rejected)
        last = scored
        await asyncio.sleep(2.0)


def summary(samples: Samples) -> dict[str, Any]:
    """RSS per quarter of the run, and its growth after the budgets were reached."""
    rss = samples.rss
    end = rss[-1][0] if rss else 0.0
    quarters = {f"{q}/4": next((mb for t, mb in rss if t >= end * q / 4), None) for q in range(1, 5)}
    full = next((m["s"] for m in samples.metrics
                 if all(m[s]["evicted"] > 0 for s in STREAMS)), None)
    after = [(t, mb) for t, mb in rss if full is not None and t >= full]
    growth = None
    if len(after) > 10:
        half = len(after) // 2
        first, second = after[:half], after[half:]
        growth = sum(mb for _, mb in second) / len(second) - sum(mb for _, mb in first) / len(first)
    return {"rss_mb_by_quarter": quarters, "peak_mb": max((mb for _, mb in rss), default=None),
            "budget_reached_s": full, "growth_after_budget_mb": growth,
            "final": samples.metrics[-1] if samples.metrics else None}


def plot(samples: Samples, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    top.plot([t for t, _ in samples.rss], [mb for _, mb in samples.rss], color="black")
    top.set_ylabel("worker RSS, MB")
    top.set_ylim(bottom=0)
    m = samples.metrics
    for s in STREAMS:
        middle.plot([x["s"] for x in m], [x[s]["entities"] for x in m], label=s)
        bottom.plot([x["s"] for x in m], [x[s]["scored"] for x in m], label=s)
    middle.set_ylabel("entities kept")
    middle.legend(fontsize=8)
    bottom.set_ylabel("events scored")
    bottom.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--readings", type=int, default=1_000_000)
    p.add_argument("--machines", type=int, default=200_000)
    p.add_argument("--transactions", type=int, default=200_000)
    p.add_argument("--nodes", type=int, default=60_000)
    p.add_argument("--sales", type=int, default=100_000)
    p.add_argument("--series", type=int, default=40_000)
    p.add_argument("--max-machines", type=int, default=20_000)
    p.add_argument("--max-nodes", type=int, default=20_000)
    p.add_argument("--max-series", type=int, default=20_000)
    p.add_argument("--model-dir", type=Path, default=Path("model_store"))
    p.add_argument("--out", type=Path, default=Path("var/load/soak"))
    p.add_argument("--drain-timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    topics = Topics()
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="soak-") as work, \
            EmbeddedBroker(f"127.0.0.1:{free_port()}", log_file=Path(work) / "broker.log") as broker:
        asyncio.run(ensure_topics(broker.bootstrap, contract_topics(Settings()), 4))
        port = free_port()
        worker = Launcher(broker.bootstrap, args.model_dir.resolve(), Path(work)).worker(
            "soak-worker", "soak", topics.model_dump(), {
                "METRICS_PORT": str(port), "MAINTENANCE__MAX_MACHINES": str(args.max_machines),
                "SUPPLY_CHAIN__MAX_NODES": str(args.max_nodes), "DEMAND__MAX_SERIES": str(args.max_series),
                # What supply chain keeps per transaction rather than per node (lots, ids for the
                # duplicate check, shipments for verdicts) is bounded by time and counts, which
                # by default a run of this length would not reach: smaller, so it levels off here.
                "SUPPLY_CHAIN__LOT_RETENTION_DAYS": "10", "SUPPLY_CHAIN__DEDUPE_EVENTS": "50000",
                "SUPPLY_CHAIN__REMEMBERED_SHIPMENTS": "50000",
            })
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                if not worker.alive():
                    raise SystemExit(f"the worker died:\n{worker.log_tail(40)}")
                time.sleep(1.0)
            started = time.monotonic()
            sampler = RssSampler(worker.pid, samples, started)
            sampler.start()
            sent = asyncio.run(produce(broker.bootstrap, topics, args, port, samples, started))
            asyncio.run(drain(port, sent, samples, started, args.drain_timeout))
            sampler.stopped.set()
            alive = worker.alive()
        finally:
            worker.stop()
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "sent": sent, "summary": summary(samples),
              "rss": samples.rss, "metrics": samples.metrics, "worker_alive_at_end": alive}
    (args.out / "soak.json").write_text(json.dumps(result, indent=1))
    drawn = plot(samples, args.out / "soak.png")
    s = result["summary"]
    print(f"sent: {sent}")
    print("RSS by quarter of the run (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in s["rss_mb_by_quarter"].items() if v))
    print(f"peak {s['peak_mb']:.0f} MB; every budget reached at {s['budget_reached_s']} s; "
          f"growth after that (second half vs first half of the rest): {s['growth_after_budget_mb']} MB")
    final = s["final"] or {}
    for stream in STREAMS:
        f = final.get(stream, {})
        print(f"{stream}: scored {f.get('scored', 0):,.0f}, entities kept {f.get('entities', 0):,.0f}, "
              f"evicted {f.get('evicted', 0):,.0f}")
    print(f"written to {args.out}/soak.json" + (" and soak.png" if drawn else ""))
    return 0 if alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
