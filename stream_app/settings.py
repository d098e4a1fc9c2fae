"""All settings in one place: environment variables (prefix-free, as operators expect) or a
`.env`-style file named by STREAM_APP_SETTINGS_FILE."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_BOOTSTRAP = "127.0.0.1:9092"


class Topics(BaseModel):
    """Topic names of the public contract. Change only together with every producer/consumer."""

    sensor_readings: str = "sensor-readings"
    maintenance_outcomes: str = "maintenance-outcomes"
    maintenance_predictions: str = "maintenance-predictions"
    supply_chain_transactions: str = "supply-chain-transactions"
    supply_chain_verdicts: str = "supply-chain-verdicts"
    supply_chain_scores: str = "supply-chain-scores"
    sales_events: str = "sales-events"
    demand_calendar: str = "demand-calendar"
    demand_forecasts: str = "demand-forecasts"
    alerts: str = "alerts"
    explanations: str = "explanations"
    drift_events: str = "drift-events"
    dead_letters: str = "dead-letters"
    # A candidate model version's predictions, scored in shadow beside the served version.
    maintenance_shadow_predictions: str = "maintenance-shadow-predictions"
    supply_chain_shadow_scores: str = "supply-chain-shadow-scores"
    demand_shadow_forecasts: str = "demand-shadow-forecasts"
    # Internal (workers only, compacted): per-machine model state snapshots for hand-over, and
    # the drift detectors of the streams without one.
    maintenance_state: str = "maintenance-state"
    drift_state: str = "drift-state"
    # Internal (compacted): the supply-chain graph, shared so a starting worker need not replay
    # the whole transactions topic.
    supply_chain_graph: str = "supply-chain-graph"
    # The alert chains' links (stream_app/audit): what `stream-app audit verify` checks alerts
    # and explanations against. Keep it as long as the alerts.
    alert_audit: str = "alert-audit"


class MaintenanceSettings(BaseModel):
    # The operating point: a model version alerts at the threshold its validation curve gives
    # for this many false alerts per machine-day (and, if set, this alert precision); see
    # stream_app/scoring/operating_point.py. Versions trained before it use alert_probability.
    false_alert_budget: float = Field(0.1, gt=0.0)
    min_precision: Optional[float] = Field(None, ge=0.0, le=1.0)
    # An alert needs both: the model must think failure is likely and be sure of it.
    alert_probability: float = Field(0.5, ge=0.0, le=1.0)
    min_confidence: float = Field(0.85, ge=0.0, le=1.0)
    # Model alerts at or above this (calibrated) probability are critical, the rest warnings.
    # Model alerts already need p >= ~min_confidence (confidence includes decisiveness).
    critical_probability: float = Field(0.95, ge=0.0, le=1.0)
    # Consecutive alerts for one machine are suppressed for this many seconds of event time,
    # so a planner sees one alert per developing fault, not one per reading.
    alert_cooldown_s: float = Field(6 * 3600, ge=0.0)
    # Readings scored at a time: the fetches queued when the agent is free, whole, up to this
    # many (a larger fetch is taken whole). Nothing waits for a batch to fill.
    batch_max: int = Field(500, ge=1)
    # Per-machine state (LSTM state, history, cooldowns) is snapshot to the maintenance-state
    # topic this often; a worker taking a partition over loads it and replays the readings since.
    snapshot_interval_s: float = Field(10.0, gt=0.0)
    restore_on_assign: bool = True
    # Model explanations attribute over each machine's last explain_window readings; keeping
    # them costs ~74 B per machine per reading of window with the trained model's 8 sensors and
    # their trend columns (never changes predictions).
    explain_window: int = Field(16, ge=1, le=64)
    # The state budget (stream_app/state_budget.py): at most this many machines per worker
    # (~2.5 KB each with the trained model: 50,000 is ~125 MB), least recently seen forgotten
    # first, and a machine silent for this long (event time) is forgotten. A forgotten machine
    # that reports again warms up as a new one.
    max_machines: int = Field(50_000, ge=1)
    machine_idle_s: float = Field(30 * 86400, gt=0.0)


class DriftSettings(BaseModel):
    enabled: bool = True
    # ADWIN sensitivity (lower: fewer, surer detections) and the sampled KSWIN on model outputs.
    adwin_delta: float = Field(0.002, gt=0.0, lt=1.0)
    kswin_alpha: float = Field(1e-4, gt=0.0, lt=1.0)
    kswin_every: int = Field(20, ge=1)
    # A change is reported when the recent mean is this many reference deviations away from
    # the reference (the first `reference_size` values of each partition, or those after the
    # last reported drift).
    min_effect: float = Field(1.0, ge=0.0)
    reference_size: int = Field(2000, ge=10)
    # Values expected to wander are left unmonitored: ambient temperature follows the weather
    # (on the simulated fleet it alone gave ~20 reports a simulated month).
    ignore_features: list[str] = Field(default_factory=lambda: ["ambient_temp"])
    # Detector state is snapshot to a Faust table this often, to survive restarts.
    snapshot_interval_s: float = Field(30.0, gt=0.0)


class DemandSettings(BaseModel):
    """Demand forecasting (agents/demand.py, stream_app/scoring/demand.py)."""

    # A day (UTC) closes when the partition's newest event time passes its end plus this.
    allowed_lateness_s: float = Field(6 * 3600, ge=0.0, le=7 * 86400)
    # Events up to this many days before the oldest open day are counted into their day's
    # history as corrections; older ones are dead letters (sales_event_too_old).
    correction_days: int = Field(28, ge=0, le=365)
    # Below either the rule fallback (moving average / seasonal naive) forecasts instead. The
    # model needs two weeks of a series to know its level and weekly pattern. Confidence (the
    # chance the 7-day total lands within +-25 %) is low for sparse series by nature, and on the
    # simulated history the rule fallback was worse than the model in every confidence band
    # (training report), so by default it does not hand forecasts to the rules.
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    min_history_days: int = Field(14, ge=0)
    # Markets accepted besides the model's and the calendar's (a new market before retraining).
    # Sales for any other market are dead letters (unknown_market), unless this is set:
    accept_unknown_markets: bool = False
    markets: list[str] = Field(default_factory=list)
    # Known future covariates loaded at start, before the demand-calendar topic (JSONL/CSV).
    calendar_file: Path | None = None
    # Interval alerts: realised units beyond P10/P90 by this share of the interval's width and
    # by at least min units; critical beyond twice the width.
    alert_margin: float = Field(0.5, ge=0.0)
    alert_min_units: float = Field(3.0, ge=0.0)
    # Forecast-shift alerts: the next 29 days' P50 total moves by this share of the previous
    # forecast's and by at least min units; critical when it doubles or halves.
    shift_threshold: float = Field(0.5, gt=0.0)
    shift_min_units: float = Field(10.0, ge=0.0)
    alert_cooldown_days: int = Field(7, ge=0)
    # After a gap in a partition's events, only the last this many closed days get forecasts.
    max_catch_up_days: int = Field(35, ge=1)
    # At start (and when a partition is newly assigned) the partition's retained sales are read
    # to rebuild its daily history; off: series start with an empty history.
    replay_on_assign: bool = True
    # How long the agent waits at start for the calendar topic to be read before forecasting.
    calendar_wait_s: float = Field(10.0, ge=0.0)
    batch_max: int = Field(500, ge=1)
    # The state budget (stream_app/state_budget.py): at most this many SKU x market series per
    # worker, least recently sold first, and a series without a sale for this long (event time)
    # is forgotten. A forgotten series that sells again starts with an empty history.
    max_series: int = Field(200_000, ge=1)
    series_idle_s: float = Field(180 * 86400, gt=0.0)


class SupplyChainSettings(BaseModel):
    """Supply-chain anomaly scoring (agents/supply_chain.py, stream_app/scoring/supply_chain.py)."""

    # Below this competence (the model's coverage: what it could see of a transaction) the
    # deterministic rules decide instead of the model.
    min_confidence: float = Field(0.8, ge=0.0, le=1.0)
    # Model alerts with a calibrated attack probability at or above this are critical.
    critical_score: float = Field(0.9, ge=0.0, le=1.0)
    # A source first seen less than this many days ago is brand-new (rule: with a controlled product).
    new_node_days: float = Field(7.0, gt=0.0)
    # Node embeddings are recomputed in the background every this many transactions or seconds.
    embedding_refresh_every: int = Field(1000, ge=1)
    embedding_refresh_s: float = Field(30.0, gt=0.0)
    # Each worker keeps the graph from the whole transactions topic (all partitions), not only
    # its own; a batch waits up to this long for that follower to catch up before scoring.
    follow_graph: bool = True
    graph_sync_timeout_s: float = Field(1.0, ge=0.0)
    # ...but not for transactions that reached the topics less than this before the batch: a
    # fresher view costs each batch a fetch round trip (on the embedded broker, which holds every
    # fetch for its full wait, ~20-40 ms of latency). With several workers, transactions on other
    # workers' partitions in the same instant are being scored concurrently anyway.
    graph_sync_lag_ms: float = Field(20.0, ge=0.0)
    # The graph is shared through snapshots in the compacted supply-chain-graph topic
    # (agents/graph_snapshots.py): the worker holding partition 0 of the transactions topic
    # writes one this often (0: never), and a starting worker's follower loads the latest and
    # reads the topics on from its offsets, instead of from the beginning.
    graph_snapshot_interval_s: float = Field(300.0, ge=0.0)
    graph_from_snapshot: bool = True
    # Lots not moved for this long are forgotten (memory).
    lot_retention_days: float = Field(60.0, gt=0.0)
    batch_max: int = Field(500, ge=1)
    # The state budget (stream_app/state_budget.py): at most this many nodes in the graph,
    # least recently active forgotten first (with their edges, routes and statistics), and a
    # node without a transaction for this long (event time) is forgotten. A forgotten node that
    # trades again is new to the graph.
    max_nodes: int = Field(200_000, ge=1)
    node_idle_s: float = Field(180 * 86400, gt=0.0)
    # Transaction ids remembered to drop redeliveries, and shipments remembered to join late
    # verdicts to: memory per transaction, bounded by these counts (~160 B and ~200 B each).
    dedupe_events: int = Field(500_000, ge=1000)
    remembered_shipments: int = Field(200_000, ge=1000)


class TopicSetting(BaseModel):
    """One topic's layout where it differs from the defaults (TOPIC_PARTITIONS,
    TOPIC_REPLICATION_FACTOR, the broker's retention): stream_app/topics.py; and, for an input
    topic, how its gateway messages are answered."""

    partitions: Optional[int] = Field(None, ge=1)
    replication_factor: Optional[int] = Field(None, ge=1)
    # -1: keep forever.
    retention_hours: Optional[float] = Field(None, ge=-1)
    # sensor-readings, supply-chain-transactions: a gateway message (a JSON array of events) is
    # answered by one message, the array of its events' predictions or scores, instead of one
    # message per event (schemas/json/*-batch.schema.json).
    answer_arrays: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=os.environ.get("STREAM_APP_SETTINGS_FILE"),
        env_nested_delimiter="__",
        extra="ignore",
    )

    # Empty means: use (and if needed start) the embedded broker on EMBEDDED_BOOTSTRAP.
    kafka_bootstrap_servers: str = ""
    # How clients reach and log in to that cluster (README "Secured Kafka"). Checked, and turned
    # into client options, in stream_app/kafka_security.py, so a mistake is one line naming it.
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    kafka_ssl_cafile: Optional[Path] = None  # PEM CA certificates; none: the system's trusted CAs
    kafka_ssl_certfile: Optional[Path] = None  # client certificate (mutual TLS), PEM
    kafka_ssl_keyfile: Optional[Path] = None  # its unencrypted private key, PEM
    kafka_ssl_check_hostname: bool = True
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_sasl_password_file: Optional[Path] = None  # a mounted secret; one trailing newline is dropped
    app_id: str = "stream-app"
    topic_partitions: int = Field(4, ge=1)
    # Copies of each topic the product creates (stream_app/topics.py). Unset on a configured
    # cluster: workers create no topic, `stream-app topics create` refuses, so nothing is ever
    # created with one copy by accident. The embedded broker always gets 1.
    topic_replication_factor: Optional[int] = Field(None, ge=1)
    # Per topic, by its key in `topics` (TOPIC_CONFIG__SALES_EVENTS__RETENTION_HOURS=3000).
    topic_config: dict[str, TopicSetting] = Field(default_factory=dict)
    # Where trained model versions live (see stream_app.registry).
    model_dir: Path = Path("model_store")
    # Workers check the registry's CURRENT/CANDIDATE pointers this often: a promoted or
    # rolled-back version is served without a restart, a candidate scores in shadow.
    model_poll_s: float = Field(5.0, gt=0.0)
    # Where the embedded broker, worker tables and demo logs keep their files.
    data_dir: Path = Path("var")
    # The embedded broker holds a group's first join for about half the session timeout, so
    # both stay short; a dead worker's partitions also move after the session timeout.
    broker_rebalance_timeout_s: float = 4.0
    broker_session_timeout_s: float = 8.0
    broker_heartbeat_interval_s: float = 2.0
    # How long a fetch may wait for data (stream_app/faust_transport.py). Apache Kafka answers as
    # soon as data arrives, so this only paces polls of idle partitions; the embedded broker
    # holds every fetch this long, so there it adds to every event's latency.
    broker_fetch_max_wait_ms: int = Field(20, ge=1, le=10_000)
    # Prometheus /metrics of a worker; 0 disables (e.g. several workers on one host in tests).
    metrics_port: int = Field(9102, ge=0, le=65535)
    # Address /metrics, /healthz and /readyz listen on: all interfaces by default (a scraper in
    # another container or pod); 127.0.0.1 keeps them on the host, "::" serves IPv6 too.
    metrics_bind_address: str = "0.0.0.0"
    # Bad-input limits.
    # Alerts and explanations carry a link of a tamper-evident chain, written to the
    # alert-audit topic (stream_app/audit; `stream-app audit verify` checks them).
    audit_alerts: bool = True
    max_message_bytes: int = Field(1_000_000, ge=1024)
    max_events_per_message: int = Field(10_000, ge=1)
    max_future_skew_s: float = Field(7 * 86400, ge=0.0)
    log_level: str = "INFO"

    topics: Topics = Topics()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    supply_chain: SupplyChainSettings = SupplyChainSettings()
    demand: DemandSettings = DemandSettings()
    drift: DriftSettings = DriftSettings()

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or EMBEDDED_BOOTSTRAP

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.kafka_bootstrap_servers


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
