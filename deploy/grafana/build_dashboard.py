"""Writes deploy/grafana/dashboards/stream-app.json from the panel list below
(`python deploy/grafana/build_dashboard.py`). The integration test runs every expression here
against a real Prometheus scraping a real worker.

Two dashboard variables filter every panel: `$stream` (maintenance, supply_chain, demand) and
`$instance` (the worker); `build()` adds their label matchers to each metric selector of the
panel list, and `expressions()` gives the queries with "All" (`.*`) in their place."""

from __future__ import annotations

import json
import re
from pathlib import Path

W = "[1m]"
# Demand forecasts are checked once a day closes, per horizon 1..30 days: three horizon groups.
DEMAND_HORIZONS = (("1-7", "[1-7]"), ("8-14", "[89]|1[0-4]"), ("15-30", "1[5-9]|2[0-9]|30"))
# (title, unit, [(legend, expr)])
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Events per second by outcome", "ops", [("{{stream}} {{outcome}}", f"sum by (stream, outcome) (rate(stream_app_events_total{W}))")]),
    ("Kafka messages per second", "ops", [("{{stream}}", f"sum by (stream) (rate(stream_app_messages_total{W}))")]),
    ("End-to-end latency (produce to output acknowledged)", "s", [
        (f"p{q} {{{{stream}}}}", f"histogram_quantile(0.{q}, sum by (le, stream) (rate(stream_app_event_to_output_seconds_bucket{W})))")
        for q in ("50", "95", "99")
    ]),
    ("Inference time per micro-batch, p95", "s", [("{{stream}}", f"histogram_quantile(0.95, sum by (le, stream) (rate(stream_app_inference_seconds_bucket{W})))")]),
    ("Mean micro-batch size", "none", [("{{stream}}", f"sum by (stream) (rate(stream_app_batch_events_sum{W})) / sum by (stream) (rate(stream_app_batch_events_count{W}))")]),
    ("Dead letters by reason (5 min)", "none", [("{{stream}} {{code}}", "sum by (stream, code) (increase(stream_app_dead_letters_total[5m]))")]),
    ("Alerts by kind, severity and decision source (5 min)", "none", [("{{kind}} {{severity}} {{decision_source}}", "sum by (kind, severity, decision_source) (increase(stream_app_alerts_total[5m]))")]),
    ("Share of predictions decided by rules", "percentunit", [("{{stream}}", f'sum by (stream) (rate(stream_app_decisions_total{{decision_source="rule"}}{W})) / sum by (stream) (rate(stream_app_decisions_total{W}))')]),
    ("Rule fallbacks: model errors answered by rules (1 h)", "none", [("{{stream}}", "sum by (stream) (increase(stream_app_scorer_fallbacks_total[1h]))")]),
    ("Model switches: promotions and rollbacks (1 h)", "none", [("{{stream}} {{version}}", "sum by (stream, version) (increase(stream_app_model_switches_total[1h]))")]),
    ("Model confidence (median and p10)", "percentunit", [
        ("median {{stream}}", "histogram_quantile(0.5, sum by (le, stream) (rate(stream_app_prediction_confidence_bucket[5m])))"),
        ("p10 {{stream}}", "histogram_quantile(0.1, sum by (le, stream) (rate(stream_app_prediction_confidence_bucket[5m])))"),
    ]),
    ("Model version in use", "none", [("{{stream}} {{model}} {{version}}", "max by (stream, model, version) (stream_app_model_info)")]),
    ("Drift detections (15 min)", "none", [("{{stream}} {{feature}} {{detector}}", "sum by (stream, feature, detector) (increase(stream_app_drift_events_total[15m]))")]),
    ("Monitored values, recent mean", "none", [("{{stream}} {{feature}}", "stream_app_drift_window_mean")]),
    ("Live accuracy: failures alerted in time (1 h)", "none", [("{{stream}} {{result}}", "sum by (stream, result) (increase(stream_app_outcomes_total[1h]))")]),
    ("Alert lead time before failure, median", "h", [("{{stream}}", "histogram_quantile(0.5, sum by (le, stream) (rate(stream_app_alert_lead_hours_bucket[1h])))")]),
    ("Demand: share of actuals inside P10-P90 by horizon (target 0.8, 6 h)", "percentunit", [
        (f"{name} days", f'sum(rate(stream_app_demand_forecasts_covered_total{{horizon_days=~"{days}"}}[6h])) / sum(rate(stream_app_demand_forecasts_checked_total{{horizon_days=~"{days}"}}[6h]))')
        for name, days in DEMAND_HORIZONS
    ]),
    ("Demand: WAPE of P50 by horizon (6 h)", "percentunit", [
        (f"{name} days", f'sum(rate(stream_app_demand_forecast_abs_error_units_total{{horizon_days=~"{days}"}}[6h])) / sum(rate(stream_app_demand_realized_units_total{{horizon_days=~"{days}"}}[6h]))')
        for name, days in DEMAND_HORIZONS
    ]),
    ("Consumer lag", "none", [("{{topic}}", "sum by (topic) (stream_app_consumer_lag)")]),
    ("State hand-over (15 min): states restored, snapshot records written", "none", [
        ("restored {{stream}}", "sum by (stream) (increase(stream_app_state_restored_total[15m]))"),
        ("written {{stream}}", "sum by (stream) (increase(stream_app_state_snapshot_records_total[15m]))"),
    ]),
    ("Skipped messages holding commits back (read again at the next rebalance)", "none", [("{{instance}}", "stream_app_skipped_uncommitted_messages")]),
    ("Share of entities the candidate version serves (A/B)", "percentunit", [("{{stream}}", "max by (stream) (stream_app_candidate_share)")]),
    ("Worker CPU (cores)", "none", [("{{instance}}", f'rate(process_cpu_seconds_total{{job="stream-app-workers"}}{W})')]),
    ("Worker memory (RSS)", "bytes", [("{{instance}}", 'process_resident_memory_bytes{job="stream-app-workers"}')]),
]


# Metrics without a `stream` label: filtered by instance only.
NO_STREAM = {"stream_app_alerts_total", "stream_app_consumer_lag", "stream_app_skipped_uncommitted_messages",
             "stream_app_demand_forecasts_covered_total", "stream_app_demand_forecasts_checked_total",
             "stream_app_demand_forecast_abs_error_units_total", "stream_app_demand_realized_units_total"}
SELECTOR = re.compile(r"\b((?:stream_app|process)_[A-Za-z0-9_]+)(\{[^}]*\})?")
VARIABLES = {
    "stream": "label_values(stream_app_messages_total, stream)",
    "instance": 'label_values(up{job="stream-app-workers"}, instance)',
}


def filtered(expr: str) -> str:
    """`expr` with the `$instance` (and, where the metric has it, `$stream`) matchers added."""
    def add(match: re.Match[str]) -> str:
        name, labels = match.group(1), (match.group(2) or "{}")[1:-1]
        matchers = [m for m in (labels.strip(),) if m]
        if name not in NO_STREAM and not name.startswith("process_"):
            matchers.append('stream=~"$stream"')
        matchers.append('instance=~"$instance"')
        return name + "{" + ", ".join(matchers) + "}"
    return SELECTOR.sub(add, expr)


def variable(name: str, query: str) -> dict:
    return {
        "name": name, "label": name, "type": "query", "query": {"query": query, "refId": name},
        "definition": query, "datasource": {"type": "prometheus", "uid": "prometheus"},
        "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def build() -> dict:
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(65 + j), "expr": filtered(expr), "legendFormat": legend} for j, (legend, expr) in enumerate(targets)],
        })
    return {
        "uid": "stream-app", "title": "stream-app: scoring, alerts, drift", "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "tags": ["stream-app"], "panels": panels,
        "templating": {"list": [variable(name, query) for name, query in VARIABLES.items()]},
    }


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) with every variable at "All", as Grafana sends them."""
    def resolve(expr: str) -> str:
        for name in VARIABLES:
            expr = expr.replace(f"${name}", ".*")
        return expr
    return [(p["title"], resolve(t["expr"])) for p in dashboard["panels"] for t in p["targets"]]


if __name__ == "__main__":
    out = Path(__file__).parent / "dashboards" / "stream-app.json"
    out.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {out}")
