"""How an alert reads on the demo's screen: what decided and by how much, first.

The headline names the model decision or the rule that fired with its margin. A probability is
shown only where it is the basis of the decision (a model's), never as the headline of a rule
alert; a rule alert says instead why the model did not decide. Three kinds of alert are `minor`:
the screen lists the first few and counts the rest (every alert is on the alerts topic):
  - supply-chain shipments the model flags as unusual whose calibrated P(attack) is below 1/2;
  - maintenance limit alerts where only trained limits fired, by less than TRAINED_EDGE (a
    trained limit is the edge of the healthy range in the training data, not a physical limit:
    a reading just past it is within the sensors' noise);
  - demand alerts judged against a fallback-rule forecast (a series too young for the model),
    and forecast shifts where the model took over from the fallback rules (a change of
    forecaster, not of demand).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

MAJOR, MINOR = "major", "minor"
# From this calibrated P(attack) on, a flagged shipment is shown as a likely attack.
LIKELY_ATTACK = 0.5
TRAINED_EDGE = 0.02

STREAM_OF_KIND = {"maintenance": "maintenance", "supply_chain": "supply chain", "demand": "demand"}


@dataclass(frozen=True)
class AlertView:
    stream: str  # maintenance | supply chain | demand | the kind's prefix
    headline: str
    details: list[str] = field(default_factory=list)
    tier: str = MAJOR


def view(alert: dict[str, Any], explanation: Optional[dict[str, Any]], previous_source: Optional[str] = None) -> AlertView:
    """The screen's reading of one alert (explanation: the one under its alert_id, if it came;
    previous_source: for a demand alert, who made the series' forecast the day before)."""
    explanation = explanation or {}
    prefix = str(alert.get("kind", "")).split(".")[0]
    stream = STREAM_OF_KIND.get(prefix, prefix or "alert")
    try:
        if prefix == "maintenance":
            return _maintenance(alert, explanation)
        if prefix == "supply_chain":
            return _supply_chain(alert, explanation)
        if prefix == "demand":
            return _demand(alert, previous_source)
    except (KeyError, TypeError, ValueError):
        pass  # a layout this screen does not know: show the alert's own words
    return AlertView(stream, f"{alert.get('decision_source', '?')}: {alert.get('explanation', '')}")


# --- maintenance -------------------------------------------------------------------------------
def _maintenance(alert: dict[str, Any], explanation: dict[str, Any]) -> AlertView:
    version = f"{alert['model_name']} {alert.get('model_version') or '-'}"
    if alert["decision_source"] == "model":
        decision = _after(alert["reason"], "model decided: ")
        details = [alert["explanation"]]
        drivers = explanation.get("features") or []
        if drivers:
            details.append("drivers: " + ", ".join(
                f"{d['name']} {d['contribution']:+.2f}" + (f" (now {d['value']:.3g})" if d.get("value") is not None else "")
                for d in drivers[:3]
            ))
        return AlertView("maintenance", f"model: failure risk {decision} ({version})", details)
    fired = sorted((_limit(check) for check in explanation.get("rules", []) if check.get("fired")), key=lambda f: -f[0])
    headline = "limit " + "; ".join(text for _, _, text in fired) if fired else alert["explanation"]
    edge = bool(fired) and all(origin == "trained" and past < TRAINED_EDGE for past, origin, _ in fired)
    return AlertView("maintenance", headline, [f"the limit decided, not the model: {_why_rules(alert['reason'])}"],
                     MINOR if edge else MAJOR)


def _limit(check: dict[str, Any]) -> tuple[float, str, str]:
    """(share past the limit, origin, 'motor_temp 110.2 > 110, 0.2 % past its physical limit')
    from a fired rule check named like "motor_temp high limit (physical)" or "motor_temp rate
    of change per hour (trained)"."""
    rule = check["rule"]
    words = rule.split()
    sensor = words[0]
    origin = words[-1].strip("()") if words[-1].startswith("(") else ""
    value, limit = float(check["value"]), float(check["limit"])
    of = f"its {origin + ' ' if origin else ''}"
    if "rate of change" in rule:
        past = (value - limit) / (abs(limit) or 1.0)
        return past, origin, f"{sensor} changed {value:.4g}/h > {limit:.4g}/h, {_percent(past)} past {of}rate-of-change limit"
    high = words[1] == "high"
    past = (value - limit if high else limit - value) / (abs(limit) or 1.0)
    return past, origin, f"{sensor} {value:.4g} {'>' if high else '<'} {limit:.4g}, {_percent(past)} past {of}limit"


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %" if abs(share) < 0.1 else f"{100 * share:.0f} %"


def _why_rules(reason: str) -> str:
    """The reason's "rules decided (WHY); limit breached: ..." -> WHY, in words."""
    why = reason
    if reason.startswith("rules decided ("):
        end = max(reason.rfind("); limit breached"), reason.rfind("); no limit"))
        why = reason[len("rules decided ("): end] if end > 0 else reason
    m = re.fullmatch(r"(confidence|competence) ([\d.]+) < ([\d.]+) \((.*)\)", why)
    if m:
        return f"the model's {m[1]} {m[2]} is below {m[3]} ({m[4]})"
    return why


# --- supply chain ------------------------------------------------------------------------------
_EVIDENCE = re.compile(r"evidence ([\d.]+) >= threshold ([\d.]+) \(flags ([\d.]+%) of normal flow\)")


def _supply_chain(alert: dict[str, Any], explanation: dict[str, Any]) -> AlertView:
    if alert["decision_source"] != "model":
        fired = [c["rule"] for c in explanation.get("rules", []) if c.get("fired")]
        m = re.match(r"rules decided \((confidence [\d.]+ < [\d.]+)", alert["reason"])
        why = f"the model was unsure ({m[1]})" if m else _after(alert["reason"], "rules decided ").split(";")[0].strip("()")
        return AlertView("supply chain", f"rule {', '.join(fired) or '?'}: {alert['explanation']}",
                         [f"a deterministic check decided, not the model: {why}"])
    p = float(alert["score"])
    m = _EVIDENCE.search(alert["reason"])
    evidence = f"evidence {m[1]} >= {m[2]} (a level {m[3]} of normal shipments reach)" if m else "flagged by the model"
    strongest = _strongest_detector(explanation)
    if p >= LIKELY_ATTACK:
        headline = f"likely attack, P(attack) {p:.2f}: {evidence}{strongest}"
        return AlertView("supply chain", headline, [alert["explanation"]])
    headline = f"unusual shipment, probably not an attack (P(attack) {p:.2f}): {evidence}{strongest}"
    return AlertView("supply chain", headline, [alert["explanation"]], MINOR)


def _strongest_detector(explanation: dict[str, Any]) -> str:
    """'; strongest: gnn, as unusual as 1 in 630 normal shipments' (surprise = -log10 share)."""
    detectors = [f for f in explanation.get("features", []) if str(f.get("name", "")).startswith("detector:")]
    if not detectors:
        return ""
    top = max(detectors, key=lambda f: f["contribution"])
    surprise = float(top["contribution"])
    rarity = f", as unusual as 1 in {10 ** surprise:,.0f} normal shipments" if 0 < surprise < 9 else ""
    return f"; strongest detector {top['name'].split(':', 1)[1]}{rarity}"


# --- demand --------------------------------------------------------------------------------------
def _demand(alert: dict[str, Any], previous_source: Optional[str]) -> AlertView:
    label = alert["kind"].split(".", 1)[1].replace("_", " ")
    reason = alert["reason"]
    check = reason.split(": ", 1)[1] if ": " in reason else reason
    conf = float(alert["confidence"])
    if alert["decision_source"] != "model":
        return AlertView("demand", f"{label} against a fallback-rule forecast (confidence {conf:.2f}): {check}", tier=MINOR)
    if alert["kind"] == "demand.forecast_shift" and previous_source == "rule":
        return AlertView("demand", f"{label} as the model takes over from the fallback rules: {check}", tier=MINOR)
    return AlertView("demand", f"{label}: {check}", [f"judged against the model's forecast (its confidence {conf:.2f})"]
                     if math.isfinite(conf) else [])


def _after(text: str, prefix: str) -> str:
    return text[len(prefix):] if text.startswith(prefix) else text
