"""The transaction graph every supply-chain worker keeps: nodes and edges in a networkx DiGraph
with running aggregates, plus what a graph alone does not hold (lots, carriers, products).

Order independence. A worker applies the transactions of the whole stream (its own batches and,
through a follower, every other worker's), so transactions arrive in partition order, not in
event time, and a backlog may bring later transactions before earlier ones. Every question a
feature asks is therefore "as of the transaction's event time", answered from aggregates that do
not depend on the order they were built in:
  * `ts`: the K earliest event times (sorted) per node, edge, carrier, product, route and lot.
    The number of earlier transactions is bisect(ts, t), exact below K and "K or more" above;
    the first sighting is ts[0]. A transaction never counts itself (strictly earlier only).
  * lots: the origin (the earliest shipment's source) and, per node, the earliest receipt, plus
    the custody ledger: every receipt (time, quantity, sender, shipment) and shipment (time,
    quantity, shipment) of the lot per node, so "received before t" and "shipped before t" are sums over times
    (graph/custody.py asks them).
  * counts, volumes and the hour-of-day / weekday histograms of edges are plain sums; the
    histograms are read without the transaction itself (but with any later ones already applied).
Only the recent-values buffers of the robust statistics (features/supply_chain.py) depend on
order, and they are filtered by time when read.

Snapshots. `to_state()` / `from_state()` turn the graph into plain containers (torch.save'd in
the model registry as the starting point of every worker), the custody ledger included. At the
first transaction that is not already part of a loaded snapshot the graph decides whether the
stream continues the history: it does when that transaction comes no later than the history's
longest quiet spell (`quiet_s`, measured at training: nights, weekends, holidays; at least a day,
times 1.5) after the history's newest event, and not before it by more than that. Then nothing
moves and lots stay watched: a worker started right after `train --data` on the weeks that follow
keeps the custody state of the whole history. Otherwise (the demo, whose simulated clock is
another year, or a real gap) the snapshot is re-anchored: its newest event moves to just before
that transaction, so the history is the recent past, and lots are watched afresh (receipts in
the gap were not seen). Transactions already in the snapshot (by event id, the last
`snapshot_ids` of them) are skipped, so replaying a topic that overlaps the training history
does not count them twice.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import networkx as nx

from schemas.supply_chain import SupplyChainTransaction, SupplyChainVerdict
from stream_app.state_budget import EntityBudget

FIRST_K = 16  # earliest event times kept per entity: counts saturate there
# A confirmed attack implicates a source node with fewer shipments than this (a counterfeiter, a
# front) and an edge with fewer than that (born of the attack).
IMPLICATE_NODE_BELOW, IMPLICATE_EDGE_BELOW = 20, 5
STATE_VERSION = 2  # 2: lots carry the custody ledger (version 1 snapshots still load, without it)
_DAY = 86400.0
_INF = math.inf


def insert_time(times: list[float], t: float, k: int = FIRST_K) -> None:
    """Keep the k earliest times, sorted."""
    if len(times) >= k and t >= times[-1]:
        return
    bisect.insort(times, t)
    if len(times) > k:
        times.pop()


def count_before(times: list[float], t: float) -> int:
    """Transactions strictly before t (exact up to FIRST_K - 1; FIRST_K means 'that many or more')."""
    return bisect.bisect_left(times, t)


def age_hours(times: list[float], t: float) -> float:
    """Hours since the first sighting before t (0 when there is none)."""
    return (t - times[0]) / 3600.0 if times and times[0] < t else 0.0


@dataclass
class LotState:
    product: str
    origin: str  # source of the earliest shipment
    origin_type: str
    origin_ts: float
    holders: dict[str, float] = field(default_factory=dict)  # node -> earliest receipt
    ts: list[float] = field(default_factory=list)
    last_ts: float = -_INF
    # the custody ledger: node -> receipts [(t, quantity, sender, shipment)] and shipments
    # [(t, quantity, shipment)]
    received: dict[str, list[tuple[float, float, str, str]]] = field(default_factory=dict)
    sent: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)
    ledger: bool = True  # False: loaded from a snapshot without quantities (custody by receipts only)


@dataclass(frozen=True)
class LotView:
    """A lot as of one transaction (see TransactionGraph.lot_view)."""

    known: bool  # seen before this transaction
    provenance: bool  # its first shipment, from a manufacturer, was seen (this one included)
    source_received: Optional[float]  # when this transaction's source received it, if it did
    source_is_origin: bool
    movements: int  # earlier shipments of the lot (capped at FIRST_K)


class TransactionGraph:
    def __init__(self, dedupe_capacity: int = 500_000, shipments_capacity: int = 200_000) -> None:
        self.g = nx.DiGraph()
        self.lots: dict[str, LotState] = {}
        self.carriers: dict[str, list[float]] = {}
        self.products: dict[str, list[float]] = {}
        self.routes: dict[tuple[str, str, str], list[float]] = {}
        self.implicated: dict[str, str] = {}  # node -> shipment of a confirmed attack
        self.observed_since = _INF  # earliest event applied (nodes and edges are known since then)
        self.lots_since = _INF  # start of continuous observation of lots (see anchoring)
        self.newest_ts = -_INF
        self.applied = 0  # transactions applied (not counting duplicates)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe_capacity = dedupe_capacity
        self._shipments: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._shipments_capacity = shipments_capacity
        self._pending_verdicts: OrderedDict[str, SupplyChainVerdict] = OrderedDict()
        self._snapshot_ids: frozenset[str] = frozenset()
        self._anchor_pending = False
        self.time_shift = 0.0  # how far a loaded snapshot was moved in time (seconds)
        self.quiet_s = _DAY  # the longest spell without transactions the history had (see anchoring)
        # Which nodes were active last (the state budget; the scorer sets it, see forget_nodes).
        self.budget: Optional[EntityBudget] = None

    # --- upkeep -----------------------------------------------------------------------------------
    def apply(self, tx: SupplyChainTransaction) -> bool:
        """Add one transaction; False when it was applied before (at-least-once delivery)."""
        eid = tx.event_id
        if eid in self._seen or eid in self._snapshot_ids:
            return False
        t = tx.ts.timestamp()
        if self._anchor_pending:
            self._anchor(t)
        self._remember(eid)
        self.applied += 1
        if t < self.observed_since:
            self.observed_since = t
        if t < self.lots_since:
            self.lots_since = t
        if t > self.newest_ts:
            self.newest_ts = t
        g = self.g
        src, dst = tx.source_id, tx.target_id
        if self.budget is not None:
            self.budget.touch(src, t)
            self.budget.touch(dst, t)
        value = tx.quantity * tx.unit_price
        for node, type_, out in ((src, tx.source_type, True), (dst, tx.target_type, False)):
            attrs = g._node.get(node)  # hot path: the attribute dict itself
            if attrs is None:
                g.add_node(node, type=type_, ts=[], n_out=0, n_in=0, qty_out=0.0, qty_in=0.0, value_out=0.0)
                attrs = g._node[node]
            insert_time(attrs["ts"], t)
            if out:
                attrs["n_out"] += 1
                attrs["qty_out"] += tx.quantity
                attrs["value_out"] += value
            else:
                attrs["n_in"] += 1
                attrs["qty_in"] += tx.quantity
        edge = g._succ[src].get(dst)
        if edge is None:
            g.add_edge(src, dst, ts=[], n=0, qty=0.0, value=0.0, last_ts=-_INF, carriers={}, implicated=False,
                       hours=[0] * 24, days=[0] * 7)
            edge = g._succ[src][dst]
        insert_time(edge["ts"], t)
        edge["n"] += 1
        edge["qty"] += tx.quantity
        edge["value"] += value
        edge["last_ts"] = max(edge["last_ts"], t)
        edge["hours"][tx.ts.hour] += 1
        edge["days"][tx.ts.weekday()] += 1
        if tx.carrier_id is not None:
            carriers = edge["carriers"]
            carriers[tx.carrier_id] = min(carriers.get(tx.carrier_id, _INF), t)
            insert_time(self.carriers.setdefault(tx.carrier_id, []), t)
        insert_time(self.products.setdefault(tx.product_id, []), t)
        insert_time(self.routes.setdefault((src, dst, tx.product_id), []), t)
        self._apply_lot(tx, t)
        self._remember_shipment(tx.shipment_id, src, dst)
        return True

    def _apply_lot(self, tx: SupplyChainTransaction, t: float) -> None:
        lot = self.lots.get(tx.lot_id)
        if lot is None:
            lot = self.lots[tx.lot_id] = LotState(tx.product_id, tx.source_id, tx.source_type, t)
        elif t < lot.origin_ts:
            lot.origin, lot.origin_type, lot.origin_ts = tx.source_id, tx.source_type, t
        insert_time(lot.ts, t)
        lot.last_ts = max(lot.last_ts, t)
        if t < lot.holders.get(tx.target_id, _INF):
            lot.holders[tx.target_id] = t
        lot.received.setdefault(tx.target_id, []).append((t, tx.quantity, tx.source_id, tx.shipment_id))
        lot.sent.setdefault(tx.source_id, []).append((t, tx.quantity, tx.shipment_id))

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        if len(self._seen) > self._dedupe_capacity:
            self._seen.popitem(last=False)

    def _remember_shipment(self, shipment: str, src: str, dst: str) -> None:
        self._shipments[shipment] = (src, dst)
        if len(self._shipments) > self._shipments_capacity:
            self._shipments.popitem(last=False)
        pending = self._pending_verdicts.pop(shipment, None)
        if pending is not None:
            self.apply_verdict(pending)

    def apply_verdict(self, verdict: SupplyChainVerdict) -> bool:
        """A confirmed attack implicates what it created: an edge with few shipments (born of the
        attack) no longer counts as established flow for the GNN, and a source with few shipments
        (a counterfeiter, a front) is named by the rules from then on. An established edge or node
        that carried one bad shipment (a diverted order, an insider) is not blacklisted by it.
        A verdict for a shipment not seen yet waits (bounded) for it. Returns whether it
        changed anything now."""
        if verdict.verdict != "confirmed":
            return False
        route = self._shipments.get(verdict.shipment_id)
        if route is None:
            self._pending_verdicts[verdict.shipment_id] = verdict
            if len(self._pending_verdicts) > 10_000:
                self._pending_verdicts.popitem(last=False)
            return False
        src, dst = route
        changed = False
        node = self.g._node.get(src)
        if node is not None and node["n_out"] + node["n_in"] < IMPLICATE_NODE_BELOW:
            self.implicated[src] = verdict.shipment_id
            changed = True
        edge = self.g._succ.get(src, {}).get(dst)
        if edge is not None and edge["n"] < IMPLICATE_EDGE_BELOW:
            edge["implicated"] = changed = True
        return changed

    @property
    def anchor_pending(self) -> bool:
        """A loaded snapshot not yet moved to the stream's time (see _anchor)."""
        return self._anchor_pending

    def is_duplicate(self, event_id: str) -> bool:
        return event_id in self._seen or event_id in self._snapshot_ids

    def prune_lots(self, older_than_s: float) -> int:
        """Forget lots not moved for `older_than_s` of event time (bounded memory)."""
        horizon = self.newest_ts - older_than_s
        stale = [lot_id for lot_id, lot in self.lots.items() if lot.last_ts < horizon]
        for lot_id in stale:
            del self.lots[lot_id]
        return len(stale)

    def forget_nodes(self, nodes: Iterable[str]) -> int:
        """Forget nodes (the state budget evicted them): the nodes, their edges, routes and
        implication. Lots keep their custody entries until the lot itself is pruned (its
        retention bounds them). A forgotten node that trades again is new to the graph."""
        gone = {n for n in nodes if n in self.g._node}
        if not gone:
            return 0
        self.g.remove_nodes_from(gone)
        self.routes = {k: ts for k, ts in self.routes.items() if k[0] not in gone and k[1] not in gone}
        for n in gone:
            self.implicated.pop(n, None)
        if self.budget is not None:
            self.budget.discard(gone)
        return len(gone)

    def last_active(self) -> dict[str, float]:
        """Each node's newest transaction time known to the graph (its edges' last shipments)."""
        out: dict[str, float] = {}
        for u, v, e in self.g.edges(data=True):
            t = e["last_ts"]
            if t > out.get(u, -_INF):
                out[u] = t
            if t > out.get(v, -_INF):
                out[v] = t
        return out

    def bound_memory(self, dedupe_events: int, shipments: int) -> None:
        """How many transaction ids (duplicate check) and shipments (verdict joins) to keep."""
        self._dedupe_capacity, self._shipments_capacity = dedupe_events, shipments
        while len(self._seen) > dedupe_events:
            self._seen.popitem(last=False)
        while len(self._shipments) > shipments:
            self._shipments.popitem(last=False)

    # --- questions, as of a transaction's event time ---------------------------------------------------
    def node(self, node: str) -> Optional[dict[str, Any]]:
        return self.g._node.get(node)

    def edge(self, src: str, dst: str) -> Optional[dict[str, Any]]:
        succ = self.g._succ.get(src)
        return succ.get(dst) if succ is not None else None

    def lot_view(self, tx: SupplyChainTransaction, t: float) -> LotView:
        lot = self.lots.get(tx.lot_id)
        if lot is None:
            return LotView(False, False, None, False, 0)
        earlier = count_before(lot.ts, t)
        received = lot.holders.get(tx.source_id)
        return LotView(
            known=earlier > 0,
            provenance=lot.origin_type == "manufacturer" and lot.origin_ts <= t,
            source_received=received if received is not None and received < t else None,
            source_is_origin=lot.origin == tx.source_id and lot.origin_ts <= t,
            movements=earlier,
        )

    def lot_watched(self, view: LotView, t: float, watch_s: float) -> bool:
        """Whether a lot's custody evidence at `t` can be trusted: its first shipment was seen,
        or lots have been watched for `watch_s` (a lot never seen then has no provenance)."""
        return view.provenance or t - self.lots_since >= watch_s

    def suppliers_of(self, node: str, limit: int = 3) -> list[tuple[str, int]]:
        """The node's biggest suppliers by shipments (for explanations)."""
        pred = self.g._pred.get(node, {})
        ranked = sorted(((u, e["n"]) for u, e in pred.items() if not e["implicated"]), key=lambda x: -x[1])
        return ranked[:limit]

    def customers_of(self, node: str, limit: int = 3) -> list[tuple[str, int]]:
        succ = self.g._succ.get(node, {})
        ranked = sorted(((v, e["n"]) for v, e in succ.items() if not e["implicated"]), key=lambda x: -x[1])
        return ranked[:limit]

    @property
    def nodes(self) -> int:
        return self.g.number_of_nodes()

    @property
    def edges(self) -> int:
        return self.g.number_of_edges()

    # --- snapshots ------------------------------------------------------------------------------------
    def to_state(self, lot_retention_s: float = 60 * 86400.0, snapshot_ids: int = 50_000) -> dict[str, Any]:
        """Plain containers (torch.save with weights_only loading): the graph as the scorer needs
        it. Lots idle for longer than `lot_retention_s` are left out."""
        horizon = self.newest_ts - lot_retention_s
        nodes = [[n, a["type"], a["ts"], a["n_out"], a["n_in"], a["qty_out"], a["qty_in"], a["value_out"]]
                 for n, a in self.g.nodes(data=True)]
        edges = [[u, v, e["ts"], e["n"], e["qty"], e["value"], e["last_ts"], e["carriers"], e["implicated"],
                  e["hours"], e["days"]] for u, v, e in self.g.edges(data=True)]
        lots = [[lot_id, l.product, l.origin, l.origin_type, l.origin_ts, l.holders, l.ts, l.last_ts,
                 {n: [list(r) for r in rs] for n, rs in l.received.items()} if l.ledger else None,
                 {n: [list(r) for r in rs] for n, rs in l.sent.items()} if l.ledger else None]
                for lot_id, l in self.lots.items() if l.last_ts >= horizon]
        ids = list(self._seen)[-snapshot_ids:] + list(self._snapshot_ids)[: max(0, snapshot_ids - len(self._seen))]
        shipments = list(self._shipments.items())[-snapshot_ids:]
        return {
            "version": STATE_VERSION,
            "observed_since": self.observed_since,
            "lots_since": self.lots_since,
            "newest_ts": self.newest_ts,
            "quiet_s": self.quiet_s,
            "applied": self.applied,
            "nodes": nodes,
            "edges": edges,
            "lots": lots,
            "carriers": [[c, ts] for c, ts in self.carriers.items()],
            "products": [[p, ts] for p, ts in self.products.items()],
            "routes": [[s, d, p, ts] for (s, d, p), ts in self.routes.items()],
            "implicated": [[n, s] for n, s in self.implicated.items()],
            "event_ids": ids,
            # the latest shipments' routes: a verdict read after the snapshot still implicates
            "shipments": [[shipment, src, dst] for shipment, (src, dst) in shipments],
            # confirmed verdicts waiting for their shipment
            "pending_verdicts": [v.model_dump(mode="json") for v in self._pending_verdicts.values()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], anchor: bool = True) -> "TransactionGraph":
        """Rebuild a snapshot; with `anchor`, re-anchored in time at the first new transaction."""
        if state.get("version") not in (1, STATE_VERSION):
            raise ValueError(f"graph snapshot version {state.get('version')!r} is not {STATE_VERSION}")
        graph = cls()
        g = graph.g
        for n, type_, ts, n_out, n_in, qty_out, qty_in, value_out in state["nodes"]:
            g.add_node(n, type=type_, ts=list(ts), n_out=n_out, n_in=n_in, qty_out=qty_out, qty_in=qty_in, value_out=value_out)
        for u, v, ts, n, qty, value, last_ts, carriers, implicated, hours, days in state["edges"]:
            g.add_edge(u, v, ts=list(ts), n=n, qty=qty, value=value, last_ts=last_ts, carriers=dict(carriers),
                       implicated=implicated, hours=list(hours), days=list(days))
        for lot_id, product, origin, origin_type, origin_ts, holders, ts, last_ts, *ledger in state["lots"]:
            received, sent = ledger if ledger else (None, None)
            graph.lots[lot_id] = LotState(
                product, origin, origin_type, origin_ts, dict(holders), list(ts), last_ts,
                {n: [(a, q, s, k) for a, q, s, k in rs] for n, rs in (received or {}).items()},
                {n: [(a, q, k) for a, q, k in rs] for n, rs in (sent or {}).items()}, ledger=received is not None,
            )
        graph.carriers = {c: list(ts) for c, ts in state["carriers"]}
        graph.products = {p: list(ts) for p, ts in state["products"]}
        graph.routes = {(s, d, p): list(ts) for s, d, p, ts in state["routes"]}
        graph.implicated = {n: s for n, s in state["implicated"]}
        graph.observed_since = state["observed_since"]
        graph.lots_since = state["lots_since"]
        graph.newest_ts = state["newest_ts"]
        graph.quiet_s = float(state.get("quiet_s", _DAY))
        graph.applied = state["applied"]
        graph._snapshot_ids = frozenset(state["event_ids"])
        for shipment, src, dst in state.get("shipments", ()):
            graph._shipments[shipment] = (src, dst)
        for raw in state.get("pending_verdicts", ()):
            verdict = SupplyChainVerdict.model_validate(raw)
            graph._pending_verdicts[verdict.shipment_id] = verdict
        graph._anchor_pending = anchor and graph.applied > 0
        return graph

    @property
    def continuity_s(self) -> float:
        """How long after the history's end a stream still continues it (see anchoring)."""
        return max(_DAY, 1.5 * self.quiet_s)

    def _anchor(self, t: float) -> None:
        """Once, at the first new transaction: nothing moves when the stream continues the history
        (module docstring); otherwise move every stored time by (t - newest snapshot time) - 1 s
        and watch lots afresh (lots_since restarts at t): lots received in the gap were not seen,
        so their provenance is unknown until lots have been watched again."""
        self._anchor_pending = False
        after = t - self.newest_ts
        if -self.quiet_s <= after <= self.continuity_s:
            return
        delta = after - 1.0
        shift = lambda ts: [x + delta for x in ts]  # noqa: E731
        for _, attrs in self.g.nodes(data=True):
            attrs["ts"] = shift(attrs["ts"])
        for _, _, e in self.g.edges(data=True):
            e["ts"] = shift(e["ts"])
            e["last_ts"] += delta
            e["carriers"] = {c: x + delta for c, x in e["carriers"].items()}
        for lot in self.lots.values():
            lot.origin_ts += delta
            lot.ts = shift(lot.ts)
            lot.last_ts += delta
            lot.holders = {n: x + delta for n, x in lot.holders.items()}
            lot.received = {n: [(x + delta, q, s, k) for x, q, s, k in rs] for n, rs in lot.received.items()}
            lot.sent = {n: [(x + delta, q, k) for x, q, k in rs] for n, rs in lot.sent.items()}
        for table in (self.carriers, self.products, self.routes):
            for key, ts in table.items():
                table[key] = shift(ts)  # type: ignore[index]
        self.observed_since += delta
        self.newest_ts += delta
        self.lots_since = t
        self.time_shift = delta
        if self.budget is not None:
            self.budget.shift(delta)


def replay(graph: TransactionGraph, transactions: Iterable[SupplyChainTransaction]) -> int:
    return sum(graph.apply(tx) for tx in transactions)
