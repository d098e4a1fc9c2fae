"""What a person watching `stream-app demo` sees, in the order things happened.

Alerts are shown with their explanation (demo_alerts.py says how each reads). A machine's
failure is shown only once the worker has answered every reading the machine sent before it
and every alert those readings raised is on screen, so "no alert before it" means the worker
had its chance, and no alert stamped earlier follows its failure. A status line every few
seconds counts the rest.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from stream_app.demo_alerts import MINOR, view
from stream_app.simulation.clock import event_time, is_paced

# An alert waits this long for its explanation, a failure this long for the worker's answers;
# then each is shown anyway (a worker that stopped answering must not freeze the screen).
EXPLANATION_WAIT_S = 10.0
FAILURE_WAIT_S = 20.0
MINOR_SHOWN = 3  # minor alerts listed one per line before they are only counted
DEAD_LETTERS_SHOWN = 10  # per error code
QUIET_STATUS_S = 60.0


def _stdout(text: str) -> None:
    print(text, flush=True)  # a person (or a log) sees each line as it happens


def _epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value) / 1000.0  # epoch milliseconds, as the contract allows
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _ts(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


@dataclass
class _Failure:
    outcome: dict[str, Any]
    ts: float
    after_reading_ts: float  # the last reading the machine sent before it
    since: float  # wall clock (monotonic) when it was sent


@dataclass
class _Machine:
    sent_ts: float = float("-inf")  # newest reading sent
    answered_ts: float = float("-inf")  # newest reading the worker answered
    answered: int = 0  # readings answered in this life
    answered_next: int = 0  # ... in the life after a failure still waiting to be shown
    alert_ts: list[float] = field(default_factory=list)  # alerts shown, by event time
    # Readings whose prediction said "alert" but whose alert is not on screen yet: event id -> ts.
    awaiting: dict[str, tuple[float, float]] = field(default_factory=dict)
    shown: dict[str, float] = field(default_factory=dict)  # event ids of alerts shown -> ts
    failures: list[_Failure] = field(default_factory=list)


class Screen:
    def __init__(self, out: Callable[[str], None] = _stdout, clock: Callable[[], float] = time.monotonic,
                 colour: Optional[bool] = None, deliberate: Optional[dict[str, str]] = None) -> None:
        """`deliberate`: message keys of bad input sent on purpose -> what to say of its dead letters."""
        self.out, self.clock = out, clock
        self.deliberate = deliberate or {}
        colour = sys.stdout.isatty() if colour is None else colour
        self.bold, self.red, self.yellow, self.dim, self.reset = (
            ("\033[1m", "\033[31m", "\033[33m", "\033[2m", "\033[0m") if colour else ("",) * 5)
        self.counts: Counter[str] = Counter()
        self.machines: dict[str, _Machine] = {}
        self.pending_alerts: dict[str, tuple[dict[str, Any], float]] = {}
        self.explanations: dict[str, tuple[dict[str, Any], float]] = {}
        self.answered_probes: set[str] = set()
        self.alerted_shipments: set[str] = set()
        self.confirmed_attacks: set[str] = set()
        self.dead_letter_codes: Counter[str] = Counter()
        # Demand series -> {closed day: who forecast it (model | rule)}, the last few days.
        self.forecasters: dict[str, dict[str, str]] = {}
        self._last_counts: Counter[str] = Counter()
        self._last_status = float("-inf")

    def _print(self, text: str) -> None:
        self.out(text)

    def _machine(self, machine_id: str) -> _Machine:
        return self.machines.setdefault(machine_id, _Machine())

    # --- what the simulators sent ----------------------------------------------------------
    def sent(self, topic: str, event: Any) -> None:
        """Every event the demo's producers sent, as they send it."""
        if is_paced(event):
            self.counts["sent"] += 1
        value = event.value
        if event.kind == "reading" and "machine_id" in value:
            self._machine(value["machine_id"]).sent_ts = event_time(event)
        elif event.kind == "outcome" and value.get("outcome") == "failure":
            m = self._machine(value["machine_id"])
            m.failures.append(_Failure(value, event_time(event), m.sent_ts, self.clock()))
        elif event.kind == "verdict" and value.get("verdict") == "confirmed":
            self.confirmed_attacks.add(value["shipment_id"])

    # --- what the worker answered -----------------------------------------------------------
    def prediction(self, prediction: dict[str, Any], probe_prefix: str = "") -> None:
        if probe_prefix and prediction["event_id"].startswith(probe_prefix):
            self.answered_probes.add(prediction["event_id"])
            return
        self.counts["maintenance scored"] += 1
        m = self._machine(prediction["machine_id"])
        ts = _epoch(prediction["event_ts"])
        m.answered_ts = max(m.answered_ts, ts)
        if m.failures and ts > m.failures[0].ts:
            m.answered_next += 1
        else:
            m.answered += 1
        if prediction.get("alert") and prediction["event_id"] not in m.shown:
            m.awaiting[prediction["event_id"]] = (ts, self.clock())
        self._release_failures(prediction["machine_id"], m)

    def forecast(self, forecast: dict[str, Any]) -> None:
        self.counts["demand forecasts"] += 1
        days = self.forecasters.setdefault(forecast["series_id"], {})
        days[str(forecast["day"])] = forecast["decision_source"]
        while len(days) > 3:
            del days[min(days)]

    def alert(self, alert: dict[str, Any]) -> None:
        found = self.explanations.pop(alert["alert_id"], None)
        if found is None:
            self.pending_alerts[alert["alert_id"]] = (alert, self.clock())
        else:
            self._show(alert, found[0])

    def explanation(self, explanation: dict[str, Any]) -> None:
        found = self.pending_alerts.pop(explanation["alert_id"], None)
        if found is None:
            self.explanations[explanation["alert_id"]] = (explanation, self.clock())
        else:
            self._show(found[0], explanation)

    def dead_letter(self, letter: dict[str, Any]) -> None:
        self.counts["dead letters"] += 1
        code = str(letter.get("error_code"))
        self.dead_letter_codes[code] += 1
        seen = self.dead_letter_codes[code]
        if seen <= DEAD_LETTERS_SHOWN:
            more = f" (further {code} dead letters are only counted)" if seen == DEAD_LETTERS_SHOWN else ""
            why = self.deliberate.get(str(letter.get("key")), "")
            if not why and letter.get("source_topic") == "sales-events" and '"units":-' in str(letter.get("payload")):
                why = "a return sent as negative units: the sales simulator's deliberate bad input"
            self._print(f"{self.dim}dead letter from {letter.get('source_topic')}: {code}: "
                        f"{str(letter.get('error_message'))[:100]}{f' ({why})' if why else ''}{more}{self.reset}")

    def note(self, text: str) -> None:
        self._print(f"{self.dim}{text}{self.reset}")

    # --- showing ----------------------------------------------------------------------------
    def _previous_forecaster(self, alert: dict[str, Any]) -> Optional[str]:
        """Who forecast a demand alert's series the day before the alert's day (event_ts is the
        end of the closed day)."""
        if not str(alert.get("kind", "")).startswith("demand."):
            return None
        try:
            day = datetime.fromtimestamp(_epoch(alert["event_ts"]) - 2 * 86400, timezone.utc).date().isoformat()
        except (KeyError, ValueError):
            return None
        return self.forecasters.get(alert.get("entity_id", ""), {}).get(day)

    def _show(self, alert: dict[str, Any], explanation: Optional[dict[str, Any]]) -> None:
        v = view(alert, explanation, self._previous_forecaster(alert))
        self.counts[f"{v.stream} alerts"] += 1
        if v.stream == "supply chain":
            self.alerted_shipments.add(alert["entity_id"])
        where = f"{v.stream} {self.bold}{alert['entity_id']}{self.reset} at {_ts(alert['event_ts'])}"
        if v.tier == MINOR:
            self.counts[f"{v.stream} minor"] += 1
            if self.counts[f"{v.stream} minor"] <= MINOR_SHOWN:
                more = "; further ones are only counted" if self.counts[f"{v.stream} minor"] == MINOR_SHOWN else ""
                self._print(f"{self.dim}minor {where}: {v.headline}{more}{self.reset}")
        else:
            colour = self.red if alert["severity"] == "critical" else self.yellow
            lines = [f"\n{colour}{self.bold}{alert['severity'].upper()}{self.reset} {where}: {v.headline}"]
            lines += [f"  {self.dim if i else ''}{text}{self.reset if i else ''}" for i, text in enumerate(v.details)]
            self._print("\n".join(lines))
        if v.stream == "maintenance":
            m = self._machine(alert["entity_id"])
            ts = _epoch(alert["event_ts"])
            m.alert_ts.append(ts)
            for event_id in alert.get("event_ids", []):
                m.awaiting.pop(event_id, None)
                m.shown[event_id] = ts
            self._release_failures(alert["entity_id"], m)

    def _release_failures(self, machine_id: str, m: _Machine, force: bool = False) -> None:
        """Show the machine's failures whose readings the worker has answered, oldest first."""
        while m.failures:
            f = m.failures[0]
            answered = m.answered_ts >= f.after_reading_ts
            unshown = any(ts <= f.ts for ts, _ in m.awaiting.values())
            timed_out = self.clock() - f.since >= FAILURE_WAIT_S
            if not (timed_out or force or (answered and not unshown)):
                return
            m.failures.pop(0)
            self._show_failure(machine_id, m, f, answered and not unshown)

    def _show_failure(self, machine_id: str, m: _Machine, f: _Failure, complete: bool) -> None:
        self.counts["failures"] += 1
        before = [t for t in m.alert_ts if t <= f.ts]
        m.alert_ts = [t for t in m.alert_ts if t > f.ts]
        m.shown = {e: t for e, t in m.shown.items() if t > f.ts}
        m.awaiting = {e: a for e, a in m.awaiting.items() if a[0] > f.ts}
        scored = f"the worker scored {m.answered} of its readings"
        if not complete:
            scored += ", its last readings not yet answered"
        if before:
            self.counts["failures alerted"] += 1
            first, last = (f.ts - min(before)) / 3600, (f.ts - max(before)) / 3600
            note = f"alerted {first:.1f} h before" + (f" (last alert {last:.1f} h before)" if len(before) > 1 else "")
        else:
            note = "no alert before it"
        m.answered, m.answered_next = m.answered_next, 0
        self._print(f"\n{self.bold}FAILURE{self.reset} {machine_id} ({f.outcome.get('failure_mode')}) at "
                    f"{_ts(f.outcome['ts'])}: {note}; {scored}")

    def tick(self, force: bool = False) -> None:
        """Show what has waited long enough (or everything, with `force`: the demo is ending)."""
        now = self.clock()
        for alert_id, (alert, since) in list(self.pending_alerts.items()):
            if force or now - since >= EXPLANATION_WAIT_S:
                del self.pending_alerts[alert_id]
                self._show(alert, None)
        self.explanations = {k: v for k, v in self.explanations.items() if now - v[1] < 6 * EXPLANATION_WAIT_S}
        for machine_id, m in self.machines.items():
            m.awaiting = {e: a for e, a in m.awaiting.items() if now - a[1] < FAILURE_WAIT_S}
            self._release_failures(machine_id, m, force=force)

    def status(self, elapsed: float, streams: tuple[str, ...] = ("maintenance", "supply-chain", "demand")) -> None:
        """One line of counts; when nothing changed (streams at the wall clock's pace), once a minute."""
        c = self.counts
        if c == self._last_counts and elapsed - self._last_status < QUIET_STATUS_S:
            return
        self._last_counts, self._last_status = Counter(c), elapsed

        def alerts(stream: str) -> str:
            minor = c[f"{stream} minor"]
            return f"{c[f'{stream} alerts'] - minor} alerts" + (f" (+{minor} minor)" if minor else "")

        parts = [f"[{elapsed:5.0f}s] sent {c['sent']}"]
        if "maintenance" in streams:
            parts.append(f"maintenance {c['maintenance scored']} scored, {alerts('maintenance')}, "
                         f"{c['failures']} failures ({c['failures alerted']} alerted first)")
        if "supply-chain" in streams:
            confirmed = len(self.confirmed_attacks)
            caught = len(self.confirmed_attacks & self.alerted_shipments)
            parts.append(f"supply chain {c['supply chain scored']} scored, {alerts('supply chain')}, "
                         f"{confirmed} attacks confirmed ({caught} alerted)")
        if "demand" in streams:
            parts.append(f"demand {c['demand forecasts']} forecasts, {alerts('demand')}")
        parts.append(f"dead letters {c['dead letters']}")
        self._print(f"{self.dim}{' | '.join(parts)}{self.reset}")
