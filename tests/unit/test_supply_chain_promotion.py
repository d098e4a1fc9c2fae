"""The promotion gate and a user's own model: with the demo's model (trained on the product's
simulator) current, a model trained with `train supply-chain --data` on an independent network's
unlabelled history is not refused for metrics that history cannot measure; a refusal, when a
measured metric is worse, names both versions' figures and the command that promotes anyway."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stream_app.registry import ModelRegistry
from stream_app.scoring.supply_chain import MODEL_NAME
from stream_app.training.release import Release, describe
from tests.integration.supply_chain_fixtures import one_torch_thread, supply_chain_model_dir  # noqa: F401
from tests.unit.supply_chain_user_data import train_on_user_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_model_of_the_users_unlabelled_data_replaces_the_demo_model(supply_chain_model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(supply_chain_model_dir, store)  # the demo trained v1 on the simulator: it is current
    registry = ModelRegistry(store)
    assert registry.current(MODEL_NAME).version == "v1"
    output = train_on_user_data(store, tmp_path)
    new = registry.get(MODEL_NAME, "v2")
    comparison = new.manifest["comparison"]
    assert comparison["current"]["version"] == "v1"
    # no labelled attacks in the user's history: detection and ranking are not measurable for
    # either version; the flag rate on the user's normal traffic is, for both
    for side in ("candidate", "current"):
        assert "detection" not in comparison[side] and "ensemble_auc" not in comparison[side]
        assert "flag_rate_normal" in comparison[side]
    cand, cur = comparison["candidate"]["flag_rate_normal"], comparison["current"]["flag_rate_normal"]
    # the demo's model flags most of the user's normal traffic; the user's own flags ~1 %
    assert cand < 0.05 < cur
    entry = registry.history(MODEL_NAME)[-1]
    assert registry.current(MODEL_NAME).version == "v2" and (entry.version, entry.action) == ("v2", "promoted")
    assert "left out: detection not measured for v2 and v1" in entry.reason
    assert "supply-chain v2 promoted" in output


def test_a_refusal_names_both_figures_and_the_command_that_promotes_anyway(supply_chain_model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(supply_chain_model_dir, store)
    registry = ModelRegistry(store)
    current = registry.current(MODEL_NAME)
    manifest = {k: v for k, v in current.manifest.items() if k not in ("name", "version", "created_at")}
    # measured on data without labelled attacks: only the flag rate, and the new one flags more
    manifest["comparison"] = {"data": "the user's test weeks", "candidate": {"flag_rate_normal": 0.031},
                              "current": {"version": "v1", "flag_rate_normal": 0.012}}
    with registry.new_version(MODEL_NAME, manifest, promote=False) as staging:
        for f in current.path.iterdir():
            if f.name != "manifest.json":
                shutil.copy(f, staging / f.name)
    Release("gate").apply(registry, MODEL_NAME, "v2")
    assert registry.current(MODEL_NAME).version == "v1"
    text = describe(registry, MODEL_NAME, "v2")
    assert "flag_rate_normal 0.031 vs 0.012 (lower is better, tolerance 0.002)" in text
    assert "v2's figure first, then v1's" in text
    assert "stream-app models promote supply-chain v2 --force" in text
    assert "detection" not in text  # not measured: never a reason to refuse
