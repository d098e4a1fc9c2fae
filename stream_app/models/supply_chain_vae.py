"""Variational autoencoder of standardized transaction features; its reconstruction error (per
feature) is the anomaly evidence."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TransactionVAE(nn.Module):
    def __init__(self, n_inputs: int, hidden: int = 64, latent: int = 8) -> None:
        super().__init__()
        self.n_inputs, self.hidden, self.latent = n_inputs, hidden, latent
        self.encoder = nn.Sequential(nn.Linear(n_inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_inputs)
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_inputs": self.n_inputs, "hidden": self.hidden, "latent": self.latent}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training: (reconstruction from a sampled latent, mu, logvar)."""
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h).clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Scoring: the reconstruction from the latent mean (deterministic)."""
        return self.decoder(self.mu(self.encoder(x)))
