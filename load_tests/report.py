"""The harness's output: a table on stdout, the stream engine's targets (PASS / MISS / not
measured, README "Targets"), a JSON file with every figure and a PNG plot (throughput, latency,
lag)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from load_tests.measure import CaseResult

GATEWAY_TARGET = 100_000.0  # readings/s in gateway messages of 100 readings
SCALING_TARGET = 1.7
PEER_RATIO_TARGET = 0.5  # single-reading messages, against the Quix Streams pass-through
P99_TARGET_MS = 50.0  # at PACED_TARGET_RATE readings/s
PACED_TARGET_RATE = 5_000.0
P99_BARE_RATIO_TARGET = 2.0  # p99 at half the one-worker rate, against the bare agent's
SUPPLY_CHAIN_TARGET = 10_000.0  # transactions/s, one worker
DEMAND_TARGET = 20_000.0  # sales/s, one worker
# 8,000 machines' state within 20 MB: 2,500 bytes per machine.
MEMORY_MACHINES = 8_000
MEMORY_TARGET_BYTES = 20 * 10**6


@dataclass
class Target:
    name: str
    goal: str
    measured: Optional[str]
    passed: Optional[bool]  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return "n/a" if self.passed is None else "PASS" if self.passed else "MISS"


def _find(results: Sequence[CaseResult], pred: Callable[[CaseResult], bool]) -> Optional[CaseResult]:
    return next((r for r in results if pred(r)), None)


def rate(r: Optional[CaseResult]) -> Optional[float]:
    """The rate targets compare: the higher of first-output-to-last and sustained. A drain tail
    lowers the first; a window cut short inside one huge batch (gateway messages), the second."""
    if r is None:
        return None
    return max((x for x in (r.events_per_s, r.sustained_per_s) if x), default=None)


def targets(results: Sequence[CaseResult]) -> list[Target]:
    m = [r for r in results if r.stream == "maintenance"]
    quix = _find(m, lambda r: r.kind == "quix" and r.mode == "backlog")
    one = _find(m, lambda r: r.kind == "worker" and r.mode == "backlog" and r.workers == 1)
    two = _find(m, lambda r: r.kind == "worker" and r.mode == "backlog" and r.workers == 2)
    gateway = _find(m, lambda r: r.kind == "worker" and r.mode == "gateway")
    paced = _find(m, lambda r: r.kind == "worker" and r.mode == "paced")
    paced_bare = _find(m, lambda r: r.kind == "bare-faust" and r.mode == "paced")
    memory = _find(m, lambda r: r.kind == "memory")
    out = []

    r_one, r_two, r_quix, r_gateway = rate(one), rate(two), rate(quix), rate(gateway)
    name = "sensor scoring vs the Quix Streams pass-through"
    if r_one and r_quix:
        ratio = r_one / r_quix
        out.append(Target(name, f">= {PEER_RATIO_TARGET}x", f"{ratio:.2f}x ({r_one:,.0f} vs {r_quix:,.0f}/s)",
                          ratio >= PEER_RATIO_TARGET))
    else:
        out.append(Target(name, f">= {PEER_RATIO_TARGET}x", None, None))

    if paced and paced.latency_ms:
        p99 = paced.latency_ms["p99"]
        at_rate = paced.rate_target is not None and paced.rate_target >= PACED_TARGET_RATE
        out.append(Target(f"p99 latency at {PACED_TARGET_RATE:,.0f} readings/s", f"<= {P99_TARGET_MS:.0f} ms",
                          f"{p99:,.1f} ms at {paced.rate_target:,.0f}/s", p99 <= P99_TARGET_MS if at_rate else None))
        bare_p99 = paced_bare.latency_ms["p99"] if paced_bare and paced_bare.latency_ms else None
        out.append(Target("p99 latency vs the bare agent's, same paced rate", f"<= {P99_BARE_RATIO_TARGET:.0f}x",
                          f"{p99 / bare_p99:.2f}x ({p99:,.1f} vs {bare_p99:,.1f} ms)" if bare_p99 else None,
                          p99 <= P99_BARE_RATIO_TARGET * bare_p99 if bare_p99 else None))
    else:
        out.append(Target(f"p99 latency at {PACED_TARGET_RATE:,.0f} readings/s", f"<= {P99_TARGET_MS:.0f} ms", None, None))
        out.append(Target("p99 latency vs the bare agent's, same paced rate", f"<= {P99_BARE_RATIO_TARGET:.0f}x", None, None))

    out.append(Target("gateway batches", f">= {GATEWAY_TARGET:,.0f} readings/s",
                      f"{r_gateway:,.0f} readings/s" if r_gateway else None, r_gateway >= GATEWAY_TARGET if r_gateway else None))

    if r_one and r_two:
        scale = r_two / r_one
        out.append(Target("2 workers vs 1", f">= {SCALING_TARGET}x", f"{scale:.2f}x ({r_two:,.0f} vs {r_one:,.0f}/s)",
                          scale >= SCALING_TARGET))
    else:
        out.append(Target("2 workers vs 1", f">= {SCALING_TARGET}x", None, None))

    if memory and memory.extra["machines"] >= MEMORY_MACHINES:
        per_machine = memory.extra["state_bytes_per_machine"]
        fleet = per_machine * MEMORY_MACHINES
        out.append(Target(f"state of {MEMORY_MACHINES:,} machines", f"<= {MEMORY_TARGET_BYTES / 1e6:.0f} MB",
                          f"{fleet / 1e6:.1f} MB ({per_machine:,.0f} B/machine)", fleet <= MEMORY_TARGET_BYTES))
    elif memory:  # a small fleet's state is mostly unused preallocated slots: no verdict from it
        out.append(Target(f"state of {MEMORY_MACHINES:,} machines", f"<= {MEMORY_TARGET_BYTES / 1e6:.0f} MB",
                          f"not measured (only {memory.extra['machines']:,} machines)", None))
    else:
        out.append(Target(f"state of {MEMORY_MACHINES:,} machines", f"<= {MEMORY_TARGET_BYTES / 1e6:.0f} MB", None, None))

    for stream, goal, unit in (("supply-chain", SUPPLY_CHAIN_TARGET, "transactions"), ("demand", DEMAND_TARGET, "sales")):
        worker = _find(results, lambda r: r.stream == stream and r.kind == "worker" and r.mode == "backlog" and r.workers == 1)
        r_worker = rate(worker)
        out.append(Target(f"{stream}, 1 worker", f">= {goal:,.0f} {unit}/s",
                          f"{r_worker:,.0f} {unit}/s" if r_worker else None, r_worker >= goal if r_worker else None))
    return out


def _fmt(value: Optional[float], spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def table(results: Sequence[CaseResult]) -> str:
    """Latency (ms) of paced cases only; gap: the longest time without an output in the window;
    CPU s/1k: the case's worker processes' CPU seconds per 1,000 events in the window."""
    head = (f"{'stream':<13}{'case':<42}{'events/s':>10}{'sustained':>10}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}"
            f"{'gap s':>7}{'CPU s/1k':>10}{'RSS MB':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        lat = r.latency_ms if r.mode == "paced" else None  # backlog waits are not latencies
        workers = {n: f for n, f in r.processes.items() if n not in ("broker", "harness")}
        cpu = [f.cpu_s_window for f in workers.values() if f.cpu_s_window is not None]
        in_window = r.extra.get("events_in_window")
        per_k = sum(cpu) / in_window * 1000 if cpu and in_window else None
        rss = max((f.peak_rss_mb for f in workers.values()), default=None)
        lines.append(
            f"{r.stream:<13}{r.case[:41]:<42}{_fmt(r.events_per_s):>10}{_fmt(r.sustained_per_s):>10}"
            + "".join(f"{_fmt(lat[k] if lat else None, ',.0f'):>8}" for k in ("p50", "p95", "p99", "max"))
            + f"{_fmt(r.extra.get('longest_output_gap_s'), '.1f'):>7}{_fmt(per_k, '.2f'):>10}{_fmt(rss):>8}"
        )
    return "\n".join(lines)


def targets_text(found: Sequence[Target]) -> str:
    return "\n".join(f"{t.verdict:<5} {t.name:<40} goal {t.goal:<22} measured {t.measured or 'not measured'}" for t in found)


def write_json(path: Path, results: Sequence[CaseResult], found: Sequence[Target], meta: dict[str, Any]) -> None:
    doc = {
        "meta": meta,
        "targets": [dataclasses.asdict(t) | {"verdict": t.verdict} for t in found],
        "cases": [dataclasses.asdict(r) for r in results],
    }
    path.write_text(json.dumps(doc, indent=1))


def _label(r: CaseResult) -> str:
    return r.case if r.case.startswith(r.stream) else f"{r.stream}: {r.case}"


def plot(path: Path, results: Sequence[CaseResult], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a build machine
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_lat, ax_backlog, ax_paced) = plt.subplots(4, 1, figsize=(12, 19))
    rated = [r for r in results if rate(r) and r.mode != "paced"]
    ax_rate.barh([_label(r) for r in rated], [rate(r) for r in rated], color=[_colour(r.kind) for r in rated])
    ax_rate.set_xscale("log")
    ax_rate.invert_yaxis()
    ax_rate.set_xlabel("events per second (log; the higher of first-to-last and sustained)")
    ax_rate.set_title("Throughput: backlog cases and in-process figures")
    for y, r in enumerate(rated):
        ax_rate.text(rate(r), y, f" {rate(r):,.0f}", va="center", fontsize=8)

    paced = [r for r in results if r.mode == "paced" and r.latency_ms]
    keys = ("p50", "p95", "p99", "max")
    width = 0.8 / max(len(paced), 1)
    for i, r in enumerate(paced):
        xs = [k + i * width for k in range(len(keys))]
        ax_lat.bar(xs, [r.latency_ms[k] for k in keys], width, label=f"{_label(r)} at {r.rate_target:,.0f}/s")
    ax_lat.axhline(P99_TARGET_MS, color="red", linestyle="--", linewidth=1, label=f"{P99_TARGET_MS:.0f} ms (p99 target)")
    ax_lat.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))], keys)
    ax_lat.set_yscale("log")
    if paced:  # head room for the legend above the bars
        ax_lat.set_ylim(top=max(r.latency_ms["max"] for r in paced) * 20)
    ax_lat.set_ylabel("event sent -> output consumed (ms, log)")
    ax_lat.set_title("End-to-end latency, paced producer")
    ax_lat.legend(fontsize=8, loc="upper left", ncol=2)

    # Lag from outputs: the embedded broker's end offsets are wrong (see measure.py).
    for ax, mode_is_paced, what in ((ax_backlog, False, "backlog"), (ax_paced, True, "paced")):
        for r in results:
            if r.lag.get("t_s") and (r.mode == "paced") == mode_is_paced:
                ax.plot(r.lag["t_s"], r.lag["lag_answered"], label=_label(r), linewidth=1)
        ax.set_xlabel("seconds since the measured input began (after the warm-up)")
        ax.set_ylabel("events produced - events answered")
        ax.set_title(f"Lag over time, {what} cases")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.98))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _colour(kind: str) -> str:
    return {"worker": "tab:blue", "bare-faust": "tab:orange", "quix": "tab:olive", "plain-consumer": "tab:green",
            "naive": "tab:red", "scorer": "tab:purple", "memory": "tab:gray"}.get(kind, "tab:gray")
