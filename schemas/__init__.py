"""Pydantic models of every message of the public contract; JSON Schema files beside them
(`schemas/json/`, regenerated with `python -m schemas.export`)."""

from schemas.common import InputEvent, OutputMessage, OutputPart
from schemas.outputs import (
    Alert,
    AuditRecord,
    ChainLink,
    Contribution,
    Counterfactual,
    DeadLetter,
    DriftEvent,
    Explanation,
    MaintenancePrediction,
    RuleCheck,
    TimeStepContribution,
    deterministic_id,
    digest,
)
from schemas.sales import CalendarEntry, DemandForecast, ForecastDay, ForecastTotal, SalesEvent
from schemas.sensor import MaintenanceOutcome, SensorReading
from schemas.supply_chain import SupplyChainScore, SupplyChainTransaction, SupplyChainVerdict

# Message name -> model; the name is the JSON Schema file name.
MESSAGES = {
    "sensor-reading": SensorReading,
    "maintenance-outcome": MaintenanceOutcome,
    "supply-chain-transaction": SupplyChainTransaction,
    "supply-chain-verdict": SupplyChainVerdict,
    "sales-event": SalesEvent,
    "demand-calendar-entry": CalendarEntry,
    "maintenance-prediction": MaintenancePrediction,
    "supply-chain-score": SupplyChainScore,
    "demand-forecast": DemandForecast,
    "alert": Alert,
    "explanation": Explanation,
    "audit-record": AuditRecord,
    "dead-letter": DeadLetter,
    "drift-event": DriftEvent,
}

# A gateway may send a JSON array of input events of one kind as one message: its schema's name
# -> the event model (every input topic takes both forms; schemas/json/<name>.schema.json).
GATEWAY_BATCHES = {f"{name}-batch": model for name, model in MESSAGES.items() if issubclass(model, InputEvent)}
# ...and is answered by one array of the per-event outputs where the input topic's
# TOPIC_CONFIG__<TOPIC>__ANSWER_ARRAYS is on: its schema's name -> the output model.
ANSWER_BATCHES = {"maintenance-prediction-batch": MaintenancePrediction, "supply-chain-score-batch": SupplyChainScore}

__all__ = [
    "ANSWER_BATCHES",
    "GATEWAY_BATCHES",
    "MESSAGES",
    "Alert",
    "AuditRecord",
    "ChainLink",
    "CalendarEntry",
    "Contribution",
    "Counterfactual",
    "DeadLetter",
    "DemandForecast",
    "DriftEvent",
    "Explanation",
    "ForecastDay",
    "ForecastTotal",
    "InputEvent",
    "MaintenanceOutcome",
    "MaintenancePrediction",
    "OutputMessage",
    "OutputPart",
    "RuleCheck",
    "SalesEvent",
    "SensorReading",
    "SupplyChainScore",
    "SupplyChainTransaction",
    "SupplyChainVerdict",
    "TimeStepContribution",
    "deterministic_id",
    "digest",
]
