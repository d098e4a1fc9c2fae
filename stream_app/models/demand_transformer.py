"""A small Temporal Fusion Transformer (Lim et al. 2021) for daily demand quantiles.

Inputs (see stream_app.features.demand): observed past inputs (B, L, P), known inputs over the
past and the horizon (B, L + H, K), a market index (B,) and static reals (B, R).

    static covariate encoder     market embedding + static reals -> GRN -> four contexts
    variable selection           per time step, softmax weights over the inputs (conditioned on
                                 the static context) mix one linear embedding per input
    local processing             LSTM encoder over the past, LSTM decoder over the horizon
                                 (state from the encoder), gated skip over the embeddings
    static enrichment            GRN with the static context
    interpretable attention      causal multi-head self-attention whose heads share the value
                                 projection, so the head-averaged weights say which days count
    output                       per horizon day three quantiles (P10, P50, P90), monotone by
                                 construction (P50 plus/minus softplus gaps); and quantiles of
                                 the 7- and 30-day totals (as a daily mean) from pooled horizon
                                 states: the quantile of a sum is not the sum of quantiles

Everything is in units of the series' scale (features.demand.series_scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

QUANTILES = (0.1, 0.5, 0.9)
TOTAL_WINDOWS = (7, 30)


class GatedResidual(nn.Module):
    """TFT's gated residual network: LayerNorm(skip(x) + GLU(W2 ELU(W1 x + W3 c)))."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, d_context: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.context = nn.Linear(d_context, d_hidden, bias=False) if d_context else None
        self.fc2 = nn.Linear(d_hidden, 2 * d_out)
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.fc1(x)
        if self.context is not None and context is not None:
            h = h + self.context(context)
        h = self.fc2(self.dropout(F.elu(h)))
        return self.norm(self.skip(x) + F.glu(h, dim=-1))


class VariableSelection(nn.Module):
    """n scalar inputs per step -> (d_model embedding, softmax weights over the n inputs)."""

    def __init__(self, n_vars: int, d_model: int, d_context: int, dropout: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_vars, d_model) / math.sqrt(n_vars))
        self.bias = nn.Parameter(torch.zeros(n_vars, d_model))
        self.selector = GatedResidual(n_vars, d_model, n_vars, d_context, dropout)
        self.out = GatedResidual(d_model, d_model, d_model, dropout=dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, n), context (B, d) -> (B, T, d), weights (B, T, n)."""
        weights = torch.softmax(self.selector(x, context[:, None, :]), dim=-1)
        # sum_v w_v (x_v W_v + b_v), as two matrix products (no (B, T, n, d) intermediate)
        return self.out((weights * x) @ self.weight + weights @ self.bias), weights


class InterpretableAttention(nn.Module):
    """Multi-head attention with one value projection shared by the heads (TFT): the mean of
    the heads' weights is then the weight of each day in the output."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError("d_model must be a multiple of heads")
        self.heads, self.d_head = heads, d_model // heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, self.d_head)
        self.o = nn.Linear(self.d_head, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, Tq, d), keys (B, Tk, d) (values are the keys), mask (Tq, Tk) True where
        attention is allowed -> (B, Tq, d), head-averaged weights (B, Tq, Tk)."""
        B, Tq, _ = queries.shape
        Tk = keys.shape[1]
        q = (self.q(queries) / math.sqrt(self.d_head)).view(B, Tq, self.heads, self.d_head).transpose(1, 2)
        k = self.k(keys).view(B, Tk, self.heads, self.d_head).transpose(1, 2)
        weights = torch.softmax((q @ k.transpose(-1, -2)).masked_fill(~mask, float("-inf")), dim=-1).mean(dim=1)
        return self.dropout(self.o(weights @ self.v(keys))), weights


@dataclass
class DemandOutput:
    quantiles: torch.Tensor  # (B, H, 3) P10, P50, P90 per horizon day, in scale units
    totals: torch.Tensor  # (B, 2, 3) quantiles of the 7- and 30-day totals, as a daily mean in scale units
    attention: torch.Tensor  # (B, H, L + H) head-averaged weights of the horizon days' queries
    past_weights: torch.Tensor  # (B, L, P + K) variable selection over the past inputs
    future_weights: torch.Tensor  # (B, H, K) variable selection over the known future inputs


def _monotone(raw: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> P10 <= P50 <= P90."""
    mid = raw[..., 1]
    return torch.stack([mid - F.softplus(raw[..., 0]), mid, mid + F.softplus(raw[..., 2])], dim=-1)


class DemandTransformer(nn.Module):
    def __init__(
        self,
        n_observed: int,
        n_known: int,
        n_static: int,
        n_markets: int,
        history: int = 90,
        horizon: int = 30,
        d_model: int = 32,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if min(n_observed, n_known, history, horizon, d_model, heads, layers) < 1 or n_static < 0 or n_markets < 0:
            raise ValueError("sizes must be positive")
        if horizon < max(TOTAL_WINDOWS):
            raise ValueError(f"horizon must cover the {max(TOTAL_WINDOWS)}-day total")
        self.config = dict(n_observed=n_observed, n_known=n_known, n_static=n_static, n_markets=n_markets,
                           history=history, horizon=horizon, d_model=d_model, heads=heads, layers=layers, dropout=dropout)
        self.history, self.horizon = history, horizon
        d = d_model
        self.market = nn.Embedding(n_markets + 1, d)  # 0: a market not seen in training
        self.static_in = nn.Linear(n_static, d) if n_static else None
        self.static = nn.ModuleList([GatedResidual(d, d, d, dropout=dropout) for _ in range(4)])
        self.past_select = VariableSelection(n_observed + n_known, d, d, dropout)
        self.future_select = VariableSelection(n_known, d, d, dropout)
        self.encoder = nn.LSTM(d, d, batch_first=True)
        self.decoder = nn.LSTM(d, d, batch_first=True)
        self.local_gate = nn.Linear(d, 2 * d)
        self.local_norm = nn.LayerNorm(d)
        self.enrich = GatedResidual(d, d, d, d, dropout)
        self.attention = nn.ModuleList([InterpretableAttention(d, heads, dropout) for _ in range(layers)])
        self.attention_gate = nn.ModuleList([nn.Linear(d, 2 * d) for _ in range(layers)])
        self.attention_norm = nn.ModuleList([nn.LayerNorm(d) for _ in range(layers)])
        self.position_ff = GatedResidual(d, d, d, dropout=dropout)
        self.final_norm = nn.LayerNorm(d)
        self.daily = nn.Linear(d, len(QUANTILES))
        self.window = nn.Embedding(len(TOTAL_WINDOWS), d)
        self.totals = GatedResidual(d, d, len(QUANTILES), dropout=dropout)
        # horizon day j (position L + j) sees the past and horizon days up to itself
        T = history + horizon
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).tril()[history:], persistent=False)

    def forward(self, observed: torch.Tensor, known: torch.Tensor, market: torch.Tensor, static: torch.Tensor) -> DemandOutput:
        L, H = self.history, self.horizon
        if observed.shape[1] != L or known.shape[1] != L + H:
            raise ValueError(f"expected {L} past and {L + H} known steps, got {observed.shape[1]} and {known.shape[1]}")
        s = self.market(market)
        if self.static_in is not None:
            s = s + self.static_in(static)
        c_select, c_h, c_c, c_enrich = (grn(s) for grn in self.static)

        past, past_w = self.past_select(torch.cat([observed, known[:, :L]], dim=-1), c_select)
        future, future_w = self.future_select(known[:, L:], c_select)
        enc, state = self.encoder(past, (c_h[None].contiguous(), c_c[None].contiguous()))
        dec, _ = self.decoder(future, state)
        embedded = torch.cat([past, future], dim=1)
        temporal = self.local_norm(embedded + F.glu(self.local_gate(torch.cat([enc, dec], dim=1)), dim=-1))

        x = self.enrich(temporal, c_enrich[:, None, :])
        # Only the horizon days query (their outputs are all that is used); later layers attend
        # to the past and to the horizon as the layer before left it.
        past_x, fut = x[:, :L], x[:, L:]
        weights = x.new_zeros(())
        for attend, gate, norm in zip(self.attention, self.attention_gate, self.attention_norm):
            a, weights = attend(fut, torch.cat([past_x, fut], dim=1), self.mask)
            fut = norm(fut + F.glu(gate(a), dim=-1))
        out = self.final_norm(self.position_ff(fut) + temporal[:, L:])

        daily = _monotone(self.daily(out))
        pooled = torch.stack([out[:, :w].mean(dim=1) for w in TOTAL_WINDOWS], dim=1) + self.window.weight
        totals = _monotone(self.totals(pooled))
        return DemandOutput(daily, totals, weights, past_w, future_w)

    def hyperparameters(self) -> dict[str, int | float]:
        return dict(self.config)
