"""Supply-chain transactions (movements of a product lot between two nodes) and verdicts."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from schemas.common import EntityId, FiniteFloat, InputEvent, Name

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
