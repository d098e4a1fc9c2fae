from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_app.cli import build_parser, main
from stream_app.registry import ModelRegistry
from stream_app.settings import get_settings


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_every_contract_verb_parses() -> None:
    parser = build_parser()
    for argv in (["broker"], ["worker"], ["train", "all"], ["simulate"], ["demo", "--duration", "5"], ["tail", "alerts"]):
        assert parser.parse_args(argv).command == argv[0]


def test_history_then_train_on_it_writes_a_version_with_a_report(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = isolated / "history"
    assert main(["simulate", "--history", str(history), "--machines", "12", "--lives", "2"]) == 0
    first = json.loads((history / "readings.jsonl").read_text().splitlines()[0])
    assert {"event_id", "machine_id", "ts", "sensors"} <= set(first)
    argv = ["train", "maintenance", "--data", str(history / "readings.jsonl"),
            "--outcomes", str(history / "outcomes.jsonl"), "--quick"]
    assert main(argv) == 0
    current = ModelRegistry(isolated / "models").current("maintenance")
    assert current is not None and current.version == "v1"
    assert (current.path / "report.md").read_text().startswith("#")
    assert "v1" in capsys.readouterr().out
    assert main(["train", "maintenance", "--if-missing"]) == 0
    assert [v.version for v in ModelRegistry(isolated / "models").versions("maintenance")] == ["v1"]


@pytest.mark.parametrize(("stream", "size", "files"), [
    ("supply-chain", "8", ("transactions.jsonl", "verdicts.jsonl")),
    ("demand", "2", ("sales.jsonl", "calendar.jsonl")),
])
def test_every_stream_writes_a_history_in_the_contract_layout(isolated: Path, stream: str, size: str, files: tuple[str, str]) -> None:
    out = isolated / stream
    assert main(["simulate", "--stream", stream, "--history", str(out), "--size", size]) == 0
    first = json.loads((out / files[0]).read_text().splitlines()[0])
    assert "event_id" in first and "ts" in first
    assert (out / files[1]).exists()


def test_drift_injection_scales_one_sensor_after_n_readings() -> None:
    from itertools import islice

    from stream_app.simulation.producer import DriftInjection, inject_drift, maintenance_events

    drift = DriftInjection.parse("vibration_rms=2@50")
    plain = list(islice(maintenance_events(get_settings(), 5, seed=1), 200))
    shifted = list(islice(inject_drift(iter(plain), drift), 200))
    readings = [(a.value, b.value) for (_, a), (_, b) in zip(plain, shifted) if a.kind == "reading"]
    for i, (before, after) in enumerate(readings):
        v, w = before["sensors"].get("vibration_rms"), after["sensors"].get("vibration_rms")
        assert w == (v if i < 50 or v is None else round(v * 2, 4))
        assert {k: x for k, x in after["sensors"].items() if k != "vibration_rms"} == {
            k: x for k, x in before["sensors"].items() if k != "vibration_rms"}
    with pytest.raises(ValueError, match="SENSOR=FACTOR@READINGS"):
        DriftInjection.parse("vibration_rms*2")
