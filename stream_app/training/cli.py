"""`stream-app train STREAM [--data FILE --outcomes FILE [--map OURS=THEIRS ...]] [--candidate |
--force]`: load or simulate a history, train a new model version, release it (through the
promotion gate unless told otherwise: stream_app.training.release), print where it and its
evaluation report are and what became of it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from schemas.common import InputEvent
from stream_app import progress
from stream_app.registry import ModelRegistry, ModelVersion
from stream_app.settings import Settings
from stream_app.training.release import Release, describe


@dataclass(frozen=True)
class Trainer:
    """How one stream trains: its history from files (events + ground truth or calendar), or
    simulated, and its train function. Imports happen on use: torch is slow to import."""

    load: Callable[..., Any]  # (data, second, mapping=None) -> object with two lists, .summary(), .source()
    simulate: Callable[[bool], tuple[list[Any], list[Any]]]  # quick -> (events, second input)
    train: Callable[..., ModelVersion]  # (registry, events, second, config, progress, source=, promote=)
    config: Callable[[bool], Any]  # quick -> TrainConfig
    simulated_what: str
    events: tuple[type[InputEvent], type[InputEvent]]  # the contract's types of the two inputs


def _maintenance() -> Trainer:
    from schemas.sensor import MaintenanceOutcome, SensorReading
    from stream_app.training import maintenance as m
    from stream_app.training.data import load_history

    return Trainer(
        load=lambda data, outcomes, mapping=None: _pair(load_history(data, outcomes, mapping), "readings", "outcomes"),
        simulate=lambda quick: m.simulated_history(n_machines=40 if quick else 200),
        train=m.train_maintenance,
        config=lambda quick: m.TrainConfig.quick() if quick else m.TrainConfig(),
        simulated_what="the history of 200 machines (40 with --quick), two runs to failure each",
        events=(SensorReading, MaintenanceOutcome),
    )


def _supply_chain() -> Trainer:
    from schemas.supply_chain import SupplyChainTransaction, SupplyChainVerdict
    from stream_app.training import supply_chain as s

    return Trainer(
        load=lambda data, verdicts, mapping=None: _pair(s.load_history(data, verdicts, mapping), "transactions", "verdicts"),
        simulate=lambda quick: s.simulated_history(),
        train=s.train_supply_chain,
        config=lambda quick: s.TrainConfig.quick() if quick else s.TrainConfig(),
        simulated_what="120 days of a pharmaceutical distribution network with labelled attacks",
        events=(SupplyChainTransaction, SupplyChainVerdict),
    )


def _demand() -> Trainer:
    from schemas.sales import CalendarEntry, SalesEvent
    from stream_app.training import demand as d
    from stream_app.training.demand_data import load_demand_history, simulated_history

    return Trainer(
        load=lambda data, calendar, mapping=None: _pair(load_demand_history(data, calendar, mapping), "sales", "calendar"),
        simulate=lambda quick: simulated_history(),
        train=d.train_demand,
        config=lambda quick: d.TrainConfig.quick() if quick else d.TrainConfig(),
        simulated_what="two years of sales of 40 SKUs across markets, with their calendar",
        events=(SalesEvent, CalendarEntry),
    )


TRAINERS: dict[str, Callable[[], Trainer]] = {"maintenance": _maintenance, "supply-chain": _supply_chain, "demand": _demand}
# What --outcomes means per stream.
SECOND_INPUT = {"maintenance": "failures/repairs", "supply-chain": "verdicts", "demand": "calendar"}


@dataclass(frozen=True)
class _Loaded:
    first: list[Any]
    second: list[Any]
    summary: str
    source: dict[str, str]


def _pair(history: Any, first: str, second: str) -> _Loaded:
    return _Loaded(getattr(history, first), getattr(history, second), history.summary(), history.source())


def _train_one(
    stream: str, registry: ModelRegistry, data: Optional[Path], second: Optional[Path], quick: bool, release: Release,
    mapping: Sequence[str] = (),
) -> str:
    from stream_app.training.data import DataError
    from stream_app.training.history_import.column_map import ColumnMap

    trainer = TRAINERS[stream]()
    source = None
    if data is not None:
        try:
            loaded = trainer.load(data, second, ColumnMap.parse(mapping))
        except DataError as exc:
            raise SystemExit(f"cannot train {stream} on {data}: {exc}") from None
        print(loaded.summary, flush=True)
        first_input, second_input, source = loaded.first, loaded.second, loaded.source
    else:
        print(f"{stream}: simulating {trainer.simulated_what}", flush=True)
        first_input, second_input = trainer.simulate(quick)
    version = trainer.train(
        registry, first_input, second_input, trainer.config(quick), progress.enabled(), source=source, promote=release
    )
    return f"{summary(stream, version)}\n{describe(registry, stream, version.version)}"


def summary(stream: str, version: ModelVersion) -> str:
    lines = [f"{stream} model {version.version} written to {version.path}"]
    metrics = version.manifest.get("metrics", {})
    model, baseline = metrics.get("model", {}), metrics.get("baseline", {})
    for key in ("roc_auc", "precision", "recall", "false_positive_rate", "ttf_rmse_hours"):
        if isinstance(model.get(key), (int, float)):
            lines.append(f"  {key:<22} model {model[key]:.3f}   baseline {baseline.get(key, float('nan')):.3f}")
    lines.append(f"  report: {version.path / 'report.md'}")
    return "\n".join(lines)


def train_streams(
    settings: Settings,
    streams: Sequence[str],
    *,
    data: Optional[Path],
    outcomes: Optional[Path],
    quick: bool,
    if_missing: bool = False,
    release: Release = Release(),
    mapping: Sequence[str] = (),
) -> int:
    """`mapping`: the --map arguments (OURS=THEIRS or a JSON file), for the --data/--outcomes files."""
    if data is not None and len(streams) > 1:
        print("--data names one stream's history: train one stream at a time with it", file=sys.stderr)
        return 2
    if mapping and data is None:
        print("--map renames the columns of the --data and --outcomes files: give --data", file=sys.stderr)
        return 2
    registry = ModelRegistry(settings.model_dir)
    for stream in streams:
        current = registry.current(stream)
        if if_missing and current is not None:
            print(f"{stream}: model {current.version} present, not retraining")
            continue
        print(_train_one(stream, registry, data, outcomes, quick, release, mapping), flush=True)
    return 0
