"""Metrics and drift against real servers: a worker process scores readings from a real
producer; Debian's Prometheus scrapes the worker; every PromQL expression of the Grafana
dashboard must return data; a stationary stream raises no drift and an injected one does."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from prometheus_client import REGISTRY

import stream_app.metrics  # noqa: F401  (the worker's metric definitions, for REGISTRY)

from tests.conftest import free_port, wait_for
from tests.integration.kafka_clients import OutputReader, produce

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "grafana"))
from build_dashboard import build, expressions  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMETHEUS = shutil.which("prometheus")
ALERT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
# Panels whose series appear only after an event this test does not cause, with the event.
# Their queries must still run, and every metric they name must be one the worker defines.
EVENT_PANELS = {
    "Model switches: promotions and rollbacks (1 h)": "a promotion or rollback",
    "Demand: share of actuals inside P10-P90 by horizon (target 0.8, 6 h)": "a closed sales day with earlier forecasts",
    "Demand: WAPE of P50 by horizon (6 h)": "a closed sales day with earlier forecasts",
}
HEALTHY = {"vibration_rms": (2.0, 0.3), "vibration_hf": (0.3, 0.05), "bearing_temp": (60.0, 3.0), "motor_temp": (70.0, 3.0),
           "oil_pressure": (3.5, 0.2), "motor_current": (40.0, 2.0), "rpm": (1480.0, 20.0), "ambient_temp": (22.0, 1.0)}
MACHINES = 40
START_MS = 1_767_225_600_000  # 2026-01-01
STEP_MS = 1_800_000


def readings(phase: str, rounds: int, first_round: int, vibration_factor: float = 1.0, seed: int = 0) -> list[dict[str, Any]]:
    """Healthy machines with i.i.d. sensors: a stationary stream by construction."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(first_round, first_round + rounds):
        for m in range(MACHINES):
            sensors = {k: round(float(rng.normal(mu, sd)), 4) for k, (mu, sd) in HEALTHY.items()}
            sensors["vibration_rms"] = round(sensors["vibration_rms"] * vibration_factor, 4)
            out.append({"event_id": f"{phase}-{m}-{r}", "machine_id": f"m-{m:03d}", "ts": START_MS + r * STEP_MS,
                        "machine_type": "pump", "operating_mode": "normal", "sensors": sensors})
    return out


def send(bootstrap: str, events: list[dict[str, Any]]) -> None:
    produce(bootstrap, "sensor-readings", ((e["machine_id"].encode(), json.dumps(e).encode()) for e in events))


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    if PROMETHEUS is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (.ci/run installs Debian's package)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{ALERT_RULES}']\n"
            f"scrape_configs:\n  - job_name: stream-app-workers\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=open(tmp_path / "prometheus.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        ))
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def query(base: str, expr: str) -> list[Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def query_api(base: str, endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/api/v1/{endpoint}", timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def target_up(base: str) -> bool:
    try:
        return any(s["value"][1] == "1" for s in query(base, 'up{job="stream-app-workers"}'))
    except OSError:
        return False


def test_dashboard_queries_return_data_and_drift_is_detected_only_when_injected(
    broker, start_worker, trained_model_dir: Path, prometheus
) -> None:
    metrics_port = free_port()
    worker = start_worker(
        trained_model_dir, METRICS_PORT=str(metrics_port),
        DRIFT__REFERENCE_SIZE="300", DRIFT__SNAPSHOT_INTERVAL_S="1",
    )
    prom = prometheus(f"127.0.0.1:{metrics_port}")
    reader = OutputReader(broker.bootstrap, ["maintenance-predictions", "drift-events", "alerts"], 4)
    try:
        # A stationary stream: enough for every partition's reference and well beyond.
        stationary = readings("calm", rounds=100, first_round=0)
        send(broker.bootstrap, stationary)
        n = len(stationary)
        assert reader.until(lambda r: len(r.messages["maintenance-predictions"]) >= n, 120, worker.alive), worker.log()[-2000:]
        reader.poll(2.0)
        assert reader.messages["drift-events"] == [], "a stationary stream raised drift"

        # The same machines, their vibration sensors now reading double (e.g. a recalibration).
        shifted = readings("shift", rounds=60, first_round=100, vibration_factor=2.0, seed=1)
        send(broker.bootstrap, shifted)
        # One machine over a physical limit (an alert), then, once alerted, its failure (live
        # accuracy), and one malformed message (a dead letter).
        hot = {"event_id": "hot-1", "machine_id": "m-hot", "ts": START_MS + 200 * STEP_MS, "sensors": {"vibration_rms": 12.0}}
        send(broker.bootstrap, [hot])
        produce(broker.bootstrap, "sensor-readings", [(b"x", b"{broken")])
        total = n + len(shifted) + 1
        done = reader.until(
            lambda r: len(r.messages["maintenance-predictions"]) >= total and r.messages["drift-events"]
            and any(a["entity_id"] == "m-hot" for a in r.messages["alerts"]), 120, worker.alive,
        )
        assert done, worker.log()[-2000:]
        produce(broker.bootstrap, "maintenance-outcomes", [(b"m-hot", json.dumps(
            {"event_id": "hot-fail", "machine_id": "m-hot", "ts": START_MS + 201 * STEP_MS, "outcome": "failure"}).encode())])
    finally:
        reader.close()

    drifted = {d["feature"] for d in reader.messages["drift-events"]}
    assert "vibration_rms" in drifted, reader.messages["drift-events"]
    vib = [d for d in reader.messages["drift-events"] if d["feature"] == "vibration_rms"]
    assert all(d["mean_after"] > d["reference_mean"] and d["effect"] >= 1.0 for d in vib)

    assert wait_for(lambda: target_up(prom), 30), "Prometheus never scraped the worker"
    time.sleep(4.0)  # a few scrapes after the last events, so rates have two points
    assert query(prom, 'sum(stream_app_drift_events_total{feature="vibration_rms"})')[0]["value"][1] != "0"
    alerted = 'stream_app_outcomes_total{result="alerted"} == 1'
    assert wait_for(lambda: bool(query(prom, alerted)), 30), "the failure was not joined to its alert"

    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}{path}", timeout=5) as resp:
            assert (resp.status, resp.read()) == (200, b"ok\n"), path

    panels = expressions(build())
    assert EVENT_PANELS.keys() <= {title for title, _ in panels}
    empty = [(title, expr) for title, expr in panels if not query(prom, expr) and title not in EVENT_PANELS]
    assert not empty, f"dashboard panels without data: {empty}"
    defined = {name for metric in REGISTRY.collect() for name in (metric.name, metric.name + "_total")}
    named = {name for _, expr in panels for name in re.findall(r"\bstream_app_[a-z_]+?(?=_bucket\b|_sum\b|_count\b|\{|\b)", expr)}
    assert named <= defined, f"dashboard metrics the worker does not define: {sorted(named - defined)}"

    # The alerting rules, loaded by the same Prometheus, evaluate against the worker's series.
    groups = query_api(prom, "rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == ALERT_RULES.read_text().count("- alert:"), groups
    assert wait_for(lambda: all(r["health"] == "ok" for g in query_api(prom, "rules")["groups"] for r in g["rules"]), 15), \
        [(r["name"], r["health"], r.get("lastError")) for r in rules]
    firing = {a["labels"]["alertname"] for a in query_api(prom, "alerts")["alerts"]}
    assert "StreamAppWorkerDown" not in firing and "StreamAppScorerFellBackToRules" not in firing, firing
