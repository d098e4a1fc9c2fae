"""GraphSAGE node encoder and a directed edge decoder: the plausibility of a flow source ->
target, trained self-supervised (edge prediction with negative sampling) on normal flows."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.nn import SAGEConv


class SupplyChainGNN(nn.Module):
    def __init__(self, n_inputs: int, hidden: int = 64, embedding: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_inputs, self.hidden, self.embedding, self.dropout = n_inputs, hidden, embedding, dropout
        self.conv1 = SAGEConv(n_inputs, hidden)
        self.conv2 = SAGEConv(hidden, embedding)
        self.skip = nn.Linear(n_inputs, embedding)  # a node's own features reach the embedding directly
        self.decoder = nn.Sequential(nn.Linear(3 * embedding, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_inputs": self.n_inputs, "hidden": self.hidden, "embedding": self.embedding, "dropout": self.dropout}

    def encode(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x, edge_index))
        h = nn.functional.dropout(h, self.dropout, self.training)
        return self.conv2(h, edge_index) + self.skip(x)

    def decode(self, z_source: torch.Tensor, z_target: torch.Tensor) -> torch.Tensor:
        """Logit that source -> target is a normal flow; (B, D) x (B, D) -> (B,). Not symmetric:
        a wholesaler supplying a pharmacy is not a pharmacy supplying the wholesaler."""
        return self.decoder(torch.cat([z_source, z_target, z_source * z_target], dim=-1)).squeeze(-1)
