"""The training reports' figures: every stream's quick training writes its PNGs beside report.md,
links them and lists them in report.json; the figure code draws what its arrays say; a figure
without its data, or one that fails, leaves a sentence instead and never fails the run."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from stream_app.registry import ModelRegistry
from stream_app.training import evaluate_policy as ep
from stream_app.training.demand_plots import pick_series
from stream_app.training.maintenance_plots import MaintenanceCurves, add_figures, reliability_figure
from stream_app.training.plots import add_figure, roc_curve
from stream_app.training.report import Report, roc_auc
from stream_app.training.supply_chain_plots import SupplyChainScores
from stream_app.training.supply_chain_plots import add_figures as add_supply_chain_figures
from tests.integration.supply_chain_fixtures import supply_chain_model_dir  # noqa: F401
from tests.unit.demand_fixtures import quick_model_dir

FIGURES = {
    "maintenance": ("reliability.png", "roc_pr.png", "lead_time.png", "ttf.png"),
    "supply-chain": ("score_distributions.png", "detection_by_kind.png"),
    "demand": ("fan_charts.png", "interval_coverage.png"),
}


@pytest.fixture
def trained_root(request: pytest.FixtureRequest) -> Path:
    """The model store of a quick training of the stream in `request.param`, shared with the
    other tests of the session."""
    if request.param == "maintenance":
        return request.getfixturevalue("trained_model_dir")
    if request.param == "supply-chain":
        return request.getfixturevalue("supply_chain_model_dir")
    return quick_model_dir()


@pytest.mark.parametrize("trained_root", list(FIGURES), indirect=True)
def test_each_training_writes_its_figures_beside_the_report_and_links_them(trained_root: Path, request: pytest.FixtureRequest) -> None:
    stream = request.node.callspec.params["trained_root"]
    version = ModelRegistry(trained_root).current(stream)
    assert version is not None
    text = version.file("report.md").read_text()
    listed = {f["file"]: f for f in json.loads(version.file("report.json").read_text())["figures"]}
    for name in FIGURES[stream]:
        image = imread(version.file(name), format="png")
        height, width = image.shape[:2]
        assert 300 <= height <= 2000 and 500 <= width <= 2000 and image.shape[2] in (3, 4), (name, image.shape)
        assert image[..., :3].std() > 0.05, f"{name} is blank"
        link = f"]({name})"
        assert link in text, name
        heading = text[: text.index(link)].rsplit("\n## ", 1)[1].splitlines()[0]
        assert heading.startswith("Figure: ") and listed[name]["heading"] == heading
    assert "Not drawn" not in text
    assert not list(version.path.glob(".*.tmp"))  # every PNG was replaced whole


def test_the_reliability_figure_draws_the_bins_of_its_arrays() -> None:
    p = np.r_[np.full(10, 0.05), np.full(4, 0.55), np.full(2, 0.95)]
    y = np.r_[np.eye(1, 10)[0], [1, 1, 1, 0], [1, 1]]
    fig = reliability_figure(y, {"LSTM": p, "other": np.full(16, 0.5)}, horizon_hours=24)
    top, bottom = fig.axes
    line = next(l for l in top.get_lines() if l.get_label() == "LSTM")
    np.testing.assert_allclose(line.get_xdata(), [0.05, 0.55, 0.95])
    np.testing.assert_allclose(line.get_ydata(), [0.1, 0.75, 1.0])
    assert [t.get_text() for t in top.texts] == ["n=10", "n=4", "n=2"]
    counts = [bar.get_height() for bar in bottom.containers[0]]
    assert counts == [10, 0, 0, 0, 0, 4, 0, 0, 0, 2]
    assert [bar.get_height() for bar in bottom.containers[1]][5] == 16  # 0.5 falls in [0.5, 0.6)
    assert top.get_xlabel() and top.get_ylabel() and top.get_title()
    assert _png(fig) == _png(reliability_figure(y, {"LSTM": p, "other": np.full(16, 0.5)}, horizon_hours=24))


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi="figure", metadata={"Software": None})
    return out.getvalue()


def test_the_roc_curve_encloses_the_reported_auc() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    score = np.round(y + rng.normal(0, 0.8, 500), 1)  # ties too
    fpr, tpr = roc_curve(y, score)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, score), abs=1e-12)


def test_the_fan_charts_pick_the_same_series_by_rule() -> None:
    volume = np.array([5.0, 0.0, 50.0, 5.0, 12.0, 1.0])
    selling_days = np.array([3, 0, 20, 3, 2, 1])
    assert pick_series(volume, selling_days) == [(2, "highest volume"), (3, "median volume"), (5, "sparsest")]
    assert pick_series(np.array([4.0, 0.0]), np.array([2, 0])) == [(0, "highest volume")]
    assert pick_series(np.zeros(3), np.zeros(3)) == []


def _curves(failures: bool) -> MaintenanceCurves:
    y = np.r_[np.zeros(50), np.ones(10 if failures else 0)]
    p = np.clip(y * 0.6 + np.linspace(0, 0.3, len(y)), 0, 1)
    ttf = np.linspace(1, 40, 10) if failures else np.zeros(0)
    return MaintenanceCurves(y, {"LSTM": p, "Linear baseline": p[::-1]}, p, ttf, ttf + 3)


def test_figures_without_their_data_are_skipped_with_a_sentence(tmp_path: Path) -> None:
    report = Report("r")
    add_figures(report, _curves(failures=False), {"failures": [], "decision_points": {}}, 24.0, 96.0)
    scores = SupplyChainScores(np.full(5, "", dtype=object), np.arange(5.0), 3.0, np.arange(5.0), 2.0)
    add_supply_chain_figures(report, scores, {"ensemble": {"kinds": {}, "flag_rate_normal": 0.01}}, 0.01)
    report.write(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "Not drawn: no failure in the test period" in text
    assert "Not drawn: no test reading has an exact time to failure" in text
    assert "Not drawn: the test period's labelled readings are all of one class" in text
    assert text.count("Not drawn: no confirmed attack in the test period") == 2
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["reliability.png"]  # the one with data
    figures = json.loads((tmp_path / "report.json").read_text())["figures"]
    assert [f["file"] for f in figures] == ["reliability.png"] + [None] * 5
    assert all(f["skipped"].startswith("Not drawn: ") for f in figures[1:])


def test_a_figure_that_fails_is_noted_and_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Unsaveable:
        def savefig(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("disk full")

    def broken() -> Any:
        raise ValueError("bad array")

    report = Report("r")
    with caplog.at_level(logging.WARNING):
        add_figure(report, "Figure: broken", "broken.png", broken)
        report.figure("Figure: unsaveable", "unsaveable.png", Unsaveable())  # type: ignore[arg-type]
        add_figures(report, _curves(failures=True), None, 24.0, 96.0)  # policy not evaluated yet
        report.write(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "Not drawn: drawing failed (ValueError: bad array)" in text
    assert "Not drawn: saving the image failed (OSError: disk full)" in text
    assert "Not drawn: the decision policy has not been evaluated" in text
    assert {"broken.png", "unsaveable.png"} <= {r.args[0] for r in caplog.records if r.levelno == logging.WARNING}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reliability.png", "report.json", "report.md", "roc_pr.png",
                                                          "ttf.png"]
    with pytest.raises(ValueError, match="plain .png file name"):
        report.figure("x", "../elsewhere.png", Unsaveable())  # type: ignore[arg-type]


def test_lead_times_per_failure_and_missed_ones() -> None:
    hours = np.arange(0, 100.0, 1.0)
    t = hours * 3600

    def life(machine: str, end: str) -> ep.LifeView:
        return ep.LifeView(machine, np.arange(len(t)), t, end, 100.0 * 3600, np.zeros(len(t)), np.ones(len(t), bool))

    lives = [life("a", "failure"), life("b", "failure"), life("c", "censored")]
    alerts = [hours == 90.0, hours == 50.0, hours == 95.0]  # b's alert is before the horizon: missed
    assert ep.failure_leads(alerts, lives, 60 * 3600, 24.0) == [(0, 10.0), (1, None)]
    point = ep.decision_point([hours >= 80, hours >= 99, hours < 0], lives, 60 * 3600)
    assert point == {"true_positive_rate": None, "false_positive_rate": pytest.approx(21 / 120), "precision": 0.0}
