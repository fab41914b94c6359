"""Importance weights, ESS, reweighting, free-energy differences and log Z against closed forms (float64)."""

import math

import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.eval.weights import (
    ess,
    ess_fraction,
    free_energy_difference,
    log_importance_weights,
    log_partition_estimate,
    reweight,
    weight_summary,
)


def gaussian_log_prob(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def proposal_samples(n: int, std: float = 1.0, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(0, std^2) and log q(x)."""
    g = torch.Generator().manual_seed(seed)
    x = std * torch.randn(n, generator=g, dtype=torch.float64)
    return x, gaussian_log_prob(x, 0.0, std)


def test_ess_closed_forms():
    assert ess(torch.full((50,), -3.7)) == pytest.approx(50)
    assert ess_fraction(torch.zeros(50)) == pytest.approx(1.0)
    one_hot = torch.full((10,), -math.inf)
    one_hot[3] = 0.0
    assert ess(one_hot) == pytest.approx(1.0)
    # weights (1, 1, 2): (4)^2 / 6 = 8/3, invariant to a common shift of the log weights
    assert ess(torch.log(torch.tensor([1.0, 1.0, 2.0])) + 1e4) == pytest.approx(8 / 3)
    assert ess_fraction(torch.log(torch.tensor([1.0, 1.0, 2.0]))) == pytest.approx(8 / 9)


def test_non_finite_weights_are_dropped_and_counted():
    log_w = torch.tensor([0.0, math.nan, 0.0, math.inf, 0.0, -math.inf])
    summary = weight_summary(log_w)
    assert summary.ess == pytest.approx(3.0) and summary.n == 6 and summary.n_dropped == 3
    assert summary.ess_fraction == pytest.approx(0.5)
    est = reweight(torch.tensor([1.0, math.nan, 3.0, 5.0, 2.0, 7.0]), log_w)
    assert float(est.mean) == pytest.approx(2.0) and est.n_dropped == 3
    assert log_partition_estimate(log_w).log_z == pytest.approx(math.log(0.5))
    with pytest.raises(BoltzflowError, match="non-finite"):
        ess(torch.tensor([math.nan, math.inf]))
    with pytest.raises(ValueError, match="finite weight"):
        reweight(torch.tensor([math.nan, 1.0]), torch.zeros(2))


def test_log_importance_weights():
    u, log_q = torch.tensor([1.0, 2.0]), torch.tensor([-0.5, 0.25])
    torch.testing.assert_close(log_importance_weights(u, log_q), torch.tensor([-0.5, -2.25]))
    with pytest.raises(ValueError, match="same shape"):
        log_importance_weights(u, log_q[:1])


def test_reweight_gaussian_moments_within_error_bar():
    mean, std = 1.0, 0.5
    x, log_q = proposal_samples(20000)
    u = 0.5 * ((x - mean) / std) ** 2  # unnormalised: the constant must cancel
    log_w = log_importance_weights(u, log_q)
    est = reweight(torch.stack([x, (x - mean) ** 2], dim=-1), log_w)
    assert est.mean.shape == (2,) and 1000 < est.ess < 20000
    truth = torch.tensor([mean, std**2])
    z_scores = (est.mean - truth) / est.stderr
    assert bool((z_scores.abs() < 4).all()), z_scores
    assert bool((est.stderr < 0.02).all())  # the error bar is informative, not huge


def test_reweight_error_bar_is_calibrated():
    """Over independent repetitions the z-scores of the mean have roughly unit spread."""
    z = []
    for seed in range(40):
        x, log_q = proposal_samples(500, seed=100 + seed)
        est = reweight(x, log_importance_weights(0.5 * ((x - 1.0) / 0.5) ** 2, log_q))
        z.append(float((est.mean - 1.0) / est.stderr))
    spread = torch.tensor(z).std().item()
    assert 0.6 < spread < 1.5, spread


def test_free_energy_difference_two_halves():
    # target N(0.5, 1): P(x >= 0) / P(x < 0) = Phi(0.5) / Phi(-0.5)
    x, log_q = proposal_samples(20000, std=1.5)
    log_w = log_importance_weights(0.5 * (x - 0.5) ** 2, log_q)
    est = free_energy_difference(log_w, x < 0, x >= 0)
    phi = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    exact = -math.log(phi(0.5) / phi(-0.5))
    assert abs(est.delta_f - exact) < 4 * est.stderr and 0 < est.stderr < 0.05
    with pytest.raises(BoltzflowError, match="state b"):
        free_energy_difference(log_w, x < 0, x > 100)


def test_log_z_of_normalised_target_is_zero():
    x, log_q = proposal_samples(20000, std=1.5)
    u = -gaussian_log_prob(x, 1.0, 0.5)
    est = log_partition_estimate(log_importance_weights(u, log_q))
    assert abs(est.log_z) < 4 * est.stderr and 0 < est.stderr < 0.02
    shifted = log_partition_estimate(log_importance_weights(u + 2.0, log_q))  # Z scales by e^-2
    assert shifted.log_z == pytest.approx(est.log_z - 2.0)
