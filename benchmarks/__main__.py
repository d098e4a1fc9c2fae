"""`python -m benchmarks [--stream S ...] [--quick] [--out DIR]`: run each stream's independent
data sets and write `DIR/results.md` (the table), `DIR/results.json` and each stream's plots."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from benchmarks.table import BenchmarkRow, markdown

STREAMS = {"maintenance": "benchmarks.maintenance", "supply-chain": "benchmarks.supply_chain",
           "demand": "benchmarks.demand"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--stream", action="append", choices=sorted(STREAMS), help="run only these streams")
    parser.add_argument("--quick", action="store_true", help="smaller data sets and trainings (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path("var/benchmarks"), help="where results and plots go")
    args = parser.parse_args(argv)
    rows: list[BenchmarkRow] = []
    for stream in args.stream or list(STREAMS):
        try:
            module = importlib.import_module(STREAMS[stream])
        except ModuleNotFoundError:
            print(f"{stream}: no benchmark suite yet", file=sys.stderr)
            continue
        out = args.out / stream
        out.mkdir(parents=True, exist_ok=True)
        rows.extend(module.run(out, quick=args.quick))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(markdown(rows))
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1, default=str))
    print(markdown(rows))
    print(f"written to {args.out}/results.md")
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
