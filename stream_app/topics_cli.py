"""`stream-app topics plan|create|check`: what the product needs of each topic against what the
cluster has (stream_app/topics.py).

    plan     each topic as planned, and whether it exists; changes nothing
    create   create the missing ones as planned; existing topics are left as they are
    check    exit status 1 when a topic is missing or breaks the product (too short a retention,
             compaction where events share keys, fewer copies than planned); what the broker
             does not report is shown as unknown and does not fail
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Optional, TextIO

from stream_app.settings import Settings

if TYPE_CHECKING:
    from stream_app.topics import TopicSpec, Verdict

COLUMNS = ("topic", "partitions", "replication", "cleanup", "retention", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("plan", "create", "check"))


def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    # Imported here: aiokafka and the demand features are slow to import for other commands.
    from stream_app.kafka_security import client_config
    from stream_app.topics import check, create_missing, describe, plan

    config = client_config(settings)
    if args.action == "plan":
        cluster = asyncio.run(describe(config, list(settings.topics.model_dump().values())))
        rows = [_plan_row(spec, spec.name in cluster.topics) for spec in plan(settings, cluster.brokers)]
        _table(rows, out, ("topic", "partitions", "replication", "cleanup", "retention", "exists"))
        return 0
    if args.action == "create":
        created = asyncio.run(create_missing(config, settings))
        print(f"created {len(created)} topics on {config.bootstrap_servers}" + (f": {', '.join(created)}" if created else ""),
              file=out)
    verdicts = asyncio.run(check(config, settings))
    print(f"topics on {config.bootstrap_servers}: what exists (in parentheses: the plan)", file=out)
    _table([_check_row(v) for v in verdicts], out, COLUMNS)
    failing = [v.spec.name for v in verdicts if v.state is None or v.problems]
    if failing:
        print(f"{len(failing)} of {len(verdicts)} topics do not meet the plan: {', '.join(failing)}", file=out)
        return 1
    return 0


def _plan_row(spec: TopicSpec, exists: bool) -> tuple[str, ...]:
    retention = ("forever" if spec.retention_hours is not None and spec.retention_hours < 0
                 else f"{spec.retention_hours:g} h" if spec.retention_hours is not None else "broker default")
    if spec.min_retention_hours is not None:
        retention += f" (>= {spec.min_retention_hours:g} h)"
    return (spec.name, str(spec.partitions), _replication(spec.replication_factor),
            "compact" if spec.compact else "delete", retention, "yes" if exists else "no")


def _check_row(verdict: Verdict) -> tuple[str, ...]:
    from stream_app.topics import retention_text

    spec, state = verdict.spec, verdict.state
    want_cleanup = "compact" if spec.compact else "delete"
    if state is None:
        return (spec.name, f"- ({spec.partitions})", f"- ({_replication(spec.replication_factor)})",
                f"- ({want_cleanup})", "-", verdict.status)
    retention = retention_text(state.configs)
    if spec.min_retention_hours is not None:
        retention += f" (>= {spec.min_retention_hours:g} h)"
    return (spec.name, f"{state.partitions} ({spec.partitions})",
            f"{state.replication_factor} ({_replication(spec.replication_factor)})",
            f"{state.configs.get('cleanup.policy', 'unknown')} ({want_cleanup})", retention, verdict.status)


def _replication(value: Optional[int]) -> str:
    return str(value) if value is not None else "unset"


def _table(rows: list[tuple[str, ...]], out: TextIO, header: tuple[str, ...]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        print("  ".join(cells), file=out)
