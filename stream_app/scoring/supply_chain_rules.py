"""Deterministic supply-chain checks. They decide when the model is unavailable or unsure, and
every explanation lists them (fired or not).

  lot_two_places        the source ships a lot it never received, although the lot's whole path
                        is known (its first shipment, from a manufacturer, was seen): the lot is
                        at two places at once, one of them holds a copy.
  new_node_controlled   the source was first seen less than `new_node_days` ago, after the graph
                        had already been watching for that long (so it really is new, not just
                        new to a worker that just started), and the product is controlled.
  lot_unproven          the lot enters the chain at the source: no manufacturer was seen
                        shipping it and nobody delivered it to the source (a lot number nobody
                        produced), once lots have been watched for the model's
                        `provenance_days` (before that, lots already in the chain were delivered
                        unseen).
  implicated_source     the source was implicated by a confirmed attack verdict (a node that had
                        few shipments when it was caught: a counterfeiter, a front).
Each check reads the graph as of the transaction's event time, like the features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from schemas.outputs import RuleCheck
from schemas.supply_chain import SupplyChainTransaction
from stream_app.graph.state import TransactionGraph

RULES = ("lot_two_places", "new_node_controlled", "lot_unproven", "implicated_source")
_DAY = 86400.0


@dataclass(frozen=True)
class RuleConfig:
    new_node_days: float = 7.0
    provenance_days: float = 21.0
    controlled: frozenset[str] = frozenset()

    def is_controlled(self, tx: SupplyChainTransaction) -> bool:
        return tx.product_id in self.controlled or tx.features.get("controlled", 0.0) >= 1.0


@dataclass(frozen=True)
class RuleResult:
    checks: list[RuleCheck]
    fired: list[str]
    reasons: list[str]  # one readable sentence per fired rule

    @property
    def any(self) -> bool:
        return bool(self.fired)


def check(tx: SupplyChainTransaction, graph: TransactionGraph, config: RuleConfig) -> RuleResult:
    """tx must already be applied to the graph (as for the features)."""
    t = tx.ts.timestamp()
    checks: list[RuleCheck] = []
    fired: list[str] = []
    reasons: list[str] = []

    def add(rule: str, value: Optional[float], limit: float, hit: bool, reason: str) -> None:
        checks.append(RuleCheck(rule=rule, value=value, limit=limit, fired=hit))
        if hit:
            fired.append(rule)
            reasons.append(reason)

    lot = graph.lot_view(tx, t)
    state = graph.lots.get(tx.lot_id)
    two_places = lot.provenance and not lot.source_is_origin and lot.source_received is None
    holders = ""
    if two_places and state is not None:
        held = sorted((n for n, r in state.holders.items() if r < t and n != tx.source_id), key=lambda n: -state.holders[n])
        holders = f" (it went to {', '.join(held[:3])}{' and others' if len(held) > 3 else ''})" if held else ""
    add("lot_two_places", 1.0 if two_places else 0.0, 1.0, two_places,
        f"lot {tx.lot_id} was never delivered to {tx.source_id}{holders}: it is at two places at once")

    node = graph.node(tx.source_id)
    first = node["ts"][0] if node is not None and node["ts"] else t
    age_days = max(0.0, t - first) / _DAY
    watched_before = (first - graph.observed_since) / _DAY
    is_new = age_days < config.new_node_days and watched_before >= config.new_node_days
    controlled = config.is_controlled(tx)
    add("new_node_controlled", round(age_days, 3), config.new_node_days, is_new and controlled,
        f"{tx.source_id} was first seen {age_days * 24:.1f} h ago and ships controlled product {tx.product_id}")

    watched = (t - graph.lots_since) / _DAY
    unproven = (tx.source_type != "manufacturer" and not lot.provenance and lot.source_received is None
                and watched >= config.provenance_days)
    add("lot_unproven", 1.0 if unproven else 0.0, 1.0, unproven,
        f"lot {tx.lot_id} enters the chain at {tx.source_id}: no manufacturer was seen shipping it and nobody "
        f"delivered it to {tx.source_id} (lots watched for {watched:.0f} days)")

    implicated = graph.implicated.get(tx.source_id)
    add("implicated_source", 1.0 if implicated else 0.0, 1.0, implicated is not None,
        f"{tx.source_id} was implicated in confirmed attack shipment {implicated}")
    return RuleResult(checks, fired, reasons)
