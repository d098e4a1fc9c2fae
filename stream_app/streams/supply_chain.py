"""Supply-chain anomalies: transactions, keyed by shipment; attack verdicts as truth."""

from __future__ import annotations

from typing import Sequence

from schemas import SupplyChainTransaction, SupplyChainVerdict
from stream_app.scoring.supply_chain import MODEL_NAME, ScoredTransaction
from stream_app.streams import StreamDeclaration


def drift_values(transactions: Sequence[SupplyChainTransaction], results: Sequence[ScoredTransaction]) -> dict[str, list[float]]:
    """Quantities and prices as sent, the score and the confidence."""
    return {
        "quantity": [t.quantity for t in transactions],
        "unit_price": [t.unit_price for t in transactions],
        "score": [r.score.score for r in results],
        "confidence": [r.score.confidence for r in results],
    }


SUPPLY_CHAIN = StreamDeclaration(
    name="supply_chain", model_name=MODEL_NAME, event_model=SupplyChainTransaction, truth_model=SupplyChainVerdict,
    input_topic="supply_chain_transactions", truth_topic="supply_chain_verdicts", section="supply_chain",
    scorer_agent="supply-chain-scorer", truth_agent="supply-chain-verdicts", key_of=lambda tx: tx.shipment_id,
    drift_values=drift_values, distribution=("score", "confidence"),
)
