"""Deterministic supply-chain checks. They decide when the model is unavailable or unsure, and
every explanation lists them (fired or not).

  lot_two_places        the source ships a lot it never received (graph/custody.py,
                        never_received): the lot is at two places at once, one holds a copy.
                        Known once the lot's first shipment, from a manufacturer, was seen, or
                        lots have been watched for `provenance_days` (then a lot that predates the
                        data counts too, unless the source held it before lots were watched).
  lot_received_twice    the target already received the lot in this very shipment, earlier: the
                        same delivery recorded twice.
  lot_overshipped       the source has shipped more of the lot than it received.
  lot_fast_turnaround   the source ships the lot sooner after it was sent to it than the normal
                        history's fastest turnarounds allow.
  new_node_controlled   the source was first seen less than `new_node_days` ago, after the graph
                        had already been watching for that long (so it really is new, not just
                        new to a worker that just started), and the product is controlled.
  lot_unproven          the lot enters the chain at the source: no manufacturer was seen
                        shipping it and nobody delivered it to the source (a lot number nobody
                        produced), first seen after lots had been watched for the model's
                        `provenance_days` (before that, lots already in the chain were delivered
                        unseen).
  implicated_source     the source was implicated by a confirmed attack verdict (a node that had
                        few shipments when it was caught: a counterfeiter, a front).
  carrier_unknown, carrier_new_on_lane, new_lane
                        the lane facts of graph/lanes.py: a carrier never seen, a carrier new on
                        an established edge, a first trade between two busy parties.
Each check reads the graph as of the transaction's event time, like the features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from schemas.outputs import RuleCheck
from schemas.supply_chain import SupplyChainTransaction
from stream_app.graph import custody as custody_facts
from stream_app.graph import lanes as lane_facts
from stream_app.graph.state import TransactionGraph

RULES = ("lot_two_places", "lot_received_twice", "lot_overshipped", "lot_fast_turnaround", "new_node_controlled",
         "lot_unproven", "implicated_source", *lane_facts.SIGNALS)
# custody fact -> the rule that reports it
CUSTODY_RULES = {"never_received": "lot_two_places", "received_twice": "lot_received_twice",
                 "overshipped": "lot_overshipped", "fast_turnaround": "lot_fast_turnaround", "unproven": "lot_unproven"}
_DAY = 86400.0


@dataclass(frozen=True)
class RuleConfig:
    new_node_days: float = 7.0
    provenance_days: float = 21.0
    controlled: frozenset[str] = frozenset()
    min_turnaround_h: float = 0.0

    def is_controlled(self, tx: SupplyChainTransaction) -> bool:
        return tx.product_id in self.controlled or tx.features.get("controlled", 0.0) >= 1.0


@dataclass(frozen=True)
class RuleResult:
    # (rule, value, limit, fired) per rule checked: plain tuples, since only an alert's
    # explanation shows them (as RuleCheck messages, `checks`), and every transaction makes ~10
    rows: list[tuple[str, Optional[float], float, bool]]
    fired: list[str]
    reasons: list[str]  # one readable sentence per fired rule

    @property
    def any(self) -> bool:
        return bool(self.fired)

    @property
    def checks(self) -> list[RuleCheck]:
        return [RuleCheck(rule=rule, value=value, limit=limit, fired=hit) for rule, value, limit, hit in self.rows]


def check(
    tx: SupplyChainTransaction, graph: TransactionGraph, config: RuleConfig, custody: Optional[custody_facts.Custody] = None,
    lanes: Optional[lane_facts.LaneFacts] = None,
) -> RuleResult:
    """tx must already be applied to the graph (as for the features). `custody`, `lanes`: the
    facts already checked for tx (checked here when not given)."""
    t = tx.ts.timestamp()
    if custody is None:
        custody = custody_facts.check(tx, graph, config.provenance_days * _DAY, config.min_turnaround_h * 3600.0)
    if lanes is None:
        lanes = lane_facts.check(tx, graph, config.new_node_days * _DAY)
    rows: list[tuple[str, Optional[float], float, bool]] = []
    fired: list[str] = []
    reasons: list[str] = []

    def add(rule: str, value: Optional[float], limit: float, hit: bool, reason: str) -> None:
        rows.append((rule, value, limit, hit))
        if hit:
            fired.append(rule)
            reasons.append(reason)

    reasons_of = dict(zip(custody.fired, custody.reasons))
    for fact, rule in CUSTODY_RULES.items():
        hit = fact in reasons_of
        value = custody.values.get(fact, 0.0)
        limit = config.min_turnaround_h if fact == "fast_turnaround" else 0.0 if fact == "overshipped" else 1.0
        add(rule, round(value, 3), limit, hit, reasons_of.get(fact, ""))

    node = graph.node(tx.source_id)
    first = node["ts"][0] if node is not None and node["ts"] else t
    age_days = max(0.0, t - first) / _DAY
    watched_before = (first - graph.observed_since) / _DAY
    is_new = age_days < config.new_node_days and watched_before >= config.new_node_days
    controlled = config.is_controlled(tx)
    add("new_node_controlled", round(age_days, 3), config.new_node_days, is_new and controlled,
        f"{tx.source_id} was first seen {age_days * 24:.1f} h ago and ships controlled product {tx.product_id}")


    implicated = graph.implicated.get(tx.source_id)
    add("implicated_source", 1.0 if implicated else 0.0, 1.0, implicated is not None,
        f"{tx.source_id} was implicated in confirmed attack shipment {implicated}")
    lane_reasons = dict(zip(lanes.fired, lanes.reasons))
    for fact in lane_facts.SIGNALS:
        add(fact, 1.0 if fact in lane_reasons else 0.0, 1.0, fact in lane_reasons, lane_reasons.get(fact, ""))
    return RuleResult(rows, fired, reasons)
