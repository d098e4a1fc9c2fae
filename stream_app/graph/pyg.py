"""The transaction graph as a torch-geometric graph: established flows only, with node features
a GraphSAGE can tell regions apart by.

Established flows: edges with at least `min_edge_count` shipments that no confirmed attack
implicated. A one-off shipment (a diversion, a counterfeiter's first deliveries) must not become
message-passing evidence for its own plausibility; a new legitimate supplier becomes established
after a few deliveries. Nodes without an established edge are left out: the scorer treats them as
cold (see scoring/supply_chain.py).

Node features: node type (one-hot), log shipments out and in, and anchor proximity 0.5^hops
(undirected, over established flows; 0 when unreachable) to the K anchors chosen at training (the
best-connected nodes). Type and volume alone make every pharmacy look alike, so a GNN could not
tell a pharmacy of this region from one three regions away; distances to fixed anchors are
positional features that stay meaningful when the graph changes (unlike Laplacian eigenvectors,
whose signs and order change from one refresh to the next) and exist for new nodes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import shortest_path
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from stream_app.graph.state import TransactionGraph

NODE_TYPES = ("manufacturer", "distributor", "wholesaler", "pharmacy", "hospital", "carrier", "other")
_TYPE_INDEX = {t: i for i, t in enumerate(NODE_TYPES)}


@dataclass(frozen=True)
class GraphSnapshot:
    """Established flows at one moment, as arrays (cheap to take in the inference thread; the
    features and the GNN run on it elsewhere)."""

    nodes: list[str]
    types: np.ndarray  # (N,) index into NODE_TYPES
    n_out: np.ndarray  # (N,) shipments out (all, not only established)
    n_in: np.ndarray
    edges: np.ndarray  # (2, E) int64, directed source -> target
    counts: np.ndarray  # (E,) shipments per edge

    @property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.nodes)}


def snapshot(graph: TransactionGraph, min_edge_count: int = 3) -> GraphSnapshot:
    index: dict[str, int] = {}
    src, dst, counts = [], [], []
    for u, v, e in graph.g.edges(data=True):
        if e["n"] < min_edge_count or e["implicated"]:
            continue
        src.append(index.setdefault(u, len(index)))
        dst.append(index.setdefault(v, len(index)))
        counts.append(e["n"])
    nodes = list(index)
    attrs = graph.g._node
    return GraphSnapshot(
        nodes=nodes,
        types=np.array([_TYPE_INDEX.get(attrs[n]["type"], _TYPE_INDEX["other"]) for n in nodes], dtype=np.int64),
        n_out=np.array([attrs[n]["n_out"] for n in nodes], dtype=np.float32),
        n_in=np.array([attrs[n]["n_in"] for n in nodes], dtype=np.float32),
        edges=np.array([src, dst], dtype=np.int64).reshape(2, -1),
        counts=np.array(counts, dtype=np.float32),
    )


def choose_anchors(snap: GraphSnapshot, k: int = 24) -> list[str]:
    """The k nodes with the most distinct established neighbours (ties by name, deterministic)."""
    degree = np.bincount(snap.edges.ravel(), minlength=len(snap.nodes))
    order = sorted(range(len(snap.nodes)), key=lambda i: (-degree[i], snap.nodes[i]))
    return [snap.nodes[i] for i in order[:k]]


def anchor_proximity(snap: GraphSnapshot, anchors: Sequence[str]) -> np.ndarray:
    """(N, K) 0.5 ** hops to each anchor over undirected established flows (0: unreachable or
    the anchor is gone)."""
    n = len(snap.nodes)
    out = np.zeros((n, len(anchors)), dtype=np.float32)
    index = snap.index
    present = [(j, index[a]) for j, a in enumerate(anchors) if a in index]
    if not present or n == 0:
        return out
    adj = coo_matrix((np.ones(snap.edges.shape[1]), (snap.edges[0], snap.edges[1])), shape=(n, n)).tocsr()
    hops = shortest_path(adj, directed=False, unweighted=True, indices=[i for _, i in present])
    with np.errstate(over="ignore"):
        prox = np.where(np.isfinite(hops), 0.5 ** np.minimum(hops, 60.0), 0.0)
    out[:, [j for j, _ in present]] = prox.T
    return out


def node_features(snap: GraphSnapshot, anchors: Sequence[str]) -> np.ndarray:
    onehot = np.zeros((len(snap.nodes), len(NODE_TYPES)), dtype=np.float32)
    onehot[np.arange(len(snap.nodes)), snap.types] = 1.0
    volume = np.stack([np.log1p(snap.n_out), np.log1p(snap.n_in)], axis=1) / 8.0
    return np.concatenate([onehot, volume.astype(np.float32), anchor_proximity(snap, anchors)], axis=1)


def feature_count(anchors: Sequence[str]) -> int:
    return len(NODE_TYPES) + 2 + len(anchors)


def to_data(snap: GraphSnapshot, anchors: Sequence[str]) -> Data:
    """torch-geometric graph: x (N, F) and edge_index with both directions of every flow (a
    node's embedding reflects its suppliers and its customers; direction lives in the decoder)."""
    edge_index = torch.from_numpy(snap.edges)
    if edge_index.numel():
        edge_index = to_undirected(edge_index, num_nodes=len(snap.nodes))
    return Data(x=torch.from_numpy(node_features(snap, anchors)), edge_index=edge_index, num_nodes=len(snap.nodes))
