"""Demand training: the time-ordered split, the daily panel, a user's files, and a quick run's
registry version and report (model vs seasonal naive vs moving average)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_app.registry import ModelRegistry
from stream_app.scoring.demand_model import LoadedDemandModel
from stream_app.training.data import DataError
from stream_app.training.demand import TrainConfig, build_panel, load_demand_history, split_pairs
from tests.unit.demand_fixtures import quick_model_dir, sale


def test_the_panel_sums_days_once_per_event_id() -> None:
    events = [sale("a", 0, units=2), sale("a", 0, units=2), sale("b", 0, hour=23.9, units=1), sale("c", 2, units=5, promo=True),
              sale("d", 1, sku="bk-2", market="US")]
    panel = build_panel(events, [], horizon=30)
    assert panel.series == [("bk-1", "DE"), ("bk-2", "US")]
    assert panel.units.tolist() == [[3.0, 0.0, 5.0], [0.0, 1.0, 0.0]]
    assert panel.first_active.tolist() == [0, 1] and panel.promo_units[0, 2] == 5.0
    assert panel.calendar.shape == (2, 33, 6)


def test_the_split_never_scores_a_day_that_training_or_validation_saw() -> None:
    events = [sale(f"e{d}", d, units=1.0 + d % 3) for d in range(400)]
    panel = build_panel(events, [], 30)
    config = TrainConfig(test_days=100, val_days=50)
    pairs = split_pairs(panel, config)
    test_start, val_start = 400 - 100, 400 - 150
    assert (pairs["train"][:, 1] + 30 < val_start).all()
    assert (pairs["validation"][:, 1] + 30 >= val_start).all() and (pairs["validation"][:, 1] + 30 < test_start).all()
    assert (pairs["test"][:, 1] >= test_start - 1).all() and (pairs["test"][:, 1] + 30 <= 399).all()
    assert len(pairs["test"]) == 100 - 30 + 1
    with pytest.raises(ValueError, match="too short"):
        split_pairs(build_panel(events[:150], [], 30), config)


def test_a_users_sales_and_calendar_files_load_from_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "sales.jsonl"
    rows = [sale(f"e{i}", i).model_dump(mode="json") for i in range(6)]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows + [rows[0]]) + "\n{not json\n")
    csv_path = tmp_path / "sales.csv"
    csv_path.write_text(
        "event_id,ts,sku,market,units,unit_price,promo,channel\n"
        "c1,2026-03-02T10:00:00Z,bk-1,DE,2,9.5,true,web\n"
        "c2,1772445600000,bk-1,DE,1,9.5,,\n"
        "c3,2026-03-03T10:00:00Z,bk-1,DE,-1,9.5,false,web\n"
        "c1,2026-03-02T10:00:00Z,bk-1,DE,2,9.5,true,web\n"
        "c4,2026-03-04T10:00:00Z,bk-1,DE,3,9.5,false,\n"
    )
    cal_path = tmp_path / "calendar.csv"
    cal_path.write_text("event_id,ts,kind,market,sku,start,end,intensity\nh1,2026-01-01T00:00:00Z,holiday,DE,,2026-03-05,2026-03-06,0.8\n")
    history = load_demand_history(jsonl)
    assert len(history.sales) == 6 and history.reports[0].duplicates == 1 and history.reports[0].bad_rows == 1
    history = load_demand_history(csv_path, cal_path)
    assert [s.event_id for s in history.sales] == ["c1", "c2", "c4"] and history.sales[0].promo is True
    assert history.reports[0].bad_rows == 1 and "line 4" in str(history.reports[0].errors[0])
    assert history.calendar[0].kind == "holiday" and history.calendar[0].sku is None
    assert "1 loaded" in history.source()[str(cal_path)]
    (tmp_path / "junk.csv").write_text("event_id,ts,sku\nx,nope,\ny,nope,\n")
    with pytest.raises(DataError):
        load_demand_history(tmp_path / "junk.csv")


def test_a_quick_run_writes_a_loadable_version_with_the_baseline_report() -> None:
    registry = ModelRegistry(quick_model_dir())
    version = registry.current("demand")
    assert version is not None and version.version == "v1"
    m = version.manifest
    for method in ("model", "seasonal_naive", "moving_average"):
        for bucket in ("1-7", "8-30", "1-30", "total_7", "total_30"):
            scores = m["metrics"][method][bucket]
            assert scores["n"] > 0 and 0 <= scores["coverage"] <= 1 and scores["wape"] > 0
    assert set(m["target"]) >= {"wape_reduction_vs_seasonal_naive", "pinball_reduction_vs_seasonal_naive", "coverage", "met"}
    assert m["fallback"]["method"] in ("seasonal_naive", "moving_average")
    assert m["interval_calibration"]["daily_factor"] > 0 and len(m["interval_calibration"]["totals_factors"]) == 2
    report = (version.path / "report.md").read_text()
    for text in ("Seasonal naive", "Moving average", "days 1-7", "days 8-30", "7-day total", "30-day total", "Confidence"):
        assert text in report
    data = json.loads((version.path / "report.json").read_text())
    assert data["split"]["test_start"] > data["split"]["validation_start"] and len(data["per_horizon_day"]["model"]) == 30
    loaded = LoadedDemandModel.from_version(version)
    assert loaded.features.horizon_days == 30 and "DE" in loaded.features.markets


def test_the_rule_serves_when_it_beats_the_model_on_validation_and_the_model_otherwise() -> None:
    from stream_app.training.demand import choose_serving

    model = {"pinball": 0.20, "wape": 0.5, "coverage": 0.8}
    rule = {"pinball": 0.15, "wape": 0.4, "coverage": 0.79}
    chosen = choose_serving(model, rule, "moving_average")
    assert chosen["decides"] == "rules" and "moving average rule beat the model" in chosen["why"]
    assert chosen["validation"] == {"model": model, "rules": rule}
    assert choose_serving(rule, model, "seasonal_naive")["decides"] == "model"
    assert choose_serving({"pinball": None}, rule, "moving_average")["decides"] == "model"
    forced = choose_serving(model, rule, "moving_average", force_model=True)
    assert forced["decides"] == "model" and "by configuration" in forced["why"]
