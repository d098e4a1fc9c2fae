"""The demand scorer without a broker: forecasts at each day's close, the rule fallback and its
reasons, rejections, alerts with explanations, live accuracy, model faults, and state rebuilt by
replay being the same state."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Iterable

import numpy as np
import pytest
import torch

from schemas.outputs import deterministic_id
from schemas.sales import CalendarEntry, SalesEvent
from stream_app.registry import ModelRegistry
from stream_app.scoring.demand import OVERSTOCK, SHIFT, STOCKOUT, TOO_OLD, UNKNOWN_MARKET, DemandScorer, EventResult
from stream_app.settings import DemandSettings
from tests.unit.demand_fixtures import DAY0, quick_model_dir, sale


@pytest.fixture(autouse=True)
def one_thread() -> Iterable[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _days(levels: dict[int, float], sku: str = "bk-1", market: str = "DE", start: int = 0) -> list[SalesEvent]:
    """One event per unit-ish: `levels[day]` units on each day (2 units per event)."""
    out = []
    for day, units in sorted(levels.items()):
        n = int(units // 2)
        out += [sale(f"{sku}-{market}-{day}-{k}", day, 1 + 20 * k / max(n, 1), 2.0, sku, market) for k in range(n)]
    return out


def _run(scorer: DemandScorer, events: list[SalesEvent], partition: int = 0, batch: int = 50) -> list[EventResult]:
    results = []
    for i in range(0, len(events), batch):
        results += scorer.score_batch(events[i : i + batch], [partition] * len(events[i : i + batch]))
    return results


def _forecasts(results: list[EventResult]) -> list[Any]:
    return [f for r in results for f in r.forecasts]


def _rules(**settings: Any) -> DemandScorer:
    return DemandScorer(DemandSettings(**settings), None, "model unavailable: none in the test")


def test_a_forecast_per_series_and_closed_day_from_the_rules_without_a_model() -> None:
    events = _days({d: 10 for d in range(10)}) + _days({d: 4 for d in range(3, 10)}, sku="bk-2")
    events.sort(key=lambda e: e.ts)
    forecasts = [f.forecast for f in _forecasts(_run(_rules(), events))]
    got = sorted((f.series_id, (f.day - DAY0.date()).days) for f in forecasts)
    assert got == sorted([("bk-1/DE", d) for d in range(9)] + [("bk-2/DE", d) for d in range(3, 9)])
    f = forecasts[-1]
    assert f.decision_source == "rule" and "model unavailable" in f.reason and f.model_version is None
    assert f.horizon[0].day == f.day + timedelta(days=1) and len(f.horizon) == 30
    assert f.forecast_id == deterministic_id("demand-forecast", f.sku, f.market, f.day.isoformat(), None)
    assert all(x.events_counted == 5 and x.units == 10.0 for x in forecasts if x.series_id == "bk-1/DE")
    assert abs(f.horizon[0].p50 - 4.0) < 2.5 and f.total_7d.p10 <= f.total_7d.p50 <= f.total_7d.p90


def test_unknown_markets_are_rejected_once_markets_are_known() -> None:
    open_scorer = _rules()
    assert _run(open_scorer, [sale("x", 0, market="XX")])[0].outcome == "counted"  # nothing to check against
    scorer = _rules(markets=["DE"])
    result = _run(scorer, [sale("y", 0, market="FR")])[0]
    assert result.outcome == UNKNOWN_MARKET and result.rejection and result.rejection.code == UNKNOWN_MARKET
    assert "DEMAND__MARKETS" in result.rejection.message
    scorer.update_calendar([CalendarEntry(event_id="c", ts=DAY0, kind="holiday", market="FR", start=date(2026, 3, 2), end=date(2026, 3, 2))])
    assert _run(scorer, [sale("z", 0, market="FR")])[0].outcome == "counted"
    assert _run(_rules(markets=["DE"], accept_unknown_markets=True), [sale("w", 0, market="FR")])[0].outcome == "counted"


def test_duplicates_count_once_and_too_old_sales_are_rejected_with_their_code() -> None:
    scorer = _rules(correction_days=2)
    results = _run(scorer, [sale("a", 0, units=3), sale("a", 0, units=3), sale("b", 9), sale("old", 2), sale("fix", 7)])
    assert [r.outcome for r in results] == ["counted", "duplicate", "counted", "too_old", "corrected"]
    assert results[3].rejection is not None and results[3].rejection.code == TOO_OLD
    day0 = next(f.forecast for f in results[2].forecasts if f.forecast.day == DAY0.date())
    assert day0.units == 3.0 and day0.events_counted == 1


def test_a_spike_beyond_the_interval_alerts_once_with_an_explanation_of_the_rule() -> None:
    levels = {d: 10 for d in range(25)}
    levels[20] = 80
    levels[22] = 80  # within the cooldown: no second alert
    events = _days(levels)
    results = _run(_rules(), events)
    alerts = [(f.forecast.day, a) for f in _forecasts(results) for a in f.alerts if a.kind == STOCKOUT]
    spike_day = DAY0.date() + timedelta(days=20)
    day_alerts = [a for d, a in alerts if " sold on " in a.reason]
    assert [d for d, a in alerts if " sold on " in a.reason] == [spike_day]
    alert = day_alerts[0]
    assert alert.decision_source == "rule" and alert.severity == "critical" and alert.entity_id == "bk-1/DE"
    assert alert.event_ids and all(e.startswith("bk-1-DE-20-") for e in alert.event_ids)
    explanation = next(e for f in _forecasts(results) for e in f.explanations if e.alert_id == alert.alert_id)
    assert explanation.rules[0].fired and explanation.rules[0].value == 80.0
    assert "moving average" in explanation.text


def test_sales_far_below_the_7_day_interval_raise_an_overstock_risk() -> None:
    """A slide from 30 to 18 units a day stays inside each day's interval (the moving average
    follows it), but the week's total falls well below what was forecast a week before."""
    levels = {d: 30 for d in range(30)} | {d: 18 for d in range(30, 40)}
    results = _run(_rules(), _days(levels))
    kinds = [(a.kind, a.reason) for f in _forecasts(results) for a in f.alerts]
    assert [k for k, r in kinds] == [OVERSTOCK] and "in the 7 days to" in kinds[0][1], kinds


def test_a_sharp_change_of_the_forecast_raises_a_forecast_shift() -> None:
    scorer = _rules(shift_threshold=0.5)
    scorer.fallback_method = "seasonal_naive"  # repeats last week: one huge day moves the next 29 days' total
    levels = {d: 10 for d in range(30)}
    levels[28] = 300
    shifts = [a for f in _forecasts(_run(scorer, _days(levels))) for a in f.alerts if a.kind == SHIFT]
    assert shifts and shifts[0].event_ts.date() == DAY0.date() + timedelta(days=29)


def test_live_accuracy_checks_each_earlier_forecast_of_a_closed_day() -> None:
    results = _run(_rules(), _days({d: 10 for d in range(12)}))
    acc = [a for r in results for a in r.accuracy]
    checked = sum(a.forecasts for a in acc)
    # day d is checked against forecasts made 1..d days before it, for days 1..10 (day 11 is open)
    assert checked[0] == 10 and checked[4] == 6 and checked[10] == 0
    units = sum(a.units for a in acc)
    assert units[0] == 100.0 and sum(a.covered for a in acc)[0] <= 10


def test_state_rebuilt_by_replay_gives_the_same_forecasts() -> None:
    levels = {d: 6 + (d % 7) * 2 for d in range(40)}
    events = _days(levels) + [sale("late", 12, hour=12.0, units=4.0)] + _days({d: 4 for d in range(40)}, sku="bk-2")
    events.sort(key=lambda e: e.ts)
    events.insert(300, sale("late-fix", 20, units=8.0))  # a correction, replayed too
    live = _rules()
    expected = {f.forecast.forecast_id: f.forecast for f in _forecasts(_run(live, events))}
    restarted = _rules()
    restarted.replay(events[:250])
    again = {f.forecast.forecast_id: f.forecast for f in _forecasts(_run(restarted, events[250:]))}
    assert again and set(again) <= set(expected)
    for fid, f in again.items():
        ref = expected[fid]
        assert (f.units, f.events_counted, f.history_days, f.late_events) == (ref.units, ref.events_counted, ref.history_days, ref.late_events)
        assert [h.p50 for h in f.horizon] == [h.p50 for h in ref.horizon]
    assert restarted.drop_clock(0) and not restarted.clocks


def test_the_model_decides_after_two_weeks_and_explains_its_alerts_from_attention() -> None:
    scorer = DemandScorer.load(ModelRegistry(quick_model_dir()), DemandSettings())
    assert scorer.model_version == "v1"
    scorer.update_calendar([CalendarEntry(event_id="c1", ts=DAY0, kind="campaign", market="DE", sku=None,
                                          start=date(2026, 4, 10), end=date(2026, 4, 20), intensity=1.5)])
    levels = {d: 8 + 4 * (d % 7 >= 5) for d in range(40)}
    levels[33] = 120
    results = _run(scorer, _days(levels))
    forecasts = [f.forecast for f in _forecasts(results)]
    assert {f.decision_source for f in forecasts if (f.day - DAY0.date()).days >= 13} == {"model"}
    assert {f.decision_source for f in forecasts if (f.day - DAY0.date()).days < 13} == {"rule"}
    assert "model decided" in forecasts[-1].reason and 0 < forecasts[-1].confidence <= 1
    alert = next(a for f in _forecasts(results) for a in f.alerts if a.kind == STOCKOUT and " sold on " in a.reason)
    assert alert.decision_source == "model" and alert.model_version == "v1"
    explanation = next(e for f in _forecasts(results) for e in f.explanations if e.alert_id == alert.alert_id)
    assert explanation.method == "tft_attention_and_variable_selection"
    assert len(explanation.time_steps) == 5 and sum(s.contribution for s in explanation.time_steps) <= 1.0
    assert any(c.name == "calendar.campaign" for c in explanation.features)
    assert explanation.counterfactuals and "campaign" in explanation.counterfactuals[0].text
    assert len(explanation.inputs_sha256) == 64


def test_a_model_failing_at_inference_hands_the_stream_to_the_rules_and_keeps_its_state() -> None:
    scorer = DemandScorer.load(ModelRegistry(quick_model_dir()), DemandSettings(min_history_days=0))
    events = _days({d: 10 for d in range(6)})
    first = _forecasts(_run(scorer, events[:20]))
    assert first and first[0].forecast.decision_source == "model"

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("weights corrupted")

    scorer._model.model.forward = broken  # type: ignore[union-attr, method-assign]
    later = [f.forecast for f in _forecasts(_run(scorer, events[20:]))]
    assert later and all(f.decision_source == "rule" and "failed at inference" in f.reason for f in later)
    assert scorer.model_failed and all(f.units == 10.0 for f in later)


def test_an_unusable_model_version_leaves_the_rules_with_the_reason(tmp_path: Any) -> None:
    registry = ModelRegistry(tmp_path)
    with registry.new_version("demand", {"features": {"markets": []}}):
        pass
    scorer = DemandScorer.load(registry, DemandSettings())
    assert scorer.model_version is None and "cannot be used" in scorer.unavailable_reason
    assert np.isfinite(scorer.residuals.daily).all()


def test_a_day_whose_forecasting_raises_closes_without_forecasts_and_the_stream_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = _rules()
    calls = {"n": 0}
    real = scorer._forecast

    def flaky(part: Any, closed: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyError("a bug")
        return real(part, closed)

    monkeypatch.setattr(scorer, "_forecast", flaky)
    results = _run(scorer, _days({d: 4 for d in range(5)}))
    assert [d for r in results for d in r.failed_days] == [DAY0.date() + timedelta(days=1)]
    assert sorted(f.forecast.day for f in _forecasts(results)) == [DAY0.date() + timedelta(days=d) for d in (0, 2, 3)]


def test_a_version_whose_rule_won_on_validation_forecasts_with_the_rule_and_says_why(tmp_path: Any) -> None:
    """The manifest's serving choice is what the scorer does: no model forecast, the rule's
    reason names the validation figures."""
    import shutil

    source = ModelRegistry(quick_model_dir()).current("demand")
    assert source is not None
    registry = ModelRegistry(tmp_path)
    manifest = {**source.manifest, "serving": {
        "decides": "rules", "why": "the moving average rule beat the model on validation: pinball 0.1 vs 0.2",
        "rule_method": "moving_average", "validation": {}}}
    with registry.new_version("demand", manifest) as staging:
        shutil.copy(source.path / "model.pt", staging / "model.pt")
    scorer = DemandScorer.load(registry, DemandSettings(min_history_days=0))
    assert scorer.model_version == "v1"
    forecasts = [f.forecast for f in _forecasts(_run(scorer, _days({d: 10 for d in range(20)})))]
    assert forecasts and {f.decision_source for f in forecasts} == {"rule"}
    assert all("beat the model on validation" in f.reason and "was not in the model" not in f.reason for f in forecasts)

    served = DemandScorer.load(ModelRegistry(quick_model_dir()), DemandSettings(min_history_days=0))
    assert {f.forecast.decision_source for f in _forecasts(_run(served, _days({d: 10 for d in range(20)})))} == {"model"}
