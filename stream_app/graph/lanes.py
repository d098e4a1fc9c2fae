"""Facts about a shipment's lane (its edge and its carrier), as of its event time, from the
transaction graph (graph/state.py). Like the custody facts (graph/custody.py), each is a plain
fact; how often it occurs in normal traffic is measured at training (the ensemble's lanes
calibration), so a network where carriers change often is not alarmed by it.

  carrier_unknown      the carrier was never seen anywhere before, although carriers have been
                       watched for `watch_s` (a freight forwarder nobody uses, a made-up one)
  carrier_new_on_lane  the edge is established (at least ESTABLISHED_EDGE earlier shipments) and
                       its carrier, known elsewhere, never carried on it before
  new_lane             both ends are established (FIRST_K or more earlier transactions, seen for
                       `watch_s`) but neither this edge nor its reverse was ever used: a new trading
                       relationship between parties that trade a lot otherwise
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.supply_chain import SupplyChainTransaction
from stream_app.graph.state import FIRST_K, TransactionGraph, count_before

SIGNALS = ("carrier_unknown", "carrier_new_on_lane", "new_lane")
BIT = {name: 1 << i for i, name in enumerate(SIGNALS)}
ESTABLISHED_EDGE = 5


@dataclass(frozen=True)
class LaneFacts:
    fired: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def bits(self) -> int:
        return sum(BIT[name] for name in self.fired)


def check(tx: SupplyChainTransaction, graph: TransactionGraph, watch_s: float) -> LaneFacts:
    """tx must already be applied to the graph (as for the features)."""
    t = tx.ts.timestamp()
    src, dst = tx.source_id, tx.target_id
    watched = t - graph.observed_since >= watch_s
    fired: list[str] = []
    reasons: list[str] = []
    edge = graph.edge(src, dst)
    earlier = count_before(edge["ts"], t) if edge is not None else 0
    carrier = tx.carrier_id
    if carrier is not None and watched:
        seen = count_before(graph.carriers.get(carrier, []), t)
        if seen == 0:
            fired.append("carrier_unknown")
            reasons.append(f"carrier {carrier} was never seen before")
        elif edge is not None and earlier >= ESTABLISHED_EDGE and not edge["carriers"].get(carrier, t) < t:
            fired.append("carrier_new_on_lane")
            usual = ", ".join(c for c, first in edge["carriers"].items() if first < t and c != carrier)
            reasons.append(f"carrier {carrier} never carried on {src} -> {dst} before ({earlier}+ shipments"
                           + (f", by {usual}" if usual else "") + ")")
    reverse = graph.edge(dst, src)
    if watched and earlier == 0 and (reverse is None or count_before(reverse["ts"], t) == 0):
        ends = [graph.node(src), graph.node(dst)]
        if all(n is not None and count_before(n["ts"], t) >= FIRST_K and n["ts"][0] <= t - watch_s for n in ends):
            fired.append("new_lane")
            reasons.append(f"{src} and {dst} trade a lot with others but never with each other before")
    return LaneFacts(tuple(fired), tuple(reasons))
