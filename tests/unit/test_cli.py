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
    assert main(["train", "all", "--if-missing"]) == 0
    assert [v.version for v in ModelRegistry(isolated / "models").versions("maintenance")] == ["v1"]


def test_streams_without_training_are_refused_clearly(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "demand"]) == 2
    assert "not available" in capsys.readouterr().err
