"""The Prometheus alerting rules (deploy/prometheus/alerts.yml): valid for promtool, built only
on metrics the worker exports, each actionable (for, severity, summary, description), and
their promtool unit tests (deploy/prometheus/alerts_test.yml) pass."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from stream_app import metrics

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
# Series Prometheus makes itself for every scrape target.
PROMETHEUS_OWN = {"up"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum"), "gauge": ("",), "info": ("_info",)}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "atan2"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (.ci/run installs Debian's prometheus package, which ships it)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


def rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def exported_names() -> set[str]:
    """Every series name the worker's metrics (and the client's default collectors) export."""
    families = [f for obj in vars(metrics).values() if isinstance(obj, MetricWrapperBase) for f in obj.describe()]
    families += list(REGISTRY.collect())
    return {f.name + suffix for f in families for suffix in SUFFIXES.get(f.type, ("",))}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers left once strings, label matchers,
    ranges, grouping clauses and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]?\b", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end():].lstrip()
        if not rest.startswith("(") and match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def test_metric_name_extraction() -> None:
    expr = ('sum by (stream) (rate(stream_app_events_total{outcome="dead_letter", x=~"a|b"}[5m])) / on (stream) '
            'group_left histogram_quantile(0.95, rate(stream_app_inference_seconds_bucket[1m])) > 0.05 and up == 0')
    assert metric_names(expr) == {"stream_app_events_total", "stream_app_inference_seconds_bucket", "up"}


def test_rules_pass_promtool_check() -> None:
    out = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_use_only_exported_metrics() -> None:
    known = exported_names() | PROMETHEUS_OWN
    assert {"stream_app_events_total", "stream_app_inference_seconds_bucket", "stream_app_consumer_lag"} <= known
    used: set[str] = set()
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        unknown = names - known
        assert not unknown, f"{rule['alert']} uses metrics stream_app/metrics.py does not define: {sorted(unknown)}"
        used |= names
    # The alerts the operators rely on are all there.
    for name in ("stream_app_consumer_lag", "stream_app_messages_total", "stream_app_events_total", "stream_app_drift_events_total",
                 "stream_app_scorer_fallbacks_total", "stream_app_decisions_total", "stream_app_outcomes_total"):
        assert name in used, name


def test_every_rule_is_actionable() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)), names
    for rule in rules():
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{rule['alert']}: needs a `for:`"
        assert rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), rule["alert"]
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and len(annotations.get("description", "")) > 40, rule["alert"]


def test_prometheus_config_loads_the_rules() -> None:
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    assert "alerts.yml" in config.get("rule_files", [])
    assert config["scrape_configs"], "scrape config kept"


def test_unit_tests_cover_firing_and_quiet_cases() -> None:
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    cases = [case for test in doc["tests"] for case in test.get("alert_rule_test", [])]
    for alert in ("StreamAppDeadLetterRateHigh", "StreamAppScorerFellBackToRules", "StreamAppRulesOnlyDecisions"):
        fired = [c for c in cases if c["alertname"] == alert and c.get("exp_alerts")]
        quiet = [c for c in cases if c["alertname"] == alert and not c.get("exp_alerts")]
        assert fired and quiet, f"{alert}: alerts_test.yml must check it fires and stays quiet"


def test_rules_unit_tests_pass() -> None:
    out = subprocess.run([promtool(), "test", "rules", str(ALERTS_TEST)], capture_output=True, text=True, timeout=120, cwd=PROM_DIR)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


# -- the Grafana dashboard's variables ---------------------------------------------------------


def test_dashboard_filters_by_stream_and_instance_and_its_queries_parse(tmp_path: Path) -> None:
    import json
    import sys

    sys.path.insert(0, str(ROOT / "deploy" / "grafana"))
    from build_dashboard import NO_STREAM, build, expressions

    dashboard = build()
    # The provisioned JSON is the generated one (`python deploy/grafana/build_dashboard.py`).
    assert json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "stream-app.json").read_text()) == dashboard
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"stream", "instance"}
    targets = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert all('instance=~"$instance"' in e for e in targets)
    # `$stream` filters every selector of a metric that has a stream label, and only those.
    selectors = [m.group(0) for e in targets for m in re.finditer(r"\bstream_app_\w+\{[^}]*\}", e)]
    with_stream = [sel for sel in selectors if sel.split("{")[0] not in NO_STREAM]
    assert len(with_stream) > len(selectors) / 2
    assert all('stream=~"$stream"' in sel for sel in with_stream)
    assert not any('stream=~"$stream"' in sel for sel in selectors if sel not in with_stream)
    resolved = [expr for _, expr in expressions(dashboard)]
    assert not any("$" in expr for expr in resolved)
    # Every query, as Grafana sends it with "All" selected, is valid PromQL.
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(resolved)]}]}))
    out = subprocess.run([promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
