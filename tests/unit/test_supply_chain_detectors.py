"""Each detector on its own, and the calibrated ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_app.features.supply_chain import FEATURES, INDEX
from stream_app.graph import pyg
from stream_app.graph.embeddings import compute_table
from stream_app.scoring.supply_chain_detectors import EdgeDetector, HSTDetector, robust_statistic
from stream_app.scoring.supply_chain_ensemble import Ensemble, TailCalibration, combine, fit_platt_on_evidence
from stream_app.training.supply_chain import TrainConfig, fit_gnn, fit_hst, fit_vae
from tests.integration.supply_chain_fixtures import one_torch_thread  # noqa: F401
from tests.unit.test_supply_chain_graph import _network_graph

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F = len(FEATURES)


def _normal_rows(n: int, seed: int = 0) -> np.ndarray:
    """Correlated 'normal' features: a latent factor drives pairs of columns."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    x = np.zeros((n, F))
    for j in range(F):
        x[:, j] = z[:, j % 4] * (0.5 + 0.1 * (j % 3)) + 0.1 * rng.normal(size=n)
    return x


def test_vae_reconstructs_normal_rows_and_names_the_broken_feature() -> None:
    x = _normal_rows(3000)
    vae, info = fit_vae(x, TrainConfig(vae_epochs=8, vae_min_steps=0), np.random.default_rng(0))
    assert info["loss_by_epoch"][-1] < info["loss_by_epoch"][0]
    test = _normal_rows(200, seed=1)
    odd = test[:1].copy()
    odd[0, 7] += 6.0  # one feature breaks its latent pattern
    normal_stat = vae.statistic(vae.terms(test))
    terms = vae.terms(odd)
    assert vae.statistic(terms)[0] > np.quantile(normal_stat, 0.99)
    assert int(np.argmax(terms[0])) == 7


def test_half_space_trees_rebuild_from_their_reference_window() -> None:
    x = _normal_rows(1200)
    hst = fit_hst(x, TrainConfig(hst_window=500, hst_trees=10))
    assert hst.ready
    far = np.full((1, F), 5.0)
    scores = hst.statistic(np.vstack([x[:100], far]))
    assert scores[-1] > np.quantile(scores[:-1], 0.95)
    rebuilt = HSTDetector.from_manifest(hst.to_manifest(), hst.reference)
    np.testing.assert_allclose(rebuilt.statistic(x[:50]), hst.statistic(x[:50]))


@pytest.mark.parametrize("height", [3, 8])
def test_half_space_trees_score_all_rows_at_once_as_river_scores_each(height: int) -> None:
    x = _normal_rows(1500)
    hst = HSTDetector(x.min(axis=0), x.max(axis=0), n_trees=12, height=height, window=400, seed=3)
    assert (hst.statistic(x[:5]) == 0).all()  # no complete window yet: River scores 0
    hst.fit(x)
    rows = np.vstack([_normal_rows(300, seed=2), np.full((1, F), 5.0), np.full((1, F), -5.0), x[:2]])
    rows[:20] *= 3  # out of the reference range: walks that stop early on thin mass
    river = [hst.model.score_one(dict(zip(hst.names, r))) for r in hst.scaled(rows).tolist()]
    assert hst.statistic(rows).tolist() == river  # exactly: the same walk, whole-number sums
    assert len(set(river)) > 50


def test_gnn_finds_flows_within_a_region_plausible_and_across_regions_not() -> None:
    graph = _network_graph()
    snap = pyg.snapshot(graph, 3)
    anchors = pyg.choose_anchors(snap, 4)
    torch.manual_seed(0)
    model, info = fit_gnn(snap, anchors, TrainConfig(gnn_epochs=150, gnn_hidden=16, gnn_embedding=8), np.random.default_rng(0))
    table = compute_table(model, snap, anchors, graph.applied)
    detector = EdgeDetector(model, info["cold_statistic"])
    stat, cold = detector.statistic(table, ["WA0", "WA0", "WB1", "X-new"], ["PA01", "PB02", "PA00", "PA00"])
    assert list(cold) == [False, False, False, True]
    assert stat[0] < stat[1] and stat[0] < stat[2]  # the usual flow vs two cross-region ones
    assert stat[3] == info["cold_statistic"]  # an unknown node is as plausible as a random pair
    no_table, all_cold = detector.statistic(None, ["WA0"], ["PA01"])
    assert all_cold.all() and no_table[0] == info["cold_statistic"]


def test_robust_statistic_counts_large_quantities_any_price_and_odd_hours() -> None:
    x = np.zeros((5, F))
    x[:, INDEX["type_hour_share"]] = np.log10(0.3 + 1e-4) / 4  # a usual hour for the flow
    x[0, INDEX["qty_z"]] = 6.0
    x[1, INDEX["qty_z"]] = -4.0
    x[2, INDEX["price_z"]] = -8.0
    x[3, [INDEX["qty_z"], INDEX["qty_z_product"]]] = 3.0, 4.0  # off against the route and the product
    x[4, INDEX["type_hour_share"]] = -1.0  # an hour this kind of flow never had in training
    np.testing.assert_allclose(robust_statistic(x), [6.0, 0.0, 8.0, 5.0, 6.0])


def test_tail_calibration_is_monotone_and_keeps_growing_past_the_data() -> None:
    rng = np.random.default_rng(0)
    cal = TailCalibration.fit(rng.exponential(size=5000))
    s = cal.surprise(np.array([0.0, 1.0, 3.0, 6.0, 12.0, 50.0]))
    assert np.all(np.diff(s) >= 0) and s[0] < 0.01 and s[-1] == 12.0
    assert abs(cal.surprise(np.array([np.log(100)]))[0] - 2.0) < 0.25  # exp tail: P(S >= ln 100) = 1 %
    assert TailCalibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(ValueError):
        TailCalibration.fit(np.ones(10))


def test_ensemble_threshold_hits_the_target_flag_rate_and_scores_attacks_high() -> None:
    rng = np.random.default_rng(1)
    normal = {d: rng.exponential(size=4000) for d in ("gnn", "vae", "hst", "robust")}
    cals = {d: TailCalibration.fit(v) for d, v in normal.items()}
    surprises = {d: cals[d].surprise(v) for d, v in normal.items()}
    evidence = combine(surprises)
    assert np.allclose(evidence, np.max(np.stack(list(surprises.values())), 0) + 0.25 * (
        np.sum(np.stack(list(surprises.values())), 0) - np.max(np.stack(list(surprises.values())), 0)))
    threshold = float(np.quantile(evidence, 0.99))
    # attacks: one detector far out (what a plain sum would drown), the rest normal
    attack = {d: rng.exponential(size=200) for d in normal}
    attack["robust"] = attack["robust"] + 12.0
    e_attack = combine({d: cals[d].surprise(v) for d, v in attack.items()})
    labels = np.r_[np.zeros(len(evidence)), np.ones(len(e_attack))]
    platt = fit_platt_on_evidence(np.r_[evidence, e_attack], labels)
    ens = Ensemble(cals, TailCalibration.fit(evidence), threshold, 0.01, platt)
    fresh = {d: rng.exponential(size=20000) for d in normal}
    flags = ens.combine(ens.surprises(fresh)) >= ens.threshold
    assert 0.005 < flags.mean() < 0.015
    assert (e_attack >= threshold).mean() > 0.95
    assert ens.score(e_attack).mean() > 0.8 and ens.score(evidence).mean() < 0.1
    again = Ensemble.from_dict(ens.to_dict())
    np.testing.assert_allclose(again.score(e_attack), ens.score(e_attack))
