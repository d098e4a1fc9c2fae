"""Multi-task LSTM for predictive maintenance: failure within a horizon + time to failure.

The trunk is one LSTM; on top sit K small heads trained on different bootstrap resamples.
Their spread is the model's own uncertainty (a cheap deep-ensemble: one trunk step per
reading, K tiny linear heads), which feeds the confidence figure.

Streaming use: `forward` over a (B, 1, F) batch with the machines' (h, c) stacked along the
batch axis is one stateful step per reading; training runs whole sequences from the machine's
first reading, so both see the same recurrence.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


class MaintenanceLSTM(nn.Module):
    def __init__(
        self,
        n_inputs: int,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if n_inputs < 1 or hidden < 1 or layers < 1 or heads < 1:
            raise ValueError("n_inputs, hidden, layers and heads must be >= 1")
        self.n_inputs = n_inputs
        self.hidden = hidden
        self.layers = layers
        self.heads = heads
        self.lstm = nn.LSTM(n_inputs, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        # Per head: one failure logit and one time-to-failure output (fraction of the TTF cap).
        self.failure_heads = nn.Linear(hidden, heads)
        self.ttf_heads = nn.Linear(hidden, heads)

    def init_state(self, batch: int, device: Optional[torch.device] = None) -> State:
        shape = (self.layers, batch, self.hidden)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def forward(
        self, x: torch.Tensor, state: Optional[State] = None
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """x (B, T, F) -> failure logits (B, T, K), ttf fraction in [0, 1] (B, T, K), new state."""
        out, new_state = self.lstm(x, state)
        features = self.dropout(out)
        return self.failure_heads(features), torch.sigmoid(self.ttf_heads(features)), new_state

    def hyperparameters(self) -> dict[str, int | float]:
        return {
            "n_inputs": self.n_inputs,
            "hidden": self.hidden,
            "layers": self.layers,
            "heads": self.heads,
            "dropout": self.dropout.p,
        }
