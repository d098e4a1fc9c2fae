"""History as users have it: their column names (--map), wide historian CSVs, Parquet for every
stream's files, rows without event ids, supply-chain CSV, and bad rows counted in each of them;
then `stream-app train` on such files."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
from pydantic import BaseModel

from schemas.sales import CalendarEntry, SalesEvent
from schemas.sensor import MaintenanceOutcome, SensorReading
from schemas.supply_chain import SupplyChainTransaction, SupplyChainVerdict
from stream_app.cli import main
from stream_app.registry import ModelRegistry
from stream_app.settings import get_settings
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator
from stream_app.training import supply_chain
from stream_app.training.data import DataError, load_history, load_outcomes, load_readings, write_jsonl
from stream_app.training.demand_data import load_demand_history
from stream_app.training.history_import.column_map import ColumnMap

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

T0 = datetime(2025, 3, 1, 6, tzinfo=timezone.utc)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows([["" if c is None else c for c in row] for row in rows])
    return path


def write_parquet(path: Path, events: Sequence[BaseModel]) -> Path:
    """The events as they are: nested maps become struct columns, timestamps Parquet timestamps."""
    pq.write_table(pa.Table.from_pylist([e.model_dump() for e in events]), path)
    return path


def fleet(machines: int = 3, lives: int = 1) -> tuple[list[SensorReading], list[MaintenanceOutcome]]:
    config = FleetConfig(n_machines=machines, seed=5, life_hours=(20.0, 40.0), missing_rate=0.05)
    history = FleetSimulator(config).history(lives)
    return ([SensorReading.model_validate(r) for r in history.readings],
            [MaintenanceOutcome.model_validate(o) for o in history.outcomes])


def all_sensors(readings: Sequence[SensorReading]) -> list[str]:
    return sorted({s for r in readings for s in r.sensors})


def without_ids(events: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [e.model_dump(exclude={"event_id"}) for e in events]


# --- 1. --map ---------------------------------------------------------------------------------------
def test_mapped_csv_reads_like_our_layout(tmp_path: Path) -> None:
    readings, outcomes = fleet()
    sensors = all_sensors(readings)
    their = {"bearing_temp": "TI-4711", "vibration_rms": "VI 12"}
    data = write_csv(tmp_path / "historian.csv", ["AssetTag", "Timestamp", "Cycle", *(their.get(s, s) for s in sensors)],
                     [[r.machine_id, r.ts.isoformat(), r.cycle, *(r.sensors.get(s) for s in sensors)] for r in readings])
    failures = write_csv(tmp_path / "failures.csv", ["AssetTag", "FailedAt", "Mode"],
                         [[o.machine_id, o.ts.isoformat(), o.failure_mode] for o in outcomes])
    pairs = ColumnMap.parse(["machine_id=AssetTag", "data:ts=Timestamp", "outcomes:ts=FailedAt", "cycle=Cycle",
                             "failure_mode=Mode", "bearing_temp=TI-4711", "sensors.vibration_rms=VI 12"])
    from_pairs = load_history(data, failures, pairs)
    # a sensor a machine lacks is an empty cell: null
    expected = [r.model_copy(update={"machine_type": None, "operating_mode": None,
                                     "sensors": {s: r.sensors.get(s) for s in sensors}}) for r in readings]
    assert without_ids(from_pairs.readings) == without_ids(expected)
    assert without_ids(from_pairs.outcomes) == without_ids(outcomes)
    assert "mapped ts=Timestamp, machine_id=AssetTag" in from_pairs.reports[0].summary()

    # the same as a JSON file, keyed per file where the files differ
    spec = tmp_path / "mapping.json"
    spec.write_text(json.dumps({"machine_id": "AssetTag", "cycle": "Cycle", "failure_mode": "Mode",
                                "bearing_temp": "TI-4711", "sensors.vibration_rms": "VI 12",
                                "data": {"ts": "Timestamp"}, "outcomes": {"ts": "FailedAt"}}))
    from_json = load_history(data, failures, ColumnMap.parse([str(spec)]))
    assert from_json.readings == from_pairs.readings and from_json.outcomes == from_pairs.outcomes


@pytest.mark.parametrize(("specs", "says"), [
    (["machin_id=AssetTag"], "'machin_id' is not one of our columns (readings: event_id, ts"),
    (["machine_id=Asset", "ts=Timestamp"], "r.csv has no column 'Asset' (--map data:machine_id=COLUMN"),
    (["machine_id=AssetTag", "data:ts=Timestamp", "outcomes:ts=Failed"],
     "o.csv has no column 'Failed'; its columns: AssetTag, FailedAt"),
    (["machine_id=AssetTag", "data:ts=Timestamp", "outcomes:ts=FailedAt", "failure_mode=Cause"],
     "--map failure_mode=Cause: no file has a column 'Cause' for it (REPLACED/r.csv: AssetTag, Timestamp, temp"),
    (["machine_id=AssetTag"],
     "r.csv: no column ts, which readings need (name yours with --map ts=COLUMN); its columns: AssetTag, Timestamp, temp"),
    (["ts"], "--map ts: expected OURS=THEIRS"),
    (["failures:ts=FailedAt"], "'failures' before ':' must be data or outcomes"),
    (["ts=Timestamp", "ts=Time"], "--map ts=Timestamp and --map ts=Time: a column can be mapped once"),
    (["mapping.json"], "--map mapping.json: no such file"),
])
def test_a_bad_mapping_is_one_line_naming_the_column_and_the_files_columns(tmp_path: Path, specs: list[str],
                                                                           says: str) -> None:
    data = write_csv(tmp_path / "r.csv", ["AssetTag", "Timestamp", "temp"], [["m1", "2025-01-01T00:00:00Z", 1.0]])
    failures = write_csv(tmp_path / "o.csv", ["AssetTag", "FailedAt"], [["m1", "2025-01-02T00:00:00Z"]])
    with pytest.raises(DataError) as info:
        load_history(data, failures, ColumnMap.parse(specs))
    message = str(info.value)
    assert "\n" not in message
    assert says.replace("REPLACED", str(tmp_path)) in message


def test_a_mapping_file_must_hold_names_and_json_lines_are_not_renamed(tmp_path: Path) -> None:
    spec = tmp_path / "m.json"
    spec.write_text(json.dumps({"machine_id": 7}))
    with pytest.raises(DataError, match="every column name must be text, got 7"):
        ColumnMap.parse([str(spec)])
    readings, _ = fleet(machines=1)
    write_jsonl(tmp_path / "r.jsonl", readings)
    with pytest.raises(DataError, match="r.jsonl is JSON Lines, read in the event layout"):
        load_history(tmp_path / "r.jsonl", mapping=ColumnMap.parse(["data:machine_id=AssetTag"]))
    with pytest.raises(DataError, match="no file has a column 'AssetTag'.*r.jsonl: JSON Lines"):
        load_history(tmp_path / "r.jsonl", mapping=ColumnMap.parse(["machine_id=AssetTag"]))
    with pytest.raises(DataError, match="this run has no --outcomes file"):
        load_history(tmp_path / "r.jsonl", mapping=ColumnMap.parse(["outcomes:ts=FailedAt"]))


# --- 2. wide CSV ------------------------------------------------------------------------------------
def test_wide_csv_every_number_column_is_a_sensor_and_text_columns_are_left_out(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "wide.csv", ["ts", "machine_id", "site", "temperature", "vibration_rms", "flow_rate"], [
        ["2025-01-01 00:00:00", "P-1", "North", "60.5", "1.2", ""],  # empty: the sensor did not report
        ["2025-01-01 01:00:00", "P-1", "North", "61", "1.3", "12.5"],
        ["2025-01-01 01:00:00", "P-2", "", "NaN", "0.9", "11"],
    ], delimiter=";")
    loaded = load_readings(path)
    assert [r.sensors for r in loaded.records] == [
        {"temperature": 60.5, "vibration_rms": 1.2, "flow_rate": None},
        {"temperature": 61.0, "vibration_rms": 1.3, "flow_rate": 12.5},
        {"temperature": None, "vibration_rms": 0.9, "flow_rate": 11.0},
    ]
    assert loaded.records[2].ts == datetime(2025, 1, 1, 1, tzinfo=timezone.utc)
    assert "not sensors (no numbers): site" in loaded.summary()
    assert loaded.derived_ids == 3 and len({r.event_id for r in loaded.records}) == 3

    only_text = write_csv(tmp_path / "text.csv", ["ts", "machine_id", "site"], [["2025-01-01T00:00:00Z", "P-1", "North"]])
    with pytest.raises(DataError, match="readings need at least one sensor column"):
        load_readings(only_text)


# --- 3. Parquet -------------------------------------------------------------------------------------
def transactions() -> list[SupplyChainTransaction]:
    rows = []
    for i in range(6):
        rows.append(SupplyChainTransaction(
            event_id=f"tx{i}", ts=T0 + timedelta(hours=i), shipment_id=f"s{i}", product_id="ndc-1", lot_id=f"L{i % 2}",
            source_id="mfr-1", source_type="manufacturer", target_id=f"whl-{i % 3}", target_type="wholesaler",
            quantity=10.0 + i, unit_price=3.5, carrier_id="car-1" if i % 2 else None, route="A>B" if i == 3 else None,
            features={"controlled": 1.0, "temp_excursion": 0.5} if i % 3 == 0 else ({"controlled": 0.0} if i == 1 else {}),
        ))
    return rows


def verdicts() -> list[SupplyChainVerdict]:
    return [SupplyChainVerdict(event_id="v1", ts=T0 + timedelta(days=1), shipment_id="s3", verdict="confirmed",
                               attack_kind="diversion"),
            SupplyChainVerdict(event_id="v2", ts=T0 + timedelta(days=1), shipment_id="s4", verdict="cleared")]


def sales() -> list[SalesEvent]:
    return [SalesEvent(event_id=f"o{i}", ts=T0 + timedelta(hours=7 * i), sku=f"sku-{i % 2}", market="DE", units=float(i + 1),
                       unit_price=9.5, promo=i == 2, channel="web" if i % 2 else None) for i in range(5)]


def calendar() -> list[CalendarEntry]:
    return [CalendarEntry(event_id="h1", ts=T0, kind="holiday", market="DE", start=T0.date() + timedelta(days=3),
                          end=T0.date() + timedelta(days=4), intensity=0.8),
            CalendarEntry(event_id="c1", ts=T0, kind="campaign", market="DE", sku="sku-1", start=T0.date(),
                          end=T0.date() + timedelta(days=1))]


def test_parquet_history_of_every_stream_loads_as_its_events(tmp_path: Path) -> None:
    readings, outcomes = fleet()
    maintenance = load_history(write_parquet(tmp_path / "r.parquet", readings),
                               write_parquet(tmp_path / "o.parquet", outcomes))
    # a struct column has every sensor: the ones a reading lacks are null
    sensors = all_sensors(readings)
    assert maintenance.readings == [r.model_copy(update={"sensors": {s: r.sensors.get(s) for s in sensors}})
                                    for r in readings]
    assert maintenance.outcomes == outcomes
    assert [r.format for r in maintenance.reports] == ["parquet", "parquet"]

    chain = supply_chain.load_history(write_parquet(tmp_path / "tx.parquet", transactions()),
                                      write_parquet(tmp_path / "v.parquet", verdicts()))
    assert chain.transactions == transactions() and chain.verdicts == verdicts()

    demand = load_demand_history(write_parquet(tmp_path / "sales.parquet", sales()),
                                 write_parquet(tmp_path / "calendar.parquet", calendar()))
    assert demand.sales == sales() and demand.calendar == calendar()
    # by its first bytes, whatever the file is called
    (tmp_path / "sales.export").write_bytes((tmp_path / "sales.parquet").read_bytes())
    assert load_demand_history(tmp_path / "sales.export").sales == sales()


def test_parquet_timestamps_with_or_without_zone_text_or_epoch_ms_are_the_same_instant(tmp_path: Path) -> None:
    instant = datetime(2025, 1, 1, 1, tzinfo=timezone.utc)
    ms = int(instant.timestamp() * 1000)
    columns = {
        "zoned_ns": pa.array([ms * 1_000_000], pa.timestamp("ns", tz="Europe/Berlin")),
        "naive_us": pa.array([instant.replace(tzinfo=None)], pa.timestamp("us")),
        "text": pa.array(["2025-01-01T02:00:00+01:00"]),
        "epoch_ms": pa.array([ms], pa.int64()),
    }
    for name, column in columns.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"machine_id": ["m1"], "ts": column, "temp": pa.array([61], pa.int32())}), path)
        (reading,) = load_readings(path).records
        assert reading.ts == instant, name
        assert reading.sensors == {"temp": 61.0}
    day = tmp_path / "daily.parquet"
    pq.write_table(pa.table({"ts": pa.array([instant.date()], pa.date32()), "sku": ["a"], "market": ["DE"],
                             "units": [3], "unit_price": [1.5]}), day)
    assert load_demand_history(day).sales[0].ts == datetime(2025, 1, 1, tzinfo=timezone.utc)


def test_parquet_without_pyarrow_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_parquet(tmp_path / "r.parquet", fleet(machines=1)[0])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"reading Parquet needs pyarrow: pip install 'stream-app\[parquet\]'"):
        load_readings(path)


def test_an_unreadable_parquet_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_readings(path)


# --- 4. rows without event ids -----------------------------------------------------------------------
def test_a_failure_log_without_ids_gets_the_same_ids_on_every_import(tmp_path: Path) -> None:
    rows = [["P-1", "2025-02-01T10:00:00Z", "Bearing_Wear"], ["P-2", "2025-02-03T08:30:00Z", ""],
            ["P-1", "2025-02-01T10:00:00Z", "Bearing_Wear"]]  # logged twice
    log = write_csv(tmp_path / "failures.csv", ["machine_id", "ts", "failure_mode"], rows)
    first, again = load_outcomes(log), load_outcomes(log)
    assert [o.event_id for o in first.records] == [o.event_id for o in again.records]
    assert first.duplicates == 1 and first.derived_ids == 3
    assert [(o.machine_id, o.outcome, o.failure_mode) for o in first.records] == [("P-1", "failure", "bearing_wear"),
                                                                                  ("P-2", "failure", None)]
    # the same log in another format and time notation: the same ids
    pq.write_table(pa.table({"machine_id": ["P-1", "P-2"],
                             "ts": pa.array([1738404000000, 1738571400000], pa.int64()),
                             "failure_mode": ["bearing_wear", None]}), tmp_path / "failures.parquet")
    assert [o.event_id for o in load_outcomes(tmp_path / "failures.parquet").records] == [o.event_id for o in first.records]
    # a different failure is a different event; a row's own id is kept
    other = write_csv(tmp_path / "other.csv", ["event_id", "machine_id", "ts", "outcome"],
                      [["", "P-1", "2025-02-01T11:00:00Z", "Repair"], ["mine", "P-1", "2025-02-01T10:00:00Z", "failure"]])
    derived, own = load_outcomes(other).records
    assert derived.event_id not in {o.event_id for o in first.records} and derived.outcome == "repair"
    assert own.event_id == "mine"


def test_sales_and_transactions_without_ids_dedupe_on_reimport(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "orders.csv", ["OrderDate", "Item", "Country", "Qty", "Price"],
                     [["2025-03-01", "a", "DE", 2, 9.5], ["2025-03-01", "a", "DE", 2, 9.5],
                      ["2025-03-02", "a", "DE", 1, 9.5]])
    mapping = ColumnMap.parse(["ts=OrderDate", "sku=Item", "market=Country", "units=Qty", "unit_price=Price"])
    history = load_demand_history(path, mapping=mapping)
    assert [s.units for s in history.sales] == [2.0, 1.0] and history.reports[0].duplicates == 1
    assert [s.event_id for s in load_demand_history(path, mapping=mapping).sales] == [s.event_id for s in history.sales]

    rows = [{k: x for k, x in flat(t, "features").items() if k != "event_id"} for t in transactions()]
    exported = write_flat(tmp_path / "tx.csv", rows + rows[:2])
    first, again = supply_chain.load_history(exported), supply_chain.load_history(exported)
    assert first.reports[0].duplicates == 2 and len(first.transactions) == len(transactions())
    assert [t.event_id for t in first.transactions] == [t.event_id for t in again.transactions]
    assert without_ids(first.transactions) == without_ids(transactions())


# --- 5. supply-chain CSV ----------------------------------------------------------------------------
def flat(event: BaseModel, prefix: str) -> dict[str, Any]:
    """The CSV layout of an event: its nested map as `prefix.NAME` columns."""
    row = event.model_dump(mode="json")
    return {**{k: x for k, x in row.items() if k != prefix}, **{f"{prefix}.{k}": x for k, x in row[prefix].items()}}


def write_flat(path: Path, rows: list[dict[str, Any]]) -> Path:
    header = list(dict.fromkeys(k for row in rows for k in row))
    return write_csv(path, header, [[row.get(k) for k in header] for row in rows])


def test_supply_chain_csv_loads_as_the_json_lines_of_the_same_history(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "tx.jsonl", transactions())
    write_jsonl(tmp_path / "v.jsonl", verdicts())
    from_jsonl = supply_chain.load_history(tmp_path / "tx.jsonl", tmp_path / "v.jsonl")
    tx_csv = write_flat(tmp_path / "tx.csv", [flat(t, "features") for t in transactions()])
    assert (tmp_path / "tx.csv").read_text().splitlines()[0].endswith("features.controlled,features.temp_excursion")
    v_csv = write_flat(tmp_path / "v.csv", [v.model_dump(mode="json") for v in verdicts()])
    from_csv = supply_chain.load_history(tx_csv, v_csv)
    assert from_csv.transactions == from_jsonl.transactions == transactions()
    assert from_csv.verdicts == from_jsonl.verdicts == verdicts()
    assert [r.format for r in from_csv.reports] == ["csv", "csv"]


# --- 6. bad rows ------------------------------------------------------------------------------------
def test_bad_rows_are_counted_and_reported_in_every_new_path(tmp_path: Path) -> None:
    wide = write_csv(tmp_path / "wide.csv", ["Timestamp", "Asset", "temp"], [
        ["2025-01-01T00:00:00Z", "m1", "60"],
        ["yesterday", "m1", "61"],  # line 3
        ["2025-01-01T02:00:00Z", "", "62"],  # line 4: no machine
        ["2025-01-01T03:00:00Z", "m1", "hot"],  # line 5
        ["2025-01-01T04:00:00Z", "m1", "63"],
        ["2025-01-01T05:00:00Z", "m1", "64"],
        ["2025-01-01T06:00:00Z", "m1", "65"],
    ])
    loaded = load_readings(wide, mapping=ColumnMap.parse(["ts=Timestamp", "machine_id=Asset"]))
    assert (loaded.rows, loaded.ok, loaded.bad_rows) == (7, 4, 3)
    assert [e.line for e in loaded.errors] == [3, 4, 5]
    assert loaded.errors[0].message.startswith("ts:") and loaded.errors[2].message == "sensors.temp: 'hot' is not a number"

    rows = [flat(t, "features") for t in transactions()]
    rows[1]["quantity"] = -1
    rows[4]["source_type"] = "warehouse"
    loaded_tx = supply_chain.load_history(write_flat(tmp_path / "tx.csv", rows)).reports[0]
    assert loaded_tx.bad_rows == 2 and [e.line for e in loaded_tx.errors] == [3, 6]

    at = "2025-01-01T00:00:00Z"
    pq.write_table(pa.table({"machine_id": ["m1", "m1", None, "m2"], "ts": [at, "nope", at, at],
                             "temp": [1.0, 2.0, 3.0, float("inf")]}), tmp_path / "r.parquet")
    with pytest.raises(DataError) as info:
        load_readings(tmp_path / "r.parquet")
    message = str(info.value)
    assert "3 of 4 rows are bad" in message and "row 2: ts:" in message
    assert "row 4: sensors.temp: inf is not finite" in message
    assert "\n" not in message


# --- end to end ---------------------------------------------------------------------------------------
@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_train_maintenance_on_a_historian_export_and_a_failure_log(isolated: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    readings, outcomes = fleet(machines=10, lives=2)
    sensors = all_sensors(readings)
    wide = write_csv(isolated / "wide.csv", ["Timestamp", "AssetTag", "Site", *(s.upper() for s in sensors)],
                     [[r.ts.isoformat(), r.machine_id, "North", *(r.sensors.get(s) for s in sensors)] for r in readings])
    failures = write_csv(isolated / "failures.csv", ["AssetTag", "FailedAt", "Mode"],
                         [[o.machine_id, o.ts.isoformat(), o.failure_mode] for o in outcomes])
    argv = ["train", "maintenance", "--quick", "--data", str(wide), "--outcomes", str(failures),
            "--map", "machine_id=AssetTag", "--map", "data:ts=Timestamp", "--map", "outcomes:ts=FailedAt",
            "--map", "failure_mode=Mode", *(x for s in sensors for x in ("--map", f"sensors.{s}={s.upper()}"))]
    assert main([*argv, "--map", "cycle=Cycle"]) == 1  # one line and the fix, no traceback
    err = capsys.readouterr().err
    assert "--map cycle=Cycle: no file has a column 'Cycle'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 2
    assert main(["train", "maintenance", "--quick", "--map", "ts=Timestamp"]) == 2  # nothing to rename
    assert "--map renames the columns of the --data and --outcomes files" in capsys.readouterr().err

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{len(readings)} loaded, 0 bad" in out and f"{len(outcomes)} loaded, 0 bad" in out
    current = ModelRegistry(isolated / "models").current("maintenance")
    assert current is not None and current.version == "v1"
    assert sorted(current.manifest["sensor_coverage"]) == sorted(sensors)
