"""The maintenance benchmark's independent data sets: valid input events in the product's layout,
run to failure, seeded, with the held-out machines later in time than the training history,
and the physics each claims (wear moves the named sensors; the pumps' duty cycle)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from benchmarks.maintenance import pump, turbofan
from benchmarks.maintenance.dataset import Dataset
from stream_app.training.data import load_history


SMALL = {
    "turbofan": lambda: turbofan.generate(config=turbofan.TurbofanConfig(train_engines=10, heldout_engines=4)),
    "pump": lambda: pump.generate(config=pump.PumpConfig(train_pumps=4, heldout_pumps=2, lives_per_pump=2)),
}


@pytest.fixture(scope="module")
def datasets() -> dict[str, Dataset]:
    return {name: make() for name, make in SMALL.items()}


@pytest.mark.parametrize("name", ["turbofan", "pump"])
def test_files_load_through_the_users_path_and_every_life_ends_in_a_failure(datasets, name, tmp_path: Path) -> None:
    data = datasets[name]
    paths = data.write(tmp_path)
    train = load_history(paths["train_readings"], paths["train_outcomes"])
    held = load_history(paths["heldout_readings"], paths["heldout_outcomes"])
    for history, part in ((train, data.train), (held, data.heldout)):
        assert all(r.bad_rows == 0 and r.duplicates == 0 for r in history.reports)
        assert len(history.readings) == len(part.readings) and len(history.outcomes) == part.failures > 0
        first = defaultdict(list)
        for r in history.readings:
            first[r.machine_id].append(r.ts)
        assert all(min(first[o.machine_id]) < o.ts for o in history.outcomes)  # a failure ends a life of readings
    assert {r.machine_id for r in held.readings}.isdisjoint({r.machine_id for r in train.readings})
    assert min(r.ts for r in held.readings) > max(r.ts for r in train.readings)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generation_is_seeded(datasets, name) -> None:
    a, b = datasets[name], SMALL[name]()
    assert a.train.readings[:50] == b.train.readings[:50] and a.heldout.outcomes == b.heldout.outcomes


def test_turbofan_wear_raises_exit_temperature_against_the_flight_condition(datasets) -> None:
    data = datasets["turbofan"]
    engine = data.train.readings[0]["machine_id"]
    rows = [r for r in data.train.readings if r["machine_id"] == engine]
    assert len(rows) >= turbofan.LIFE_FLIGHTS[0] and len(rows[0]["sensors"]) == 24
    cruise = [r["sensors"]["T50"] for r in rows if r["operating_mode"] == rows[0]["operating_mode"]]
    assert np.mean(cruise[-5:]) > np.mean(cruise[:5])  # same condition: later flights run hotter
    modes = {r["operating_mode"] for r in data.train.readings}
    assert len(modes) == len(turbofan.CONDITIONS)


def test_pumps_cycle_on_and_off_and_drift_before_failure(datasets) -> None:
    data = datasets["pump"]
    modes = [r["operating_mode"] for r in data.train.readings]
    assert 0.5 < modes.count("running") / len(modes) < 0.95
    stopped = [r["sensors"]["flow_m3h"] for r in data.train.readings if r["operating_mode"] == "stopped"]
    assert np.nanmax(np.array(stopped, dtype=float)) < 5.0  # no flow while stopped
    kinds = set()
    for o in data.train.outcomes:
        life = o["event_id"].rsplit("-", 1)[0]
        rows = [r for r in data.train.readings if r["event_id"].startswith(life + "-")
                and r["operating_mode"] == "running"]
        first, last = rows[: len(rows) // 5], rows[-12:]

        def mean(part, name):
            return np.nanmean(np.array([r["sensors"][name] if r["sensors"][name] is not None else np.nan
                                        for r in part], dtype=float))
        if o["failure_mode"] == "impeller_wear":
            assert mean(last, "flow_m3h") < mean(first, "flow_m3h")
        else:
            assert max(mean(last, s) - mean(first, s) for s in ("bearing_de_c", "bearing_nde_c")) > 5.0
        kinds.add(o["failure_mode"])
    assert "impeller_wear" in kinds and len(kinds) >= 2  # both branches above were checked
    ts = sorted(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in data.train.readings
                if r["machine_id"] == "pump-00")
    assert {(b - a).total_seconds() for a, b in zip(ts[:50], ts[1:51])} == {600.0}  # a reading every 10 minutes
