from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from stream_app.cli import build_parser
from stream_app.registry import ModelRegistry
from stream_app.settings import Settings

NAME = "maintenance"


def _add(store: Path, roc_auc: float, promote: bool = False, comparison: Optional[dict[str, Any]] = None) -> None:
    manifest: dict[str, Any] = {
        "kind": "maintenance_lstm",
        "metrics": {"model": {"roc_auc": roc_auc}},
        "features": {"sensors": ["bearing_temp", "rpm"], "mean": [50.0, 1500.0]},
        "hyperparameters": {"hidden": 64, "layers": 2},
        "data_fingerprint": {"readings": 1000, "sha256": "ab" * 32},
    }
    if comparison:
        manifest["comparison"] = comparison
    with ModelRegistry(store).new_version(NAME, manifest, promote=promote) as staging:
        (staging / "report.md").write_text("# report\n")
        (staging / "report.json").write_text(json.dumps({"calibration": {"brier": {"test": {"calibrated": 0.03}}}}))


def _comparison(candidate_auc: float) -> dict[str, Any]:
    return {
        "data": "March",
        "candidate": {"roc_auc": candidate_auc, "brier": 0.03},
        "current": {"version": "v1", "roc_auc": 0.98, "brier": 0.03},
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    _add(tmp_path, 0.98, promote=True)
    _add(tmp_path, 0.90, comparison=_comparison(candidate_auc=0.90))
    return tmp_path


def models(store: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Runs `stream-app models ...` as main() does, on the given store."""
    args = build_parser().parse_args(["models", *argv])
    rc = args.func(args, Settings(model_dir=store))
    out, err = capsys.readouterr()
    return rc, out, err


def _current(store: Path) -> str:
    return (store / NAME / "CURRENT").read_text().strip()


def test_list_shows_versions_status_and_key_metrics(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = models(store, capsys, "list")
    assert rc == 0
    header, first, second = out.splitlines()
    assert header.split()[:4] == ["MODEL", "VERSION", "CREATED", "STATUS"]
    assert first.split()[:2] == [NAME, "v1"] and "current" in first and "roc_auc=0.98 brier=0.03" in first
    assert second.split()[:2] == [NAME, "v2"] and "current" not in second and "roc_auc=0.9" in second


def test_list_of_an_unknown_model_fails(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = models(store, capsys, "list", "demand")
    assert rc == 1 and out == "" and "no model versions" in err


def test_show_summarises_the_manifest(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = models(store, capsys, "show", NAME, "v2")
    assert rc == 0
    assert out.splitlines()[0] == "maintenance v2"
    assert "sensors=[bearing_temp,rpm]" in out and "mean=[2 values]" in out
    assert "hidden=64 layers=2" in out and "sha256=abababababab…" in out
    assert "against v1 on March" in out and str(store / NAME / "v2" / "report.md") in out
    rc, out, _ = models(store, capsys, "show", NAME, "--json")
    summary = json.loads(out)
    assert (summary["version"], summary["status"]) == ("v1", ["current"])
    assert summary["key_metrics"] == {"roc_auc": 0.98, "brier": 0.03}
    rc, _, err = models(store, capsys, "show", NAME, "v7")
    assert rc == 1 and "no model maintenance v7" in err


def test_a_worse_candidate_is_refused(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = models(store, capsys, "promote", NAME, "v2")
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and "refused: maintenance v2 may not replace v1" in err and "roc_auc 0.9 vs 0.98" in err
    assert _current(store) == "v1"
    last = ModelRegistry(store).history(NAME)[-1]
    assert (last.action, last.version, last.previous) == ("refused", "v2", "v1")


def test_force_promotes_and_is_recorded(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = models(store, capsys, "promote", NAME, "v2", "--force", "--reason", "new sensor layout")
    assert rc == 0 and out.startswith("maintenance v2 is now current (was v1); forced past the gate")
    assert _current(store) == "v2"
    last = ModelRegistry(store).history(NAME)[-1]
    assert last.action == "promoted" and last.forced and "new sensor layout" in last.reason
    rc, out, _ = models(store, capsys, "history", NAME)
    assert rc == 0 and "promoted (forced)" in out.splitlines()[-1] and "was v1" in out.splitlines()[-1]


def test_without_evidence_promotion_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _add(tmp_path, 0.98, promote=True)
    _add(tmp_path, 0.99)
    rc, _, err = models(tmp_path, capsys, "promote", NAME, "v2")
    assert rc == 1 and "no comparison against v1; run retraining evaluation or pass --force" in err


def test_a_better_candidate_is_promoted_and_rolled_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _add(tmp_path, 0.98, promote=True)
    _add(tmp_path, 0.99, comparison=_comparison(candidate_auc=0.99))
    rc, out, _ = models(tmp_path, capsys, "promote", NAME, "v2")
    assert rc == 0 and out == "maintenance v2 is now current (was v1)\n" and _current(tmp_path) == "v2"
    rc, out, _ = models(tmp_path, capsys, "rollback", NAME, "--reason", "alert storm")
    assert rc == 0 and out == "maintenance v1 is current again (was v2)\n" and _current(tmp_path) == "v1"
    rc, _, err = models(tmp_path, capsys, "rollback", NAME)
    assert rc == 1 and "no version of maintenance was current before v1" in err


def test_candidate_set_show_clear(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert models(store, capsys, "candidate", NAME, "v2")[0] == 0
    assert (store / NAME / "CANDIDATE").read_text().strip() == "v2"
    assert models(store, capsys, "candidate", NAME)[1] == "maintenance candidate: v2\n"
    rc, out, _ = models(store, capsys, "list", NAME)
    assert "candidate" in out.splitlines()[2]
    assert models(store, capsys, "candidate", NAME, "--clear")[1] == "maintenance: candidate v2 cleared\n"
    assert not (store / NAME / "CANDIDATE").exists()
    rc, _, err = models(store, capsys, "candidate", NAME, "v1")
    assert rc == 1 and "already current" in err


def test_a_candidate_can_serve_a_share_of_entities(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = models(store, capsys, "candidate", NAME, "v2", "--share", "0.1")
    assert rc == 0 and out == "maintenance v2 is the candidate: workers score it in shadow and it serves 10% of entities\n"
    assert (store / NAME / "CANDIDATE").read_text().strip() == "v2 share=0.1"
    assert models(store, capsys, "candidate", NAME)[1] == "maintenance candidate: v2 (serves 10% of entities)\n"
    rc, _, err = models(store, capsys, "candidate", NAME, "v2", "--share", "0.8")
    assert rc == 1 and "promotion" in err


def test_the_console_script_exits_1_on_refusal(store: Path) -> None:
    env = {**os.environ, "MODEL_DIR": str(store)}
    done = subprocess.run(
        [sys.executable, "-c", "from stream_app.cli import main; raise SystemExit(main())", "models", "promote", NAME, "v2"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1 and "refused" in done.stderr and _current(store) == "v1"
