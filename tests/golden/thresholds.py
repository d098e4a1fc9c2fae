"""Decisions that sit on their threshold: float noise (a batch of another size through the same
float32 model) may flip them, so a flip there is not a change of behaviour.

An input event is on its threshold when a number that decides it is within the float tolerance
of the threshold it is compared with: the maintenance failure probability against the served
alert threshold (model decisions) and the critical level; the supply-chain evidence against the
ensemble threshold (model decisions; the published evidence is rounded to 4 decimals), the
confidence against SUPPLY_CHAIN__MIN_CONFIDENCE and the score against the critical level. The
rules' decisions compare input values with limits and cannot flip with noise. Demand decisions
are not covered: a flip there fails the test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from stream_app.scoring.operating_point import OperatingPoint
from stream_app.settings import Settings
from tests.golden.harness import Outputs

EVIDENCE_DECIMALS = 4  # stream_app/scoring/supply_chain.py rounds detector scores so


def _near(value: float, threshold: float, rel: float, abs_: float) -> bool:
    return math.isclose(value, threshold, rel_tol=rel, abs_tol=abs_)


def on_threshold(golden: Outputs, models: Path, rel: float, abs_: float) -> set[str]:
    """The event ids whose decision sits within (rel, abs_) of its threshold in the golden run."""
    settings = Settings()
    manifest = json.loads((models / "maintenance" / "v1" / "manifest.json").read_text())
    alert_at = OperatingPoint.from_manifest(manifest["decision"]).threshold_for(settings.maintenance)
    critical_p = settings.maintenance.critical_probability
    ensemble = json.loads((models / "supply-chain" / "v1" / "manifest.json").read_text())["ensemble"]
    rounding = 0.5 * 10.0 ** -EVIDENCE_DECIMALS
    sc = settings.supply_chain

    def maintenance(p: dict[str, Any]) -> bool:
        return p["decision_source"] == "model" and (
            _near(p["failure_probability"], alert_at, rel, abs_) or _near(p["failure_probability"], critical_p, rel, abs_))

    def supply_chain(s: dict[str, Any]) -> bool:
        evidence = s["detector_scores"].get("evidence")
        # (the hand-over to rules compares the model's coverage: a product of fixed factors, no rounding)
        return (_near(s["score"], sc.critical_score, rel, abs_)
                or (evidence is not None and _near(evidence, ensemble["threshold"], rel, abs_ + rounding)))

    return ({p["event_id"] for p in golden["maintenance-predictions"] if maintenance(p)}
            | {s["event_id"] for s in golden["supply-chain-scores"] if supply_chain(s)})


def events_of(message: dict[str, Any], alerts: dict[str, dict[str, Any]]) -> set[str]:
    """The input events a message answers (an explanation: those of its alert)."""
    if "event_ids" in message:
        return set(message["event_ids"])
    if "event_id" in message:
        return {message["event_id"]}
    alert = alerts.get(message.get("alert_id", ""))
    return set(alert["event_ids"]) if alert else set()
