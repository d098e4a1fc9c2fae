"""Loading a user's history for training: JSON Lines and CSV in the event layout, validated with
the contract's schemas, bad rows counted and reported by line number."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from schemas.sensor import MaintenanceOutcome, SensorReading
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator
from stream_app.training.data import (
    DataError,
    detect_format,
    load_history,
    load_outcomes,
    load_readings,
    write_jsonl,
    write_outcomes_csv,
    write_readings_csv,
)


def simulated(unfitted: float = 0.0, n: int = 4) -> tuple[list[SensorReading], list[MaintenanceOutcome]]:
    cfg = FleetConfig(n_machines=n, seed=5, life_hours=(20.0, 40.0), unfitted_fraction=unfitted, missing_rate=0.05)
    history = FleetSimulator(cfg).history(lives_per_machine=2)
    return (
        [SensorReading.model_validate(r) for r in history.readings],
        [MaintenanceOutcome.model_validate(o) for o in history.outcomes],
    )


def _with_nulls(r: SensorReading, sensors: list[str]) -> SensorReading:
    """What a CSV row can say: an absent sensor and a null one are the same empty cell."""
    return r.model_copy(update={"sensors": {s: r.sensors.get(s) for s in sensors}})


# --- round trips ------------------------------------------------------------------------------------
def test_jsonl_round_trip_of_simulated_history(tmp_path: Path) -> None:
    readings, outcomes = simulated(unfitted=0.5)
    assert any(v is None for r in readings for v in r.sensors.values())  # nulls survive
    write_jsonl(tmp_path / "r.jsonl", readings)
    write_jsonl(tmp_path / "o.jsonl", outcomes)
    history = load_history(tmp_path / "r.jsonl", tmp_path / "o.jsonl")
    assert history.readings == readings
    assert history.outcomes == outcomes
    assert [r.bad_rows for r in history.reports] == [0, 0]


def test_simulator_files_load_as_written(tmp_path: Path) -> None:
    cfg = FleetConfig(n_machines=3, seed=1, life_hours=(10.0, 20.0))
    history = FleetSimulator(cfg).history()
    history.write(tmp_path / "readings.jsonl", tmp_path / "outcomes.jsonl")
    loaded = load_history(tmp_path / "readings.jsonl", tmp_path / "outcomes.jsonl")
    assert [r.event_id for r in loaded.readings] == [r["event_id"] for r in history.readings]
    assert len(loaded.outcomes) == len(history.outcomes) == 3


def test_csv_round_trip_of_simulated_history(tmp_path: Path) -> None:
    readings, outcomes = simulated(unfitted=0.0)
    # full float precision (the simulator rounds like a gateway; users' data may not)
    readings[0] = readings[0].model_copy(update={"sensors": {**readings[0].sensors, "vibration_rms": 1 / 3, "rpm": 1e-7}})
    write_readings_csv(tmp_path / "r.csv", readings)
    write_outcomes_csv(tmp_path / "o.csv", outcomes)
    header = (tmp_path / "r.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["event_id", "machine_id", "ts", "machine_type", "operating_mode", "cycle"]
    assert "vibration_rms" in header
    loaded = load_readings(tmp_path / "r.csv")
    assert loaded.format == "csv" and loaded.bad_rows == 0
    assert loaded.records == readings  # floats, nulls, timestamps and cycles exactly equal
    assert load_outcomes(tmp_path / "o.csv").records == outcomes


def test_csv_turns_absent_sensors_into_nulls(tmp_path: Path) -> None:
    readings, _ = simulated(unfitted=0.5)
    sensors = sorted({s for r in readings for s in r.sensors})
    assert any(set(r.sensors) != set(sensors) for r in readings)  # some machines lack a sensor
    write_readings_csv(tmp_path / "r.csv", readings)
    loaded = load_readings(tmp_path / "r.csv").records
    assert loaded == [_with_nulls(r, sensors) for r in readings]


def test_gzip_and_format_sniffing(tmp_path: Path) -> None:
    readings, _ = simulated(n=2)
    write_jsonl(tmp_path / "r.jsonl", readings)
    gz = tmp_path / "r.jsonl.gz"
    gz.write_bytes(gzip.compress((tmp_path / "r.jsonl").read_bytes()))
    assert load_readings(gz).records == readings
    noext = tmp_path / "readings"
    write_readings_csv(tmp_path / "r.csv", readings)
    noext.write_bytes((tmp_path / "r.csv").read_bytes())
    assert detect_format(noext) == "csv" and detect_format(gz) == "jsonl"
    assert load_readings(noext).ok == len(readings)


# --- bad rows ---------------------------------------------------------------------------------------
GOOD = {"event_id": "e0", "machine_id": "m1", "ts": "2025-01-01T00:00:00Z", "cycle": 1, "sensors": {"t": 1.5}}


def good(i: int) -> str:
    row = dict(GOOD, event_id=f"e{i}", ts=f"2025-01-01T00:{i:02d}:00Z")
    return json.dumps(row)


def test_jsonl_bad_rows_reported_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        good(1),  # 1
        "",  # 2 blank: skipped, not a row
        "{not json",  # 3
        json.dumps({**GOOD, "event_id": "e3", "ts": "yesterday"}),  # 4 bad timestamp
        json.dumps({**GOOD, "event_id": "e4", "sensors": {"t": "1.5"}}),  # 5 a string is no number
        '{"event_id": "e5", "machine_id": "m1", "ts": "2025-01-01T00:05:00Z", "sensors": {"t": NaN}}',  # 6
        json.dumps([1, 2]),  # 7 array of non-objects: two bad rows on one line
        good(8),  # 8
        good(8),  # 9 repeated event_id: dropped, counted
        json.dumps({**GOOD, "event_id": "e10", "cycle": -1}),  # 10
        good(11),
        good(12),
        good(13),
        good(14),
        good(15),
        good(16),
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = load_readings(path)
    assert [e.line for e in result.errors] == [3, 4, 5, 6, 7, 7, 10]
    assert result.bad_rows == 7 and result.duplicates == 1
    assert result.rows == 16  # 15 non-blank lines, one holding two rows
    assert [r.event_id for r in result.records] == ["e1", "e8", "e11", "e12", "e13", "e14", "e15", "e16"]
    assert "not valid JSON" in result.errors[0].message
    assert result.errors[1].message.startswith("ts:") and result.errors[2].message.startswith("sensors.t")
    assert "line 3" in str(result.errors[0]) and "7 bad" in result.summary()


def test_csv_bad_rows_reported_with_line_numbers(tmp_path: Path) -> None:
    text = (
        "event_id,machine_id,ts,machine_type,operating_mode,cycle,temp,sensors.pressure\n"  # 1
        "e1,m1,2025-01-01T00:00:00Z,pump,run,0,60.5,3.2\n"  # 2
        'e2,m1,2025-01-01T00:30:00Z,"pump\nmodel b",run,1,61,\n'  # 3-4: quoted newline, empty = null
        "e3,m1,2025-01-01T01:00:00Z,pump,run,2,hot,3.1\n"  # 5: not a number
        "e4,m1,2025-01-01T01:30:00Z,pump,run,2.5,60,3.1\n"  # 6: cycle not whole
        "e5,m1,2025-01-01T02:00:00Z,pump,run,3,60\n"  # 7: a cell short
        "e6,m1,1735693200000,pump,run,4,inf,3\n"  # 8: infinite value
        "e7,,2025-01-01T03:00:00Z,pump,run,5,60,3\n"  # 9: empty machine_id
        "e8,m1,1735693200000,,,,62,3.3\n"  # 10: epoch ms; empty type/mode/cycle are null
        + "".join(f"f{i},m2,2025-01-02T00:{i:02d}:00Z,fan,run,{i},50,NaN\n" for i in range(5))  # 11-15: NaN = null
    )
    path = tmp_path / "r.csv"
    path.write_text(text)
    result = load_readings(path)
    assert [e.line for e in result.errors] == [5, 6, 7, 8, 9]
    assert result.rows == 13 and result.bad_rows == 5
    e1, e2, e8 = result.records[:3]
    assert all(r.sensors["pressure"] is None for r in result.records[3:])
    assert e1.sensors == {"temp": 60.5, "pressure": 3.2}
    assert e2.sensors == {"temp": 61.0, "pressure": None} and e2.machine_type == "pump\nmodel b"
    assert (e8.machine_type, e8.operating_mode, e8.cycle) == (None, None, None)
    assert e8.ts.isoformat() == "2025-01-01T01:00:00+00:00"
    assert result.errors[0].message == "sensors.temp: 'hot' is not a number"
    assert result.errors[1].message == "cycle: '2.5' is not a whole number"
    assert "not finite" in result.errors[3].message and result.errors[4].message.startswith("machine_id")


def test_mostly_bad_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join([good(1), "{}", "[]x", '{"a": 1}']) + "\n")
    with pytest.raises(DataError, match="3 of 4 rows are bad") as info:
        load_readings(path)
    assert "line 2" in str(info.value)
    # half bad is still usable
    path.write_text("\n".join([good(1), good(2), "{}", "{}"]) + "\n")
    assert load_readings(path).ok == 2


def test_unusable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_readings(tmp_path / "missing.csv")
    (tmp_path / "a.csv").write_text("event_id,ts,temp\ne1,2025-01-01T00:00:00Z,1\n")
    with pytest.raises(DataError, match="machine_id"):
        load_readings(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("event_id,machine_id,ts,cycle\ne1,m,2025-01-01T00:00:00Z,1\n")
    with pytest.raises(DataError, match="sensor column"):
        load_readings(tmp_path / "b.csv")
    (tmp_path / "c.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no rows"):
        load_readings(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError):
        load_readings(tmp_path / "d.jsonl")


def test_outcomes_csv_validation(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text(
        "event_id,machine_id,ts,outcome,failure_mode\n"
        "o1,m1,2025-01-02T00:00:00Z,failure,Bearing_Wear\n"
        "o2,m1,2025-01-03T00:00:00Z,exploded,\n"  # line 3: not failure/repair
        "o3,m2,2025-01-03T00:00:00Z,repair,\n"
        "o4,m3,2025-01-04T00:00:00Z,,\n"  # empty outcome: the schema default (failure)
    )
    result = load_outcomes(path)
    assert [e.line for e in result.errors] == [3]
    assert [(o.outcome, o.failure_mode) for o in result.records] == [("failure", "bearing_wear"), ("repair", None), ("failure", None)]
