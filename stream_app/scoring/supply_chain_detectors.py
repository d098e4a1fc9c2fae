"""The four supply-chain detectors as the scorer runs them (fitting lives in
stream_app/training/supply_chain.py). Each maps a batch to one statistic per transaction, larger
meaning more unusual:

  gnn     implausibility of the flow source -> target: -log sigmoid(decoder(z_source, z_target))
          with node embeddings looked up in the current table (graph/embeddings.py). An endpoint
          without an embedding (no established flow yet: a brand-new node) gets `cold_statistic`,
          the median implausibility of random non-edges in training: as plausible as a random
          pair, which is what an unknown partner is.
  vae     mean over features of the squared reconstruction error of the standardized features,
          each divided by its mean on training data (so every feature counts on its own scale);
          the per-feature terms are the explanation's contributions.
  hst     River HalfSpaceTrees anomaly score on the features scaled to [0, 1] by their training
          range. Frozen after training (its reference window is the last `window` normal
          training rows), so the calibration below stays valid; retrain to adapt it.
  robust  robust z of quantity (large only) and price, against the route (or the product when
          the route is young) and against the product, and how rare the hour is for this type of
          flow, combined as a root sum of squares (features/supply_chain.py).
  custody the chain-of-custody facts the lot ledger shows (graph/custody.py: a lot shipped by a
          node that never received it, received twice, shipped beyond what was received, passed
          on too fast), as a bit set; the ensemble turns it into the surprise of the rarest fact
          under normal traffic (SignalCalibration). Models trained before it ignore it.
  lanes   facts about the shipment's edge and carrier (graph/lanes.py: a carrier never seen, a
          carrier new on an established edge, a first trade between two busy parties), calibrated
          the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from river.anomaly import HalfSpaceTrees

from stream_app.features.supply_chain import FEATURES, INDEX
from stream_app.graph.embeddings import EmbeddingTable
from stream_app.models.supply_chain_gnn import SupplyChainGNN
from stream_app.models.supply_chain_vae import TransactionVAE

DETECTORS = ("gnn", "vae", "hst", "robust", "custody", "lanes")
FACT_DETECTORS = ("custody", "lanes")  # statistics that are bit sets of facts (SignalCalibration)


TIMING_SCALE = 3.0


def timing_z(x: np.ndarray) -> np.ndarray:
    """How rare this hour is for this kind of flow (wholesaler -> pharmacy, ...) in training, in
    decades beyond 1 %: 0 when at least 1 % of the pair's shipments came within an hour of it, 2
    when none did; times TIMING_SCALE to sit with the z-scores."""
    share = 10.0 ** (4.0 * x[:, INDEX["type_hour_share"]].astype(np.float64)) - 1e-4  # undo the feature's log
    return TIMING_SCALE * np.clip(-np.log10(np.maximum(share, 1e-4)) - 2.0, 0.0, 2.0)


def robust_statistic(x: np.ndarray) -> np.ndarray:
    """Large quantities and prices off either way (a small quantity is the rest of a lot), against
    the route and against the product: an attack is off on both, a big customer's normal order
    only against the product, and a route of small, scattered counts (1, 2, 5 units) has a wide
    scale of its own. Plus the timing of the flow's type (timing_z)."""
    x = x.astype(np.float64)
    qty = np.maximum(x[:, [INDEX["qty_z"], INDEX["qty_z_product"]]], 0.0)
    price = x[:, [INDEX["price_z"], INDEX["price_z_product"]]]
    return np.sqrt((qty**2).sum(axis=1) + (price**2).sum(axis=1) + timing_z(x) ** 2)


@dataclass
class VAEDetector:
    model: TransactionVAE
    mean: np.ndarray  # (F,) standardization of the raw features
    std: np.ndarray
    residual: np.ndarray  # (F,) mean squared reconstruction error per feature on training rows

    def terms(self, x: np.ndarray) -> np.ndarray:
        """(N, F) raw features -> (N, F) per-feature error terms (their mean is the statistic)."""
        z = (x - self.mean) / self.std
        with torch.no_grad():
            zt = torch.from_numpy(z.astype(np.float32))
            recon = self.model.reconstruct(zt).numpy()
        return ((z - recon) ** 2) / self.residual

    @staticmethod
    def statistic(terms: np.ndarray) -> np.ndarray:
        return terms.mean(axis=1)

    def to_manifest(self) -> dict[str, Any]:
        return {"hyperparameters": self.model.hyperparameters(), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "residual": self.residual.tolist()}

    @classmethod
    def from_manifest(cls, d: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> "VAEDetector":
        model = TransactionVAE(**d["hyperparameters"])
        model.load_state_dict(state_dict)
        arrays = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "std", "residual")]
        if model.n_inputs != len(FEATURES) or any(a.shape != (len(FEATURES),) for a in arrays):
            raise ValueError(f"VAE expects {model.n_inputs} features, the feature list has {len(FEATURES)}")
        if (arrays[1] <= 0).any() or (arrays[2] <= 0).any():
            raise ValueError("VAE scales must be positive")
        return cls(model.eval(), *arrays)


class HSTDetector:
    """River HalfSpaceTrees on features scaled into [0, 1]; rebuilt from its reference window
    (the trees depend only on the seed, the masses only on the last complete window)."""

    def __init__(self, low: np.ndarray, high: np.ndarray, n_trees: int = 25, height: int = 8, window: int = 2000,
                 seed: int = 0) -> None:
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        span = self.high - self.low
        self.span = np.where(span > 1e-9, span, 1.0)
        self.n_trees, self.height, self.window, self.seed = n_trees, height, window, seed
        self.names = [f"f{i}" for i in range(len(self.low))]
        self.model = HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window, seed=seed,
                                    limits={n: (0.0, 1.0) for n in self.names})
        self.reference = np.zeros((0, len(self.low)), dtype=np.float32)
        self._trees: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # `_compile`d after `fit`

    def scaled(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.low) / self.span, 0.0, 1.0)

    def fit(self, x: np.ndarray) -> None:
        """Learn rows in order; the reference becomes the last complete window."""
        names, learn = self.names, self.model.learn_one
        for row in self.scaled(x).tolist():
            learn(dict(zip(names, row)))
        complete = (len(x) // self.window) * self.window
        if complete:
            self.reference = np.asarray(x[complete - self.window: complete], dtype=np.float32)
        self._trees = _compile(self.model, self.names) if self.model.trees and not self.model._first_window else None

    @property
    def ready(self) -> bool:
        return len(self.reference) == self.window

    def statistic(self, x: np.ndarray) -> np.ndarray:
        """River's `score_one` for each row, computed for all rows and trees at once on the trees'
        arrays (~2 us a row instead of ~57: it was a quarter of a transaction's scoring). The same
        walk and the same sums (whole numbers, exact in floats), so the same scores;
        tests/unit/test_supply_chain_detectors.py holds it to River's."""
        if self._trees is None:  # no complete window learnt: River scores 0
            return np.zeros(len(x), dtype=np.float64)
        feature, threshold, r_mass = self._trees
        rows = self.scaled(np.asarray(x, dtype=np.float64))
        n, trees = len(rows), feature.shape[0]
        tree = np.arange(trees)[None, :]
        node = np.zeros((n, trees), dtype=np.int64)
        active = np.ones((n, trees), dtype=bool)
        total = np.zeros((n, trees), dtype=np.float64)
        size_limit, weight = 0.1 * self.model.window_size, 1.0
        for _ in range(self.height):
            r = r_mass[tree, node]
            total += np.where(active, r * weight, 0.0)
            active &= r >= size_limit  # River stops the walk below the size limit
            left = rows[np.arange(n)[:, None], feature[tree, node]] < threshold[tree, node]
            node = np.where(left, 2 * node + 1, 2 * node + 2)
            weight *= 2
        total += np.where(active, r_mass[tree, node] * weight, 0.0)
        return 1.0 - total.sum(axis=1) / self.model._max_score

    def to_manifest(self) -> dict[str, Any]:
        return {"low": self.low.tolist(), "high": self.high.tolist(), "n_trees": self.n_trees, "height": self.height,
                "window": self.window, "seed": self.seed}

    @classmethod
    def from_manifest(cls, d: dict[str, Any], reference: np.ndarray) -> "HSTDetector":
        det = cls(np.asarray(d["low"]), np.asarray(d["high"]), d["n_trees"], d["height"], d["window"], d["seed"])
        if det.low.shape != (len(FEATURES),) or reference.shape != (det.window, len(FEATURES)):
            raise ValueError(f"HalfSpaceTrees reference window has shape {reference.shape}, expected "
                             f"({det.window}, {len(FEATURES)})")
        det.fit(reference)
        return det


def _compile(model: HalfSpaceTrees, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each tree as heap-ordered arrays (node i's children at 2i+1 and 2i+2): the split feature's
    column in `names`, the threshold, and the mass of the reference window (River's `r_mass`)."""
    column_of = {name: i for i, name in enumerate(names)}
    size = 2 ** (model.height + 1) - 1
    feature = np.zeros((model.n_trees, size), dtype=np.int64)
    threshold = np.zeros((model.n_trees, size), dtype=np.float64)
    r_mass = np.zeros((model.n_trees, size), dtype=np.float64)
    for t, root in enumerate(model.trees):
        todo = [(root, 0)]
        while todo:
            node, i = todo.pop()
            r_mass[t, i] = node.r_mass
            children = getattr(node, "children", None)
            if children:  # a branch (leaves have none)
                if node.feature not in column_of:
                    raise ValueError(f"HalfSpaceTrees split on an unknown feature {node.feature!r}")
                feature[t, i], threshold[t, i] = column_of[node.feature], node.threshold
                todo += [(children[0], 2 * i + 1), (children[1], 2 * i + 2)]
    return feature, threshold, r_mass


@dataclass
class EdgeDetector:
    model: SupplyChainGNN
    cold_statistic: float

    def statistic(self, table: EmbeddingTable | None, sources: Sequence[str], targets: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(implausibility (N,), cold (N,) bool: an endpoint has no embedding)."""
        n = len(sources)
        stat = np.full(n, self.cold_statistic, dtype=np.float64)
        if table is None or n == 0:
            return stat, np.ones(n, dtype=bool)
        rs, rt = table.rows(sources), table.rows(targets)
        warm = (rs >= 0) & (rt >= 0)
        if warm.any():
            idx = np.flatnonzero(warm)
            with torch.no_grad():
                zs = table.z[torch.from_numpy(rs[idx])]
                zt = table.z[torch.from_numpy(rt[idx])]
                logit = self.model.decode(zs, zt).double().numpy()
            stat[idx] = np.logaddexp(0.0, -logit)  # -log sigmoid(logit), stable
        return stat, ~warm


def plausibility(statistic: float) -> float:
    """The GNN statistic back as a probability that the flow is normal."""
    return math.exp(-statistic)
