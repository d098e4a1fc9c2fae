"""Simple baselines on the raw fields, fitted on the same unlabelled history and run over the
test weeks in time order (both keep learning as they go, as a streaming detector would).

edge-robust-z   robust z of log quantity (large only) and log unit price against the edge's
                own recent shipments (source, target, product; the last 30), else the product's
                shipments of that type pair; score = the larger |z|
new-edge-or-z   the same z, and any shipment on an edge (source, target) never used before
                ranked above every z: the rule of thumb "new trading partner or odd amount"
raw-halfspace   River HalfSpaceTrees (a streaming isolation forest) on log quantity, log unit
                price and the hour and weekday (cyclic), scaled by the history's range
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from datetime import datetime
from typing import Any, Callable

import numpy as np
from river.anomaly import HalfSpaceTrees

_WINDOW, _MIN = 30, 5


class EdgeRobustZ:
    def __init__(self) -> None:
        self.edges: dict[tuple[str, str, str], deque[tuple[float, float]]] = defaultdict(lambda: deque(maxlen=_WINDOW))
        self.products: dict[tuple[str, str, str], deque[tuple[float, float]]] = defaultdict(lambda: deque(maxlen=200))

    def _one(self, r: dict[str, Any]) -> float:
        q, p = math.log(r["quantity"]), math.log(max(r["unit_price"], 1e-6))
        edge = self.edges[r["source_id"], r["target_id"], r["product_id"]]
        ref = edge if len(edge) >= _MIN else self.products[r["product_id"], r["source_type"], r["target_type"]]
        z = 0.0
        if len(ref) >= _MIN:
            qs, ps = np.array([x[0] for x in ref]), np.array([x[1] for x in ref])
            for value, values, floor, large_only in ((q, qs, 0.3, True), (p, ps, 0.02, False)):
                med = float(np.median(values))
                mad = 1.4826 * float(np.median(np.abs(values - med)))
                zz = (value - med) / max(mad, floor)
                z = max(z, zz if large_only else abs(zz))
        edge.append((q, p))
        self.products[r["product_id"], r["source_type"], r["target_type"]].append((q, p))
        return z

    def fit(self, rows: list[dict[str, Any]]) -> np.ndarray:
        return np.array([self._one(r) for r in rows])

    def score(self, rows: list[dict[str, Any]]) -> np.ndarray:
        return np.array([self._one(r) for r in rows])


class NewEdgeOrZ(EdgeRobustZ):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def _one(self, r: dict[str, Any]) -> float:
        edge = (r["source_id"], r["target_id"])
        new = edge not in self.seen
        self.seen.add(edge)
        return super()._one(r) + (1000.0 if new else 0.0)


class RawHalfSpace:
    def __init__(self) -> None:
        self.model = HalfSpaceTrees(n_trees=25, height=8, window_size=1000, seed=0)
        self.low = self.high = np.zeros(6)

    @staticmethod
    def _raw(r: dict[str, Any]) -> np.ndarray:
        ts = datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
        h, d = 2 * math.pi * (ts.hour + ts.minute / 60) / 24, 2 * math.pi * ts.weekday() / 7
        return np.array([math.log(r["quantity"]), math.log(max(r["unit_price"], 1e-6)), math.sin(h), math.cos(h),
                         math.sin(d), math.cos(d)])

    def _x(self, row: np.ndarray) -> dict[int, float]:
        return dict(enumerate(np.clip((row - self.low) / np.maximum(self.high - self.low, 1e-9), 0, 1).tolist()))

    def fit(self, rows: list[dict[str, Any]]) -> np.ndarray:
        x = np.stack([self._raw(r) for r in rows])
        self.low, self.high = x.min(axis=0), x.max(axis=0)
        return self._run(x)

    def score(self, rows: list[dict[str, Any]]) -> np.ndarray:
        return self._run(np.stack([self._raw(r) for r in rows]))

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(len(x))
        for i, row in enumerate(x):
            features = self._x(row)
            out[i] = self.model.score_one(features)
            self.model.learn_one(features)
        return out


BASELINES: dict[str, Callable[[], Any]] = {"edge-robust-z": EdgeRobustZ, "new-edge-or-z": NewEdgeOrZ,
                                           "raw-halfspace": RawHalfSpace}
