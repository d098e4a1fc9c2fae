"""All settings in one place: environment variables (prefix-free, as operators expect) or a
`.env`-style file named by STREAM_APP_SETTINGS_FILE."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
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


class MaintenanceSettings(BaseModel):
    # An alert needs both: the model must think failure is likely and be sure of it.
    alert_probability: float = Field(0.5, ge=0.0, le=1.0)
    min_confidence: float = Field(0.85, ge=0.0, le=1.0)
    # Model alerts at or above this (calibrated) probability are critical, the rest warnings.
    # Model alerts already need p >= ~min_confidence (confidence includes decisiveness).
    critical_probability: float = Field(0.95, ge=0.0, le=1.0)
    # Consecutive alerts for one machine are suppressed for this many seconds of event time,
    # so a planner sees one alert per developing fault, not one per reading.
    alert_cooldown_s: float = Field(6 * 3600, ge=0.0)
    # Micro-batch: up to batch_max events, or whatever arrived within batch_within_s.
    batch_max: int = Field(500, ge=1)
    batch_within_s: float = Field(0.05, gt=0.0)


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=os.environ.get("STREAM_APP_SETTINGS_FILE"),
        env_nested_delimiter="__",
        extra="ignore",
    )

    # Empty means: use (and if needed start) the embedded broker on EMBEDDED_BOOTSTRAP.
    kafka_bootstrap_servers: str = ""
    app_id: str = "stream-app"
    topic_partitions: int = Field(4, ge=1)
    # Where trained model versions live (see stream_app.registry).
    model_dir: Path = Path("model_store")
    # Where the embedded broker, worker tables and demo logs keep their files.
    data_dir: Path = Path("var")
    # The embedded broker holds a group's first join for about half the session timeout, so
    # both stay short; a dead worker's partitions also move after the session timeout.
    broker_rebalance_timeout_s: float = 4.0
    broker_session_timeout_s: float = 8.0
    broker_heartbeat_interval_s: float = 2.0
    # Prometheus /metrics of a worker; 0 disables (e.g. several workers on one host in tests).
    metrics_port: int = Field(9102, ge=0, le=65535)
    # Bad-input limits.
    max_message_bytes: int = Field(1_000_000, ge=1024)
    max_events_per_message: int = Field(10_000, ge=1)
    max_future_skew_s: float = Field(7 * 86400, ge=0.0)
    log_level: str = "INFO"

    topics: Topics = Topics()
    maintenance: MaintenanceSettings = MaintenanceSettings()
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
