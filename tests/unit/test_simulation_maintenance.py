"""The predictive-maintenance fleet simulator: contract layout, determinism, lives and physics."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any

import numpy as np
import pytest

from schemas.sensor import MaintenanceOutcome, SensorReading
from stream_app.simulation.maintenance import (
    FAILURE_MODE_SENSOR,
    FAILURE_MODES,
    RATED_CURRENT,
    SENSORS,
    FleetConfig,
    FleetSimulator,
    SimulatedHistory,
    rule_limits,
)

Life = tuple[list[dict[str, Any]], dict[str, Any]]


def _hours(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() / 3600.0


def _lives(history: SimulatedHistory) -> list[Life]:
    """Each machine's readings split where the cycle restarts, paired with its outcomes in order."""
    readings: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for r in history.readings:
        if r["cycle"] == 0 or not readings[r["machine_id"]]:
            readings[r["machine_id"]].append([])
        readings[r["machine_id"]][-1].append(r)
    outcomes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in history.outcomes:
        outcomes[o["machine_id"]].append(o)
    assert readings.keys() == outcomes.keys()
    lives = []
    for mid, runs in readings.items():
        assert len(runs) == len(outcomes[mid]), f"{mid}: {len(runs)} lives, {len(outcomes[mid])} outcomes"
        lives.extend(zip(runs, outcomes[mid]))
    return lives


def _value(reading: dict[str, Any], sensor: str) -> float:
    value = reading["sensors"].get(sensor)
    return math.nan if value is None else value


def _violates(reading: dict[str, Any], limits: dict[str, tuple[float | None, float | None]]) -> bool:
    for sensor, (low, high) in limits.items():
        value = _value(reading, sensor)
        if (low is not None and value < low) or (high is not None and value > high):
            return True
    return False


@pytest.fixture(scope="module")
def fleet() -> SimulatedHistory:
    return FleetSimulator(FleetConfig(n_machines=40, seed=7)).history(lives_per_machine=3)


@pytest.fixture(scope="module")
def lives(fleet: SimulatedHistory) -> list[Life]:
    return _lives(fleet)


def test_everything_produced_validates_against_the_contract(tmp_path) -> None:
    sim = FleetSimulator(FleetConfig(n_machines=8, seed=1))
    history = sim.history(lives_per_machine=2)
    live = list(islice(sim.live(), 3000))
    readings = history.readings + [e.value for e in live if e.kind == "reading"]
    outcomes = history.outcomes + [e.value for e in live if e.kind == "outcome"]
    assert readings and outcomes
    for r in readings:
        parsed = SensorReading.model_validate(json.loads(json.dumps(r)))
        assert set(parsed.sensors) <= set(SENSORS) and parsed.cycle is not None
    for o in outcomes:
        assert MaintenanceOutcome.model_validate(json.loads(json.dumps(o))).failure_mode in FAILURE_MODES
    assert all(e.key == e.value["machine_id"] for e in live)

    history.write(tmp_path / "r.jsonl", tmp_path / "o.jsonl")
    assert [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()] == history.readings
    assert [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()] == history.outcomes


def test_same_config_gives_identical_output_and_another_seed_does_not() -> None:
    config = FleetConfig(n_machines=6, seed=3)
    first, again = FleetSimulator(config).history(2), FleetSimulator(FleetConfig(n_machines=6, seed=3)).history(2)
    assert first == again
    assert first.readings != FleetSimulator(FleetConfig(n_machines=6, seed=4)).history(2).readings
    live = [e.value for e in islice(FleetSimulator(config).live(), 2000)]
    assert live == [e.value for e in islice(FleetSimulator(config).live(), 2000)]


def test_event_ids_are_unique(fleet: SimulatedHistory) -> None:
    ids = [m["event_id"] for m in fleet.readings + fleet.outcomes]
    assert len(ids) == len(set(ids))
    live_ids = [e.value["event_id"] for e in islice(FleetSimulator(FleetConfig(n_machines=5, seed=2)).live(), 10000)]
    assert len(live_ids) == len(set(live_ids))


def test_streams_are_time_ordered(fleet: SimulatedHistory) -> None:
    for messages in (fleet.readings, fleet.outcomes):
        times = [_hours(m["ts"]) for m in messages]
        assert times == sorted(times)
    live = [_hours(e.value["ts"]) for e in islice(FleetSimulator(FleetConfig(n_machines=10, seed=5)).live(), 10000)]
    assert live == sorted(live)


def test_every_life_ends_in_one_failure_after_its_readings(fleet: SimulatedHistory, lives: list[Life]) -> None:
    assert len(lives) == 40 * 3 == len(fleet.outcomes)
    by_machine: dict[str, list[Life]] = defaultdict(list)
    for readings, outcome in lives:
        assert [r["cycle"] for r in readings] == list(range(len(readings)))
        assert len({r["event_id"].rsplit("-", 1)[0] for r in readings}) == 1  # one life number
        assert outcome["outcome"] == "failure" and outcome["machine_id"] == readings[0]["machine_id"]
        assert _hours(outcome["ts"]) > _hours(readings[-1]["ts"])
        by_machine[outcome["machine_id"]].append((readings, outcome))
    for machine_lives in by_machine.values():
        for (_, failure), (next_readings, _) in zip(machine_lives, machine_lives[1:]):
            assert _hours(next_readings[0]["ts"]) > _hours(failure["ts"])  # repaired after failing
    hours = [_hours(o["ts"]) - _hours(r[0]["ts"]) for r, o in lives]
    assert 80 <= min(hours) and max(hours) <= 400.5


def test_every_failure_mode_and_machine_type_occurs(lives: list[Life]) -> None:
    assert {o["failure_mode"] for _, o in lives} == set(FAILURE_MODES)
    assert {r[0]["machine_type"] for r, _ in lives} == set(RATED_CURRENT)


def test_degradation_is_visible_in_the_failure_mode_sensor(lives: list[Life]) -> None:
    changes: dict[str, list[float]] = defaultdict(list)
    for readings, outcome in lives:
        sensor = FAILURE_MODE_SENSOR[outcome["failure_mode"]]
        fail_h = _hours(outcome["ts"])
        early = np.nanmean([_value(r, sensor) for r in readings[: len(readings) // 2]])
        late = np.nanmean([_value(r, sensor) for r in readings if fail_h - _hours(r["ts"]) <= 12])
        changes[outcome["failure_mode"]].append(late / early - 1)
    for mode in FAILURE_MODES:
        change = np.array(changes[mode])
        assert len(change) >= 15, mode
        if mode == "lubrication_loss":
            change = -change  # pressure falls
        assert np.mean(change > 0.15) > 0.9, (mode, np.round(change, 2))


def test_bearing_wear_shows_in_high_frequency_vibration_before_the_rule_fires(lives: list[Life]) -> None:
    ratios, window_violations, window_total = [], 0, 0
    limit = {"vibration_rms": rule_limits("pump")["vibration_rms"]}
    for readings, outcome in lives:
        if outcome["failure_mode"] != "bearing_wear" or "vibration_hf" not in readings[0]["sensors"]:
            continue  # not fitted on this machine
        fail_h = _hours(outcome["ts"])
        healthy = np.nanmean([_value(r, "vibration_hf") for r in readings[: len(readings) // 2]])
        window = [r for r in readings if 12 <= fail_h - _hours(r["ts"]) <= 24]
        ratios.append(np.nanmean([_value(r, "vibration_hf") for r in window]) / healthy)
        window_violations += sum(_violates(r, limit) for r in window)
        window_total += len(window)
    assert np.mean(np.array(ratios) > 1.5) > 0.8, np.round(ratios, 2)
    assert window_violations / window_total < 0.1


def test_rules_stay_quiet_while_healthy_and_fire_before_failure(lives: list[Life]) -> None:
    healthy = violations = caught = 0
    for readings, outcome in lives:
        limits = rule_limits(readings[0]["machine_type"])
        for r in readings[: len(readings) // 2]:
            healthy += 1
            violations += _violates(r, limits)
        sensor = FAILURE_MODE_SENSOR[outcome["failure_mode"]]
        fail_h = _hours(outcome["ts"])
        caught += any(_violates(r, {sensor: limits[sensor]}) for r in readings if fail_h - _hours(r["ts"]) <= 6)
    assert violations / healthy < 0.005
    assert caught / len(lives) > 0.9
    assert rule_limits("fan")["motor_current"] == (None, 1.4 * RATED_CURRENT["fan"])


@pytest.mark.parametrize("rate", [0.0, 0.05])
def test_missing_values_come_at_the_configured_rate(rate: float) -> None:
    config = FleetConfig(n_machines=20, seed=11, missing_rate=rate, dropout_rate=0.0)
    values = [v for r in FleetSimulator(config).history().readings for v in r["sensors"].values()]
    share = sum(v is None for v in values) / len(values)
    assert abs(share - rate) < 0.005, share


def test_dropouts_null_a_sensor_for_a_stretch() -> None:
    config = FleetConfig(n_machines=10, seed=2, missing_rate=0.0, dropout_rate=0.005)
    runs: list[int] = []
    current: dict[tuple[str, str], int] = defaultdict(int)
    for r in FleetSimulator(config).history().readings:
        for sensor, value in r["sensors"].items():
            key = (r["machine_id"], sensor)
            if value is None:
                current[key] += 1
            elif current[key]:
                runs.append(current.pop(key))
    assert len(runs) >= 10
    assert min(runs) >= 4
    assert np.mean(np.array(runs) <= 24) > 0.9  # longer only where two dropouts happen to touch


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_unfitted_sensors_are_absent_keys(fraction: float) -> None:
    readings = FleetSimulator(FleetConfig(n_machines=10, seed=4, unfitted_fraction=fraction)).history().readings
    missing_keys = {len(SENSORS) - len(r["sensors"]) for r in readings}
    assert missing_keys == {round(fraction)}


def test_calibration_drift_grows_slowly_on_one_sensor() -> None:
    def run(fraction: float) -> list[dict[str, Any]]:
        quiet = {"missing_rate": 0.0, "dropout_rate": 0.0, "spike_rate": 0.0, "unfitted_fraction": 0.0}
        config = FleetConfig(n_machines=10, seed=9, drift_fraction=fraction, **quiet)
        return FleetSimulator(config).history().readings

    drifted, clean = run(1.0), run(0.0)
    assert [r["event_id"] for r in drifted] == [r["event_id"] for r in clean]
    ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for d, c in zip(drifted, clean):
        if d["cycle"] == 0:
            assert d["sensors"] == c["sensors"]
        elif d["cycle"] >= 150:
            for sensor, value in d["sensors"].items():
                if c["sensors"][sensor]:
                    ratios[d["machine_id"]][sensor].append(value / c["sensors"][sensor] - 1)
    for machine, by_sensor in ratios.items():
        offsets = sorted(abs(np.median(v)) for v in by_sensor.values())
        assert offsets[-1] > 0.005 and offsets[-2] < 0.001, (machine, offsets)


def test_live_begins_at_random_ages_and_fails_soon() -> None:
    n = 20
    events = list(islice(FleetSimulator(FleetConfig(n_machines=n, seed=6)).live(), 30 * n))
    ages = [e.value["cycle"] for e in events[:n]]
    assert len(set(ages)) > n // 2 and np.median(ages) > 80  # mid-life, not all new
    first = next(i for i, e in enumerate(events) if e.kind == "outcome")
    assert first <= 25 * n  # a near-failure machine fails within its 12 h (24 readings)


def test_live_cycle_restarts_after_failure() -> None:
    sim = FleetSimulator(FleetConfig(n_machines=5, seed=8))
    last: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}
    restarts = 0
    for event in islice(sim.live(), 8000):
        mid = event.key
        if event.kind == "outcome":
            failed[mid] = event.value
            continue
        reading = event.value
        if mid in failed:
            assert reading["cycle"] == 0 and reading["event_id"] != last[mid]["event_id"]
            assert _hours(reading["ts"]) > _hours(failed.pop(mid)["ts"])
            restarts += 1
        elif mid in last:
            assert reading["cycle"] == last[mid]["cycle"] + 1
        last[mid] = reading
    assert restarts >= 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_machines": 0},
        {"interval_minutes": 0},
        {"missing_rate": 1.5},
        {"life_hours": (10.0, 5.0)},
        {"life_hours": (1.0, 5.0)},
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FleetConfig(**kwargs)


def test_start_times_are_written_in_utc() -> None:
    config = FleetConfig(n_machines=1, start=datetime(2026, 3, 1))
    assert config.start.tzinfo == timezone.utc
    assert FleetSimulator(config).history().readings[0]["ts"] == "2026-03-01T00:00:00.000Z"
    berlin = datetime(2026, 3, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    first = next(FleetSimulator(config).live(berlin))
    assert first.value["ts"] == "2026-03-01T00:00:00.000Z"
