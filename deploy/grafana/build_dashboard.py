"""Writes deploy/grafana/dashboards/stream-app.json from the panel list below
(`python deploy/grafana/build_dashboard.py`). The integration test runs every expression here
against a real Prometheus scraping a real worker."""

from __future__ import annotations

import json
from pathlib import Path

W = "[1m]"
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
    ("Model confidence (median and p10)", "percentunit", [
        ("median {{stream}}", "histogram_quantile(0.5, sum by (le, stream) (rate(stream_app_prediction_confidence_bucket[5m])))"),
        ("p10 {{stream}}", "histogram_quantile(0.1, sum by (le, stream) (rate(stream_app_prediction_confidence_bucket[5m])))"),
    ]),
    ("Model version in use", "none", [("{{stream}} {{model}} {{version}}", "max by (stream, model, version) (stream_app_model_info)")]),
    ("Drift detections (15 min)", "none", [("{{stream}} {{feature}} {{detector}}", "sum by (stream, feature, detector) (increase(stream_app_drift_events_total[15m]))")]),
    ("Monitored values, recent mean", "none", [("{{stream}} {{feature}}", "stream_app_drift_window_mean")]),
    ("Live accuracy: failures alerted in time (1 h)", "none", [("{{stream}} {{result}}", "sum by (stream, result) (increase(stream_app_outcomes_total[1h]))")]),
    ("Alert lead time before failure, median", "h", [("{{stream}}", "histogram_quantile(0.5, sum by (le, stream) (rate(stream_app_alert_lead_hours_bucket[1h])))")]),
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


def build() -> dict:
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(65 + j), "expr": expr, "legendFormat": legend} for j, (legend, expr) in enumerate(targets)],
        })
    return {
        "uid": "stream-app", "title": "stream-app: scoring, alerts, drift", "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "tags": ["stream-app"], "panels": panels,
    }


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


if __name__ == "__main__":
    out = Path(__file__).parent / "dashboards" / "stream-app.json"
    out.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {out}")
