"""Training: a registry version with the report's figures per attack kind against the baseline,
user history files with bad lines, and refusals with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_app.registry import ModelRegistry
from stream_app.scoring.supply_chain import MODEL_NAME
from stream_app.simulation.supply_chain import ATTACK_KINDS
from stream_app.training.data import DataError
from stream_app.training.supply_chain import TrainConfig, load_history, train_supply_chain
from tests.integration.supply_chain_fixtures import small_history, supply_chain_model_dir  # noqa: F401


def test_a_trained_version_reports_every_attack_kind_against_the_baseline(supply_chain_model_dir: Path) -> None:
    version = ModelRegistry(supply_chain_model_dir).current(MODEL_NAME)
    assert version is not None and version.version == "v1"
    for name in ("manifest.json", "report.md", "report.json", "gnn.pt", "vae.pt", "hst_reference.npy", "graph.pt"):
        assert version.file(name).is_file(), name
    test = version.manifest["metrics"]["test"]
    assert set(test["ensemble"]["kinds"]) == set(test["baseline_hst"]["kinds"]) == set(ATTACK_KINDS)
    for policy in ("ensemble", "baseline_hst", "product"):
        for kind in test[policy]["kinds"].values():
            assert {"detection", "instance_detection", "precision", "shipments"} <= set(kind)
    ens, base = test["ensemble"], test["baseline_hst"]
    assert ens["detection"] >= 0.9 and ens["flag_rate_normal"] <= 0.03
    assert ens["detection"] > base["detection"]
    split = version.manifest["split"]
    assert split["first_ts"] < split["validation_cutoff"] < split["test_cutoff"] < split["last_ts"]
    report = version.file("report.md").read_text()
    assert "Detection per attack kind" in report and "HalfSpaceTrees alone (baseline)" in report
    assert json.loads(version.file("report.json").read_text())["metrics"]["test"]["ensemble"]["detection"] == ens["detection"]


def test_user_history_files_skip_bad_lines_and_a_csv_without_the_columns_is_refused(tmp_path: Path) -> None:
    transactions, verdicts = small_history()
    tx_path, v_path = tmp_path / "tx.jsonl", tmp_path / "verdicts.jsonl"
    lines = [t.model_dump_json() for t in transactions[:300]]
    lines[10] = '{"event_id": "broken"'
    lines[20] = json.dumps({**json.loads(lines[21]), "quantity": -5})
    tx_path.write_text("\n".join(lines + [lines[30]]) + "\n")
    v_path.write_text("\n".join(v.model_dump_json() for v in verdicts) + "\n")
    data = load_history(tx_path, v_path)
    assert len(data.transactions) == 298 and len(data.verdicts) == len(verdicts)
    report = data.reports[0]
    assert report.bad_rows == 2 and report.duplicates == 1 and {e.line for e in report.errors} == {11, 21}
    assert "298 loaded" in data.summary()
    csv = tmp_path / "tx.csv"
    csv.write_text("event_id,ts\n1,2\n")
    with pytest.raises(DataError, match="no column shipment_id, product_id"):
        load_history(csv)


def test_training_refuses_too_little_data_with_a_reason(tmp_path: Path) -> None:
    transactions, verdicts = small_history()
    with pytest.raises(ValueError, match="at least 1,000 transactions"):
        train_supply_chain(ModelRegistry(tmp_path), transactions[:500], verdicts, TrainConfig.quick())
    with pytest.raises(ValueError, match="burn-in"):
        train_supply_chain(ModelRegistry(tmp_path), transactions[:3000], verdicts, TrainConfig.quick(burn_in_days=60))
    assert ModelRegistry(tmp_path).current(MODEL_NAME) is None


def test_training_without_verdicts_still_trains_detectors(tmp_path: Path) -> None:
    transactions, _ = small_history()
    version = train_supply_chain(ModelRegistry(tmp_path), transactions, [], TrainConfig.quick(gnn_epochs=20, vae_epochs=2),
                                 promote=False)
    assert version.manifest["ensemble"]["score"] == {"method": "normal_rank"}
    assert version.manifest["metrics"]["test"]["ensemble"]["kinds"] == {}
    assert ModelRegistry(tmp_path).current(MODEL_NAME).version == version.version  # only version, not promoted
    assert not (tmp_path / MODEL_NAME / "CURRENT").exists()
