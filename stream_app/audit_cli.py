"""`stream-app audit verify`: check the alert chains (stream_app/audit) on the broker.

    stream-app audit verify                       every chain, alert and explanation: exit 1 and
                                                  the first broken link of each chain on a finding
    stream-app audit verify --anchor heads.jsonl  also: every head anchored in that file is still
                                                  in its chain, unchanged
    stream-app audit verify --write-anchor heads.jsonl
                                                  after a clean check, append today's heads to the
                                                  file (keep it where the broker's users cannot
                                                  write: that is what makes a rewrite evident)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from stream_app.settings import Settings
from stream_app.setup_error import SetupError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("audit", help="check the tamper-evident alert chains; anchor their heads")
    p.add_argument("action", choices=("verify",))
    p.add_argument("--anchor", type=Path, action="append", default=[], help="JSON lines of heads anchored earlier")
    p.add_argument("--write-anchor", type=Path, help="append the current heads here after a clean check")
    p.add_argument("--alerts-topic", help="default: the alerts topic of the settings")
    p.add_argument("--explanations-topic", help="default: the explanations topic of the settings")
    p.add_argument("--audit-topic", help="default: the alert-audit topic of the settings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    from stream_app.audit.topic import read_topic
    from stream_app.audit.verify import verify

    anchors = [a for path in args.anchor for a in _anchors(path)]
    t = settings.topics
    names = (args.audit_topic or t.alert_audit, args.alerts_topic or t.alerts, args.explanations_topic or t.explanations)

    async def read() -> list[Any]:
        return [await read_topic(settings, name) for name in names]

    audit, alerts, explanations = asyncio.run(read())
    report = verify(audit, alerts, explanations, anchors)
    print(f"{len(report.chains)} chains, {report.links} links, {report.alerts} alerts, {report.explanations} explanations"
          f" ({report.redelivered} redelivered copies); {len(anchors)} anchored heads checked", file=out)
    if not report.ok:
        print(f"{len(report.findings)} findings; the first broken link of each chain:", file=out)
        for finding in report.first_broken().values():
            print(f"  {finding}", file=out)
        for finding in report.findings:
            print(f"    {finding}", file=out)
        return 1
    print("every alert and explanation matches its link; every chain is whole", file=out)
    if args.write_anchor is not None:
        at = datetime.now(timezone.utc).isoformat()
        with open(args.write_anchor, "a", encoding="utf-8") as f:
            for chain, (seq, h) in sorted(report.chains.items()):
                f.write(json.dumps({"chain": chain, "seq": seq, "hash": h, "anchored_at": at}) + "\n")
        print(f"{len(report.chains)} heads anchored in {args.write_anchor}", file=out)
    return 0


def _anchors(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SetupError(f"cannot read the anchor file {path}: {exc.strerror}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise SetupError(f"{path}:{n} is not a JSON line of an anchored head") from None
    return out
