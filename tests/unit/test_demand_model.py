"""The demand transformer's shapes and structure, the pinball loss and the weighted metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_app.models.demand_transformer import QUANTILES, DemandTransformer
from stream_app.training.demand_metrics import interval_factor, pinball, pinball_loss, quantile_scores, widen

L, H, P, K, R = 21, 30, 4, 15, 2


@pytest.fixture
def model() -> DemandTransformer:
    torch.manual_seed(0)
    return DemandTransformer(P, K, R, n_markets=3, history=L, horizon=H, d_model=16, heads=2, layers=2).eval()


def _inputs(b: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(b, L, P, generator=g), torch.rand(b, L + H, K, generator=g),
            torch.tensor([0, 1, 2, 3, 1][:b]), torch.rand(b, R, generator=g))


def test_output_shapes_and_monotone_quantiles(model: DemandTransformer) -> None:
    out = model(*_inputs())
    assert out.quantiles.shape == (5, H, 3) and out.totals.shape == (5, 2, 3)
    assert out.attention.shape == (5, H, L + H)
    assert out.past_weights.shape == (5, L, P + K) and out.future_weights.shape == (5, H, K)
    for q in (out.quantiles, out.totals):
        assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()


def test_attention_is_causal_and_weights_are_distributions(model: DemandTransformer) -> None:
    out = model(*_inputs())
    assert torch.allclose(out.attention.sum(-1), torch.ones(5, H), atol=1e-5)
    future_part = out.attention[:, :, L:]
    assert (torch.triu(future_part, diagonal=1) == 0).all(), "a horizon day attends to a later one"
    assert torch.allclose(out.past_weights.sum(-1), torch.ones(5, L), atol=1e-5)
    assert torch.allclose(out.future_weights.sum(-1), torch.ones(5, H), atol=1e-5)


def test_a_forecast_does_not_depend_on_later_known_inputs(model: DemandTransformer) -> None:
    observed, known, market, static = _inputs(1)
    base = model(observed, known, market, static).quantiles
    changed = known.clone()
    changed[:, L + 10 :] += 5.0  # calendar from horizon day 11 on
    other = model(observed, changed, market, static).quantiles
    assert torch.allclose(base[:, :10], other[:, :10], atol=1e-5)
    assert not torch.allclose(base[:, 10:], other[:, 10:])


def test_wrong_window_lengths_are_refused(model: DemandTransformer) -> None:
    observed, known, market, static = _inputs()
    with pytest.raises(ValueError, match="past"):
        model(observed[:, 1:], known, market, static)


def test_pinball_loss_values_and_weights() -> None:
    pred = torch.tensor([[1.0, 2.0, 3.0]])
    target = torch.tensor([2.5])
    # q=0.1: 0.1*1.5; q=0.5: 0.5*0.5; q=0.9: 0.1*0.5
    assert pinball_loss(pred, target).item() == pytest.approx((0.15 + 0.25 + 0.05) / 3)
    two = torch.tensor([[1.0, 2.0, 3.0], [2.5, 2.5, 2.5]])
    weighted = pinball_loss(two, torch.tensor([2.5, 2.5]), weight=torch.tensor([1.0, 0.0]))
    assert weighted.item() == pytest.approx((0.15 + 0.25 + 0.05) / 3)
    assert np.allclose(pinball(np.array([2.5]), np.array([[1.0, 2.0, 3.0]])), [[0.15, 0.25, 0.05]])


def test_pinball_loss_is_minimised_by_the_quantiles() -> None:
    """Fitting a constant per quantile to a sample by gradient descent lands on its quantiles."""
    rng = np.random.default_rng(0)
    y = torch.tensor(rng.gamma(2.0, 3.0, 4000), dtype=torch.float32)
    c = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([c], lr=0.05)
    for _ in range(1500):
        opt.zero_grad()
        pinball_loss(c.expand(len(y), 3), y).backward()
        opt.step()
    expected = np.quantile(y.numpy(), QUANTILES)
    assert np.allclose(c.detach().numpy(), expected, atol=0.15)


def test_weighted_scores_and_interval_calibration() -> None:
    y = np.array([0.0, 10.0, 20.0])
    pred = np.array([[0.0, 1.0, 2.0], [8.0, 10.0, 12.0], [10.0, 15.0, 18.0]])
    s = quantile_scores(y, pred)
    assert s["wape"] == pytest.approx((1 + 0 + 5) / 30)
    assert s["coverage"] == pytest.approx(2 / 3)
    assert s["pinball"] == pytest.approx(pinball(y, pred).sum() / (3 * 30))
    assert np.allclose(widen(pred, 2.0)[2], [5.0, 15.0, 21.0])
    assert widen(pred, 2.0)[0, 0] == 0.0  # never below zero
    assert interval_factor(y, pred, 0.8) == pytest.approx(1.68)  # (20 - 15) / (18 - 15) rounded up on the grid
