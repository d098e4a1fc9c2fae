"""Every Prometheus metric of the worker, defined in one place. Names follow Prometheus
conventions (`_total` counters, base units: seconds). Label values are bounded sets (stream
names, error codes, severities), never entity ids."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

PREFIX = "stream_app"

EVENTS = Counter(f"{PREFIX}_events_total", "Input events by stream and outcome (scored, dead_letter)", ["stream", "outcome"])
MESSAGES = Counter(f"{PREFIX}_messages_total", "Kafka messages consumed by stream (one may hold many events)", ["stream"])
DEAD_LETTERS = Counter(f"{PREFIX}_dead_letters_total", "Dead letters by stream and error code", ["stream", "code"])
ALERTS = Counter(f"{PREFIX}_alerts_total", "Alerts by kind, severity and decision source", ["kind", "severity", "decision_source"])
DECISIONS = Counter(f"{PREFIX}_decisions_total", "Predictions by stream and decision source", ["stream", "decision_source"])
# Inference runs on micro-batches: from a single event (0.2 ms) to 500 (tens of ms).
INFERENCE_SECONDS = Histogram(
    f"{PREFIX}_inference_seconds", "Scorer time per micro-batch", ["stream"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
BATCH_SIZE = Histogram(
    f"{PREFIX}_batch_events", "Events per scored micro-batch", ["stream"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
)
# End-to-end: event time to publication; the simulator and gateways are near real time, so
# buckets span milliseconds to a minute.
LATENCY_SECONDS = Histogram(
    f"{PREFIX}_event_to_output_seconds", "Event timestamp to output acknowledged by the broker", ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
CONFIDENCE = Histogram(
    f"{PREFIX}_prediction_confidence", "Confidence of predictions", ["stream"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0),
)
DRIFT_EVENTS = Counter(f"{PREFIX}_drift_events_total", "Drifts detected by stream, feature and detector", ["stream", "feature", "detector"])
DRIFT_LAST = Gauge(f"{PREFIX}_drift_last_detected_timestamp_seconds", "When a drift was last detected", ["stream", "feature"])
DRIFT_WINDOW_MEAN = Gauge(f"{PREFIX}_drift_window_mean", "Recent mean of a monitored value (ADWIN window, mean over partitions)", ["stream", "feature"])
# Live accuracy: a failure is "alerted" when an alert came within the model's horizon before it.
OUTCOMES = Counter(f"{PREFIX}_outcomes_total", "Ground-truth outcomes joined to earlier alerts", ["stream", "result"])
ALERT_LEAD_HOURS = Histogram(
    f"{PREFIX}_alert_lead_hours", "Hours from the last alert to the failure it announced", ["stream"],
    buckets=(0.5, 1, 2, 4, 8, 12, 24, 48, 96),
)
CONSUMER_LAG = Gauge(f"{PREFIX}_consumer_lag", "Messages behind the partition's high-water mark", ["topic", "partition"])
SCORER_FALLBACKS = Counter(f"{PREFIX}_scorer_fallbacks_total", "Times a stream's model failed at inference and its rules took over", ["stream"])
# Per-entity state handed between workers (agents/maintenance_state.py).
STATE_SNAPSHOT_RECORDS = Counter(f"{PREFIX}_state_snapshot_records_total", "Entity states written to the state topic", ["stream"])
STATE_RESTORED = Counter(f"{PREFIX}_state_restored_total", "Entity states loaded from the state topic on taking a partition over", ["stream"])
STATE_REPLAYED = Counter(f"{PREFIX}_state_replayed_events_total", "Events replayed (not published) to bring restored state up to date", ["stream"])
STATE_REPLAY_INCOMPLETE = Counter(f"{PREFIX}_state_replay_incomplete_total", "Hand-over replays that stalled before reaching the partition's first live offset", ["stream"])
SKIPPED_UNCOMMITTED = Gauge(f"{PREFIX}_skipped_uncommitted_messages", "Messages Faust skipped around a rebalance that this worker holds its commits below until they are read again", [])
# The state budget (stream_app/state_budget.py): entities kept and those forgotten.
STATE_EVICTIONS = Counter(f"{PREFIX}_state_evictions_total", "Entities whose state was forgotten, by stream and reason (budget: over the stream's limit, least recently seen first; idle: no event for the idle time)", ["stream", "reason"])
STATE_ENTITIES = Gauge(f"{PREFIX}_state_entities", "Entities a stream keeps state for on this worker (machines, graph nodes, series)", ["stream"])
STATE_REFUSED = Counter(f"{PREFIX}_state_refused_total", "State records read from a topic and refused: not written by the product (forged or damaged), by stream and kind (drift, machine_state, marker)", ["stream", "kind"])
STATE_SKIPPED = Counter(f"{PREFIX}_state_skipped_events_total", "Redelivered events skipped: a restored state already included them", ["stream"])
MODEL_SWITCHES = Counter(f"{PREFIX}_model_switches_total", "Times a worker switched the version it serves (promotion, rollback)", ["stream", "version"])
CANDIDATE_SHARE = Gauge(f"{PREFIX}_candidate_share", "Share of entities the candidate version serves (A/B; 0: shadow only)", ["stream"])
MODEL_INFO = Gauge(f"{PREFIX}_model_info", "1 for the model version a stream serves", ["stream", "model", "version"])
# Demand: what happened to each sales event, and the live accuracy of published forecasts. At
# each day's close every earlier forecast of that day (made 1..30 days before) is checked
# against the realised units; label horizon_days is "1".."30". Grafana: coverage =
# rate(covered) / rate(checked), WAPE = rate(abs_error_units) / rate(realized_units).
DEMAND_SALES = Counter(
    f"{PREFIX}_demand_sales_events_total",
    "Sales events by outcome: counted, corrected (after its day closed), duplicate, too_old, unknown_market", ["outcome"],
)
DEMAND_CHECKED = Counter(f"{PREFIX}_demand_forecasts_checked_total", "Earlier daily forecasts checked against realised units", ["horizon_days"])
DEMAND_COVERED = Counter(f"{PREFIX}_demand_forecasts_covered_total", "Checked forecasts whose P10-P90 held the realised units", ["horizon_days"])
DEMAND_ABS_ERROR = Counter(f"{PREFIX}_demand_forecast_abs_error_units_total", "Sum of |realised - P50| over checked forecasts, units", ["horizon_days"])
DEMAND_PINBALL = Counter(f"{PREFIX}_demand_forecast_pinball_loss_units_total", "Sum of the P10, P50 and P90 pinball losses over checked forecasts, units", ["horizon_days"])
DEMAND_REALIZED = Counter(f"{PREFIX}_demand_realized_units_total", "Realised units of checked forecasts", ["horizon_days"])
DEMAND_COVERAGE = Gauge(f"{PREFIX}_demand_interval_coverage_ratio", "Share of checked forecasts inside P10-P90 since the worker started (target 0.8)", ["horizon_bucket"])
DEMAND_WAPE = Gauge(f"{PREFIX}_demand_wape_ratio", "sum |realised - P50| / sum realised of checked forecasts since the worker started", ["horizon_bucket"])
DEMAND_SERIES = Gauge(f"{PREFIX}_demand_series", "SKU x market series this worker forecasts")
DEMAND_FAILED_CLOSES = Counter(f"{PREFIX}_demand_failed_closes_total", "Partition days closed without forecasts because forecasting raised (see the log)")



class LagSeries:
    """The worker's `consumer_lag` series, one per partition it holds. A partition it no longer
    holds loses its series at once: a series left behind would keep its last value, and a
    `sum by (topic)` across workers would count that partition twice after a rebalance."""

    def __init__(self, gauge: Gauge = CONSUMER_LAG) -> None:
        self.gauge = gauge
        self.shown: set[tuple[str, int]] = set()

    def update(self, lags: dict[tuple[str, int], int], assigned: set[tuple[str, int]]) -> None:
        """Sets `lags` (topic, partition) -> messages; drops every series outside `assigned`."""
        for (topic, partition), lag in lags.items():
            if (topic, partition) in assigned:
                self.gauge.labels(topic, str(partition)).set(lag)
                self.shown.add((topic, partition))
        self.drop(self.shown - assigned)

    def drop(self, partitions: set[tuple[str, int]]) -> None:
        for topic, partition in partitions & self.shown:
            self.gauge.remove(topic, str(partition))
        self.shown -= partitions


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """`histogram.observe(v)` for each value, in one pass: a batch's bucket counts, then one
    increment per bucket touched (a reading's observe is ~2 us of the hot path). On a client
    whose histogram children are laid out otherwise, observes them one by one."""
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    if not len(values):
        return
    array = np.asarray(values, dtype=np.float64)
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype=np.float64), array, side="left"),
                         minlength=len(bounds))
    total.inc(float(array.sum()))
    for i in np.flatnonzero(counts[: len(bounds)]):
        buckets[i].inc(int(counts[i]))
