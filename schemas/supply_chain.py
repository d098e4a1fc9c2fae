"""Supply-chain transactions (movements of a product lot between two nodes), verdicts, and the
score published for every transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Optional

from pydantic import Field

from schemas.common import EntityId, FiniteFloat, InputEvent, Name, OutputMessage
from schemas.outputs import DecisionSource

NodeType = Literal["manufacturer", "distributor", "wholesaler", "pharmacy", "hospital", "carrier", "other"]


class SupplyChainTransaction(InputEvent):
    shipment_id: EntityId
    product_id: EntityId
    lot_id: EntityId
    source_id: EntityId
    source_type: NodeType
    target_id: EntityId
    target_type: NodeType
    quantity: FiniteFloat = Field(gt=0)
    unit_price: FiniteFloat = Field(ge=0)
    carrier_id: Optional[EntityId] = None
    route: Optional[str] = Field(None, max_length=256)
    features: dict[Name, FiniteFloat] = Field(default_factory=dict, max_length=256)


class SupplyChainVerdict(InputEvent):
    """A reviewer's (or investigation's) finding on a shipment."""

    shipment_id: EntityId
    verdict: Literal["confirmed", "cleared"]
    attack_kind: Optional[Name] = None


class SupplyChainScore(OutputMessage):
    """One per scored transaction, whatever the decision."""

    score_id: str
    event_id: str
    shipment_id: str
    lot_id: str
    event_ts: datetime
    # Calibrated probability that the shipment is an attack (rules only: 1 when a rule fired, else 0).
    score: float = Field(ge=0, le=1)
    confidence: float = Field(ge=0, le=1)
    flagged: bool
    decision_source: DecisionSource
    reason: str
    # Per detector (gnn, vae, hst, robust): its surprise, -log10 of the share of normal
    # transactions at least as unusual; "evidence": what the flag threshold is compared with.
    detector_scores: dict[str, float] = Field(default_factory=dict)
    rules_fired: list[str] = Field(default_factory=list)
    model_name: str
    model_version: Optional[str]
    created_at: datetime
    # True on `supply-chain-shadow-scores`: a candidate version's score, never acted on.
    shadow: bool = False
