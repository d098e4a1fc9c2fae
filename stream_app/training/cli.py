"""`stream-app train STREAM [--data FILE --outcomes FILE]`: load or simulate a history, train a
new model version, print where it and its evaluation report are."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from stream_app.registry import ModelRegistry
from stream_app.settings import Settings


def _train_maintenance(registry: ModelRegistry, data: Optional[Path], outcomes: Optional[Path], quick: bool) -> str:
    from stream_app.training.data import DataError, load_history
    from stream_app.training.maintenance import TrainConfig, simulated_history, train_maintenance

    source = None
    if data is not None:
        try:
            history = load_history(data, outcomes)
        except DataError as exc:
            raise SystemExit(f"cannot train on {data}: {exc}") from None
        print(history.summary(), flush=True)
        readings, outs, source = history.readings, history.outcomes, history.source()
    else:
        machines = 40 if quick else 200
        print(f"simulating the history of {machines} machines (two runs to failure each)", flush=True)
        readings, outs = simulated_history(n_machines=machines)
    config = TrainConfig.quick() if quick else TrainConfig()
    version = train_maintenance(registry, readings, outs, config, progress=sys.stderr.isatty(), source=source)
    return _summary(version.manifest, version.path)


def _summary(manifest: dict, path: Path) -> str:
    lines = [f"maintenance model {manifest['version']} written to {path} (now current)"]
    metrics = manifest.get("metrics", {})
    model, baseline = metrics.get("model", {}), metrics.get("baseline", {})
    for key in ("roc_auc", "precision", "recall", "false_positive_rate", "ttf_rmse_hours"):
        if key in model:
            lines.append(f"  {key:<22} model {model[key]:.3f}   baseline {baseline.get(key, float('nan')):.3f}")
    lines.append(f"  report: {path / 'report.md'}")
    return "\n".join(lines)


TRAINERS = {"maintenance": _train_maintenance}


def train_streams(
    settings: Settings,
    streams: Sequence[str],
    *,
    data: Optional[Path],
    outcomes: Optional[Path],
    quick: bool,
    if_missing: bool = False,
) -> int:
    if data is not None and len(streams) > 1:
        print("--data names one stream's history: train one stream at a time with it", file=sys.stderr)
        return 2
    registry = ModelRegistry(settings.model_dir)
    for stream in streams:
        if if_missing and registry.current(stream) is not None:
            print(f"{stream}: model {registry.current(stream).version} present, not retraining")
            continue
        print(TRAINERS[stream](registry, data, outcomes, quick), flush=True)
    return 0
