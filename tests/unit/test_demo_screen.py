"""The demo's screen: failures after the worker's answers, and alerts that say why they matter."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from schemas import SensorReading
from stream_app.demo_alerts import MAJOR, MINOR, view
from stream_app.demo_screen import FAILURE_WAIT_S, MINOR_SHOWN, Screen
from stream_app.registry import ModelRegistry
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.settings import MaintenanceSettings
from stream_app.simulation.maintenance import SimEvent

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _iso(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _screen() -> tuple[Screen, list[str], _Clock]:
    lines: list[str] = []
    clock = _Clock()
    return Screen(out=lines.append, clock=clock, colour=False), lines, clock


def _reading(machine: str, hours: float) -> SimEvent:
    return SimEvent("reading", machine, {"event_id": f"{machine}-{hours}", "machine_id": machine, "ts": _iso(hours)})


def _prediction(machine: str, hours: float, alert: bool = False) -> dict[str, Any]:
    return {"event_id": f"{machine}-{hours}", "machine_id": machine, "event_ts": _iso(hours), "alert": alert}


def _model_alert(machine: str, hours: float) -> dict[str, Any]:
    return {"alert_id": f"a-{machine}-{hours}", "kind": "maintenance.failure_risk", "entity_id": machine,
            "event_ids": [f"{machine}-{hours}"], "severity": "critical", "score": 0.97, "confidence": 0.92,
            "decision_source": "model", "reason": "model decided: p=0.97 >= 0.50 at confidence 0.92 >= 0.85",
            "model_name": "maintenance", "model_version": "v1", "event_ts": _iso(hours),
            "explanation": "Failure within 24 h likely (p=0.97, confidence 0.92): oil_pressure falling"}


def _failure(machine: str, hours: float) -> SimEvent:
    return SimEvent("outcome", machine, {"event_id": f"{machine}-failure", "machine_id": machine, "ts": _iso(hours),
                                         "outcome": "failure", "failure_mode": "lubrication_loss"})


def test_a_failure_waits_for_the_workers_answers_and_the_alerts_they_raised() -> None:
    screen, lines, clock = _screen()
    for h in (0.0, 0.5, 1.0):
        screen.sent("sensor-readings", _reading("m-1", h))
    screen.sent("maintenance-outcomes", _failure("m-1", 1.2))
    screen.tick()
    assert not any("FAILURE" in line for line in lines)  # the worker has not answered yet

    screen.prediction(_prediction("m-1", 0.0))
    screen.prediction(_prediction("m-1", 0.5))
    screen.prediction(_prediction("m-1", 1.0, alert=True))  # its alert is still on the way
    assert not any("FAILURE" in line for line in lines)
    alert = _model_alert("m-1", 1.0)
    screen.alert(alert)
    screen.explanation({"alert_id": alert["alert_id"], "features": []})
    shown = "\n".join(lines)
    assert shown.index("CRITICAL maintenance m-1") < shown.index("FAILURE m-1")
    assert "alerted 0.2 h before" in shown and "the worker scored 3 of its readings" in shown
    screen.status(10.0, ("maintenance",))
    assert "maintenance 3 scored, 1 alerts, 1 failures (1 alerted first)" in lines[-1]


def test_a_failure_without_an_alert_says_so_and_how_much_the_worker_had_seen() -> None:
    screen, lines, clock = _screen()
    for h in (0.0, 0.5):
        screen.sent("sensor-readings", _reading("m-2", h))
        screen.prediction(_prediction("m-2", h))
    screen.sent("maintenance-outcomes", _failure("m-2", 0.7))
    screen.tick()
    assert lines[-1].strip().startswith("FAILURE m-2") and "no alert before it; the worker scored 2" in lines[-1]


def test_a_silent_worker_cannot_hold_a_failure_back_for_ever() -> None:
    screen, lines, clock = _screen()
    screen.sent("sensor-readings", _reading("m-3", 0.0))
    screen.sent("maintenance-outcomes", _failure("m-3", 0.2))
    clock.now = FAILURE_WAIT_S - 1
    screen.tick()
    assert not lines
    clock.now = FAILURE_WAIT_S
    screen.tick()
    assert "its last readings not yet answered" in lines[-1]


def test_rule_alerts_lead_with_the_limit_and_its_margin_not_a_borrowed_confidence() -> None:
    alert = {"kind": "maintenance.failure_risk", "entity_id": "m-0023", "severity": "warning", "score": 0.0018,
             "confidence": 1.0, "decision_source": "rule", "model_name": "maintenance", "model_version": "v1",
             "reason": "rules decided (confidence 0.07 < 0.85 (machine warming up: 4 of 12 readings)); "
                       "limit breached: motor_temp 110.2 > 110 (physical high limit, +0%)",
             "explanation": "Limit exceeded: motor_temp 110.2 > 110 (physical high limit, +0%); decided by rules (...)"}
    explanation = {"rules": [{"rule": "motor_temp high limit (physical)", "value": 110.2, "limit": 110.0, "fired": True},
                             {"rule": "oil_pressure low limit (physical)", "value": 3.1, "limit": 1.2, "fired": False}]}
    v = view(alert, explanation)
    assert v.headline == "limit motor_temp 110.2 > 110, 0.2 % past its physical limit"
    assert v.tier == MAJOR  # a physical limit, however narrowly: shown
    text = " ".join([v.headline, *v.details])
    assert "confidence 1.00" not in text and "score" not in text
    assert "the model's confidence 0.07 is below 0.85 (machine warming up: 4 of 12 readings)" in text

    edge = {"rules": [{"rule": "vibration_hf high limit (trained)", "value": 1.215, "limit": 1.207, "fired": True}]}
    assert view(alert, edge).tier == MINOR  # just past the edge of the training data's healthy range
    past = {"rules": [{"rule": "vibration_hf high limit (trained)", "value": 1.28, "limit": 1.207, "fired": True}]}
    assert view(alert, past).tier == MAJOR and view(alert, past).headline.endswith("6.0 % past its trained limit")
    rate = {"rules": [{"rule": "motor_temp rate of change per hour (trained)", "value": 12.0, "limit": 8.0, "fired": True}]}
    assert view(alert, rate).headline == "limit motor_temp changed 12/h > 8/h, 50 % past its trained rate-of-change limit"


def test_a_real_rule_alert_reads_with_its_limit(tmp_path: Path) -> None:
    """The rules-only scorer's own alert and explanation, through the screen."""
    scorer = MaintenanceScorer.load(ModelRegistry(tmp_path), MaintenanceSettings())
    reading = SensorReading.model_validate({"event_id": "m-9-1", "machine_id": "m-9", "ts": _iso(0),
                                            "sensors": {"vibration_rms": 9.0, "motor_temp": 60.0}})
    scored = scorer.score_batch([reading])[0]
    assert scored.alert is not None and scored.explanation is not None
    alert = json.loads(scored.alert.model_dump_json())
    explanation = json.loads(scored.explanation.model_dump_json())
    v = view(alert, explanation)
    assert v.headline.startswith("limit vibration_rms 9 > 7.1, 27 % past its")
    assert v.details and "model unavailable" in v.details[0]
    assert np.isfinite(alert["score"])


def _supply_chain_alert(p: float, source: str = "model") -> dict[str, Any]:
    reason = ("model decided: evidence 3.40 >= threshold 3.03 (flags 1.0% of normal flow), "
              f"P(attack) {p:.2f} at confidence 0.91") if source == "model" else (
              "rules decided (confidence 0.41 < 0.60: decisiveness 0.41; evidence 2.10 < threshold 3.03 "
              "(flags 1.0% of normal flow), P(attack) 0.01); lot L1 was never delivered to whl-1")
    return {"alert_id": f"sc-{p}-{source}", "kind": "supply_chain.anomaly", "entity_id": f"shp-{p}", "severity": "warning",
            "score": p if source == "model" else 1.0, "confidence": 0.91 if source == "model" else 1.0,
            "decision_source": source, "reason": reason, "model_name": "supply-chain", "model_version": "v1",
            "event_ts": _iso(0), "explanation": f"whl-1 -> phm-2, 66 x ndc-1 lot L1: P(attack) {p:.2f}, mostly gnn."}


def test_supply_chain_alerts_show_likely_attacks_and_only_count_unlikely_ones() -> None:
    explanation = {"features": [{"name": "detector:gnn", "contribution": 2.8}, {"name": "detector:vae", "contribution": 0.3}]}
    likely = view(_supply_chain_alert(0.98), explanation)
    assert likely.tier == MAJOR and likely.headline.startswith("likely attack, P(attack) 0.98")
    assert "evidence 3.40 >= 3.03 (a level 1.0% of normal shipments reach)" in likely.headline
    assert "strongest detector gnn, as unusual as 1 in 631 normal shipments" in likely.headline
    unlikely = view(_supply_chain_alert(0.01), explanation)
    assert unlikely.tier == MINOR and "probably not an attack (P(attack) 0.01)" in unlikely.headline

    rule = view(_supply_chain_alert(0.01, "rule"), {"rules": [{"rule": "lot_never_received", "value": 1, "limit": 1, "fired": True}]})
    assert rule.tier == MAJOR and rule.headline.startswith("rule lot_never_received:")
    assert "P(attack) 0.01" not in rule.details[0] and "confidence 0.41 < 0.60" in rule.details[0]

    screen, lines, _ = _screen()
    for i in range(MINOR_SHOWN + 5):
        alert = _supply_chain_alert(0.01) | {"alert_id": f"x{i}", "entity_id": f"s{i}"}
        screen.alert(alert)
        screen.explanation({"alert_id": f"x{i}", **explanation})
    assert len(lines) == MINOR_SHOWN and all(line.startswith("minor supply chain") for line in lines)
    screen.sent("supply-chain-verdicts", SimEvent("verdict", "s1", {"shipment_id": "s1", "verdict": "confirmed", "ts": _iso(1)}))  # type: ignore[arg-type]
    screen.status(5.0, ("supply-chain",))
    assert "supply chain 0 scored, 0 alerts (+8 minor), 1 attacks confirmed (1 alerted)" in lines[-1]


def test_demand_alerts_name_the_check_and_the_forecast_they_judged_against() -> None:
    alert = {"kind": "demand.stockout_risk", "entity_id": "bk-1/US", "severity": "warning", "score": 1.3,
             "confidence": 0.43, "decision_source": "model", "event_ts": _iso(24),
             "reason": "model forecast: 25 units sold on 2026-03-01, above P90 of the forecast made 2026-02-28 "
                       "(P10-P90 1.0-9.0), 2.0 interval widths out",
             "explanation": "stockout risk for bk-1/US: ..."}
    v = view(alert, None)
    assert v.tier == MAJOR and v.headline.startswith("stockout risk: 25 units sold on 2026-03-01, above P90")
    assert v.details == ["judged against the model's forecast (its confidence 0.43)"]
    young = view(alert | {"decision_source": "rule", "confidence": 0.03,
                          "reason": alert["reason"].replace("model forecast", "rule forecast")}, None)
    assert young.tier == MINOR
    assert young.headline.startswith("stockout risk against a fallback-rule forecast (confidence 0.03): 25 units")


def test_dead_letters_sent_on_purpose_say_so_and_a_flood_is_counted_not_printed() -> None:
    screen, lines, _ = _screen()
    screen.deliberate = {"m-x": "malformed on purpose by the demo"}
    screen.dead_letter({"source_topic": "sensor-readings", "key": "m-x", "error_code": "not_json", "error_message": "x"})
    assert lines[-1].endswith("(malformed on purpose by the demo)")
    for _ in range(50):
        screen.dead_letter({"source_topic": "sales-events", "key": "bk-1/US", "error_code": "timestamp_in_future",
                            "error_message": "ts is more than 7 days ahead", "payload": "{}"})
    assert len(lines) == 1 + 10 and "only counted" in lines[-1]
    screen.status(1.0, ())
    assert "dead letters 51" in lines[-1]


def test_unknown_alert_layouts_still_show_their_own_words() -> None:
    v = view({"kind": "maintenance.failure_risk", "decision_source": "rule", "explanation": "odd"}, None)
    assert "odd" in v.headline


def test_a_forecast_shift_where_the_model_took_over_from_the_fallback_is_minor() -> None:
    screen, lines, _ = _screen()
    shift = {"alert_id": "d1", "kind": "demand.forecast_shift", "entity_id": "bk-7/PL", "severity": "warning",
             "score": 0.53, "confidence": 0.12, "decision_source": "model", "event_ts": "2023-12-22T00:00:00Z",
             "reason": "model forecast: the P50 total of 2023-12-22 - 2024-01-19 moved from 148.4 to 70.0 units (-53 %) "
                       "since the previous day's forecast", "explanation": "forecast shift for bk-7/PL: ..."}
    screen.forecast({"series_id": "bk-7/PL", "day": "2023-12-20", "decision_source": "rule"})
    screen.forecast({"series_id": "bk-7/PL", "day": "2023-12-21", "decision_source": "model"})
    screen.alert(shift)
    screen.explanation({"alert_id": "d1"})
    assert lines[-1].startswith("minor demand bk-7/PL") and "as the model takes over from the fallback rules" in lines[-1]

    screen.forecast({"series_id": "bk-7/PL", "day": "2023-12-22", "decision_source": "model"})
    later = shift | {"alert_id": "d2", "event_ts": "2023-12-23T00:00:00Z"}  # model on both days: a real shift
    screen.alert(later)
    screen.explanation({"alert_id": "d2"})
    assert "WARNING demand bk-7/PL" in lines[-1]
    assert view(later, None).tier == MAJOR


def test_the_status_line_keeps_quiet_while_nothing_happens() -> None:
    screen, lines, _ = _screen()
    screen.status(5.0, ())
    screen.status(10.0, ())
    assert len(lines) == 1  # nothing changed
    screen.sent("sensor-readings", _reading("m-5", 0.0))
    screen.status(15.0, ())
    screen.status(80.0, ())
    assert len(lines) == 3 and lines[-1].startswith("[   80s] sent 1")
