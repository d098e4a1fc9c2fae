"""Messages this product publishes: predictions, alerts, explanations, dead letters."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Literal, Optional

from pydantic import Field

from schemas.common import OutputMessage, OutputPart

DecisionSource = Literal["model", "rule"]
Severity = Literal["info", "warning", "critical"]

_ID_NAMESPACE = uuid.UUID("6f1c3f0e-8d4a-4b7e-9a51-2b1d8a7c5e10")


_NAMESPACE_BYTES = _ID_NAMESPACE.bytes


def deterministic_id(*parts: object) -> str:
    """The same inputs always give the same id, so consumers can drop at-least-once duplicates:
    the RFC 4122 version-5 UUID of the parts (uuid.uuid5, computed here without its object
    overhead: one per prediction)."""
    h = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(map(str, parts)).encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class MaintenancePrediction(OutputMessage):
    """One per scored sensor reading, whatever the decision."""

    prediction_id: str
    event_id: str
    machine_id: str
    event_ts: datetime
    failure_probability: float = Field(ge=0, le=1)
    horizon_hours: float
    time_to_failure_hours: Optional[float]
    time_to_failure_low_hours: Optional[float] = None
    time_to_failure_high_hours: Optional[float] = None
    confidence: float = Field(ge=0, le=1)
    decision_source: DecisionSource
    reason: str = ""
    alert: bool = False
    model_name: str
    model_version: Optional[str]
    imputed_sensors: list[str] = Field(default_factory=list)
    clipped_sensors: list[str] = Field(default_factory=list)
    unknown_sensors: list[str] = Field(default_factory=list)
    created_at: datetime
    # True on `maintenance-shadow-predictions`: a candidate version's result, never acted on (its `alert`
    # says whether it would have alerted).
    shadow: bool = False


class InputRef(OutputPart):
    """Where one input of an alert lies in Kafka, and the SHA-256 of that message's bytes (a
    gateway message: the whole array), so an auditor can fetch it and check it is the one."""

    topic: str
    partition: Optional[int]
    offset: Optional[int]
    sha256: str


class ChainLink(OutputPart):
    """Where an alert stands in its tamper-evident chain (stream_app/audit): the chain (the
    stream and input partition that raised it), its place, the previous link's hash and its
    own, which covers the alert and its explanation (without their wall-clock `created_at`)."""

    chain: str
    seq: int = Field(ge=1)
    prev: str
    hash: str


class AuditRecord(OutputMessage):
    """One link of an alert chain, on the `alert-audit` topic (keyed by the chain): what the
    alert and its explanation hashed to when published."""

    chain: str
    seq: int = Field(ge=1)
    prev: str
    hash: str
    alert_id: str
    alert_sha256: str
    explanation_sha256: Optional[str] = None


class Alert(OutputMessage):
    alert_id: str
    kind: str
    entity_id: str
    event_ids: list[str]
    severity: Severity
    score: float
    confidence: float = Field(ge=0, le=1)
    decision_source: DecisionSource
    reason: str
    model_name: str
    model_version: Optional[str]
    created_at: datetime
    event_ts: datetime
    explanation: str
    # The input messages of `event_ids` that were in the scored batch (audit trail).
    inputs: list[InputRef] = Field(default_factory=list)
    chain: Optional[ChainLink] = None  # set when published


class Contribution(OutputPart):
    """How much one input moved the score (signed, in score units)."""

    name: str
    value: Optional[float] = None
    contribution: float


class TimeStepContribution(OutputPart):
    event_id: Optional[str] = None
    event_ts: Optional[datetime] = None
    steps_ago: int
    contribution: float


class Counterfactual(OutputPart):
    feature: str
    actual: Optional[float]
    alternative: float
    score_actual: float
    score_alternative: float
    text: str


class RuleCheck(OutputPart):
    rule: str
    value: Optional[float]
    limit: float
    fired: bool


class Explanation(OutputMessage):
    alert_id: str
    kind: str
    entity_id: str
    model_name: str
    model_version: Optional[str]
    decision_source: DecisionSource
    method: str
    summary: str
    text: str
    features: list[Contribution] = Field(default_factory=list)
    time_steps: list[TimeStepContribution] = Field(default_factory=list)
    counterfactuals: list[Counterfactual] = Field(default_factory=list)
    rules: list[RuleCheck] = Field(default_factory=list)
    inputs_sha256: str
    created_at: datetime
    chain: Optional[ChainLink] = None  # its alert's link, set when published


class DeadLetter(OutputMessage):
    """`payload`: the bad input (a gateway array's bad element alone, re-serialized), cut to fit;
    `payload_bytes` and `payload_sha256`: of the whole source message at `offset`. The Kafka
    headers `dlq.*` repeat the error and the origin (stream_app/deadletter.py)."""

    dead_letter_id: str
    source_topic: str
    partition: Optional[int]
    offset: Optional[int]
    key: Optional[str]
    # How `key` holds the source message's key (base64 when it is not UTF-8), and whether it was cut.
    key_encoding: Literal["utf-8", "base64"] = "utf-8"
    key_truncated: bool = False
    payload: str
    payload_encoding: Literal["utf-8", "base64"]
    payload_bytes: int
    payload_truncated: bool
    payload_sha256: str
    # Position inside a gateway array message, when only one element of it was bad.
    item_index: Optional[int] = None
    error_code: str
    error_message: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
    failed_at: datetime


class DriftEvent(OutputMessage):
    """A detected change in the distribution of one monitored value of one stream partition."""

    drift_id: str
    stream: str
    partition: Optional[int]
    feature: str
    detector: str
    detected_at: datetime
    event_ts: Optional[datetime]
    values_seen: int
    mean_before: float
    mean_after: float
    reference_mean: float
    reference_std: float
    # (mean after - reference mean) in reference standard deviations.
    effect: float
    sensitivity: dict[str, float]
