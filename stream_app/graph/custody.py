"""Chain of custody: what the lot ledger (graph/state.py) says about one transaction, as of its
event time. A shipment of lot L from S to T is checked for four facts:

  never_received   S ships L, L was seen before, but nothing of L was delivered to S, and S is
                   neither where L entered the chain (a manufacturer's first shipment of its lot,
                   or the first holder seen of a lot that predates the data) nor a holder of
                   stock that predates the data (S shipped L while lots were not yet watched):
                   the lot is at two places at once, one of them holds a copy.
  received_twice   T already received L in this very shipment, earlier: the same delivery is
                   recorded twice (a delivery note used again to cover goods that never came
                   through the chain). Lines of one shipment drawing on one lot at the same time
                   are one delivery, not two.
  overshipped      with this shipment S has shipped more of L than was delivered to it (beyond
                   rounding), S being neither where L entered nor a holder from before the data.
                   It is the shipment that tips the ledger over: once S is over, its next
                   shipments of L are not news (they fire again only after receipts balanced
                   the ledger). A delivery recorded twice counts once on both sides.
  fast_turnaround  S ships L sooner after L was sent to S than `min_turnaround_s`, the fastest
                   turnaround the network's normal history allows (learned at training: below it
                   the goods cannot have arrived and been handled).
  unproven         L enters the chain at S: S is not a manufacturer, nothing of L was delivered
                   to S, and L was first seen, shipped by S, after lots had been watched (a lot
                   number nobody produced).

Receipts and shipments count when strictly earlier than the transaction, so the answers do not
depend on the order transactions were applied in. Before lots have been watched for `watch_s`
(the model's provenance days), a lot without a seen manufacturer shipment may have been
delivered unseen, so never_received and overshipped need either that or the lot's provenance.
How often each fact occurs in normal traffic is measured at training (the ensemble's custody
calibration, scoring/supply_chain_ensemble.py); the facts themselves do not depend on how lots
or nodes are named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, TypeVar

from schemas.supply_chain import SupplyChainTransaction
from stream_app.graph.state import TransactionGraph

SIGNALS = ("never_received", "received_twice", "overshipped", "fast_turnaround", "unproven")
BIT = {name: 1 << i for i, name in enumerate(SIGNALS)}
_ROUNDING = 0.5  # units; plus 0.1 % of what was received
E = TypeVar("E", bound=tuple)


@dataclass(frozen=True)
class Custody:
    fired: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()  # one readable sentence per fired fact
    watched: bool = False  # the lot's custody evidence was trustworthy
    turnaround_h: Optional[float] = None  # since L was first sent to S, when it was
    values: dict[str, float] = field(default_factory=dict)  # per fact, the number it was judged on

    @property
    def bits(self) -> int:
        return sum(BIT[name] for name in self.fired)


def check(tx: SupplyChainTransaction, graph: TransactionGraph, watch_s: float, min_turnaround_s: float = 0.0) -> Custody:
    """tx must already be applied to the graph (as for the features)."""
    t = tx.ts.timestamp()
    view = graph.lot_view(tx, t)
    watched = graph.lot_watched(view, t, watch_s)
    lot = graph.lots.get(tx.lot_id)
    if lot is None:
        return Custody(watched=watched)
    src, dst = tx.source_id, tx.target_id
    provenance, origin, earlier = view.provenance, view.source_is_origin, view.known
    receipts = [r for r in lot.received.get(src, ()) if r[0] < t]
    first_receipt = lot.holders.get(src)
    received = view.source_received is not None
    first_sent = min((x for x, _, _ in lot.sent.get(src, ())), default=None)
    # a holder from before the data: it shipped the lot unreceived while lots were not yet watched
    predates = not provenance and first_sent is not None and first_sent < graph.lots_since + watch_s and (
        first_receipt is None or first_sent < first_receipt)
    fired: list[str] = []
    reasons: list[str] = []
    values: dict[str, float] = {}

    if watched and earlier and not received and not origin and not predates:
        fired.append("never_received")
        held = sorted((n for n, r in lot.holders.items() if r < t and n != src), key=lambda n: lot.holders[n])
        where = f" (it went to {', '.join(held[:3])}{' and others' if len(held) > 3 else ''})" if held else ""
        reasons.append(f"lot {tx.lot_id} was never delivered to {src}{where}: it is at two places at once")
        values["never_received"] = 1.0

    first_copy = min((x for x, _, _, k in lot.received.get(dst, ()) if k == tx.shipment_id and x < t), default=None)
    if first_copy is not None:
        fired.append("received_twice")
        hours = (t - first_copy) / 3600.0
        reasons.append(f"{dst} already received lot {tx.lot_id} in shipment {tx.shipment_id} {hours:.1f} h earlier: "
                       f"the same delivery is recorded twice")
        values["received_twice"] = hours

    if lot.ledger and watched and receipts and not origin and not predates:
        got = sum(q for x, q, _, k in _once(receipts))
        sent_before = sum(q for x, q, k in _once(lot.sent.get(src, ())) if x < t)
        shipped = sent_before + tx.quantity
        allowed = got + _ROUNDING + 0.001 * got
        if shipped > allowed >= sent_before:
            fired.append("overshipped")
            reasons.append(f"{src} has shipped {shipped:g} of lot {tx.lot_id} but received {got:g}")
            values["overshipped"] = shipped - got

    turnaround = (t - first_receipt) / 3600.0 if received and not origin else None
    if turnaround is not None and turnaround * 3600.0 < min_turnaround_s:
        fired.append("fast_turnaround")
        reasons.append(f"{src} ships lot {tx.lot_id} {turnaround * 60:.0f} min after it was sent to {src} "
                       f"(normal turnarounds take at least {min_turnaround_s / 3600.0:.1f} h)")
        values["fast_turnaround"] = turnaround
    if (origin and not received and tx.source_type != "manufacturer" and t - graph.lots_since >= watch_s
            and lot.origin_ts >= graph.lots_since + watch_s):
        fired.append("unproven")
        reasons.append(f"lot {tx.lot_id} enters the chain at {src}: no manufacturer was seen shipping it and nobody "
                       f"delivered it to {src} (lots watched for {(t - graph.lots_since) / 86400.0:.0f} days)")
        values["unproven"] = 1.0
    return Custody(tuple(fired), tuple(reasons), watched, turnaround, values)


def _once(entries: Sequence[E]) -> list[E]:
    """Ledger entries with a delivery recorded again later (same shipment, later time) left out;
    the last field of an entry is its shipment."""
    first: dict[str, float] = {}
    for e in entries:
        first[e[-1]] = min(first.get(e[-1], e[0]), e[0])
    return [e for e in entries if e[0] == first[e[-1]]]
