"""Switch counting with hysteresis, the lag-1 autocorrelation estimator and the latent OU walk."""

import math

import numpy as np
import pytest
import torch

from boltzflow.eval.dynamics import ar1_coefficient, count_switches, latent_ou_walk


@pytest.mark.parametrize(
    "x1, expected",
    [
        ([-1.0, -0.8, 0.0, 0.9, 1.0], 1),
        ([-1.0, 0.4, -0.2, 0.45, -1.0], 0),  # recrossings of 0 that never reach the other core
        ([-1.0, 0.6, 0.0, -0.6, 0.1, 0.7], 3),
        ([0.0, 0.2, 0.7, 0.3, 0.9, -0.1, -0.51], 1),  # no state before the first core visit
        ([0.0, 0.1, -0.1], 0),
        ([1.0] * 5 + [-1.0] * 5 + [1.0] * 5, 2),
    ],
)
def test_count_switches_hand_made(x1, expected):
    assert count_switches(np.array(x1), core=0.5) == expected
    assert count_switches(torch.tensor(x1), core=0.5) == expected


def test_count_switches_core_width_and_bad_input():
    x1 = [-1.0, 0.6, -1.0, 0.6, -1.0]
    assert count_switches(x1, core=0.5) == 4
    assert count_switches(x1, core=0.7) == 0
    with pytest.raises(ValueError, match="1-D"):
        count_switches(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="core"):
        count_switches([0.0, 1.0], core=0.0)


def test_ar1_coefficient_hand_made():
    z = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    c = z - z.mean()
    assert ar1_coefficient(z) == pytest.approx((c[1:] * c[:-1]).sum() / (c**2).sum())
    assert ar1_coefficient(np.stack([z, np.arange(6.0)], -1)) == pytest.approx(
        0.5 * (ar1_coefficient(z) + ar1_coefficient(np.arange(6.0)))
    )
    with pytest.raises(ValueError, match="constant"):
        ar1_coefficient(np.ones((10, 2)))
    with pytest.raises(ValueError, match="T >= 3"):
        ar1_coefficient(np.ones((2, 2)))


@pytest.mark.parametrize("rho", [0.0, 0.9, 0.99])
def test_latent_walk_stationary_and_calibrated(rho):
    gen = torch.Generator().manual_seed(11)
    n_steps, dim = 20000, 8
    z = latent_ou_walk(n_steps, dim, rho, gen)
    assert z.shape == (n_steps, dim) and z.dtype == torch.float64
    tau = (1 + rho) / (1 - rho)  # integrated autocorrelation time of an AR(1) process
    n_eff = n_steps * dim / tau
    # var(z²) = 2 for a unit Gaussian, and z² has autocorrelation ρ^{2k}: time (1 + ρ²)/(1 − ρ²) ≤ tau
    assert abs(float(z.var()) - 1.0) < 4.5 * math.sqrt(2 / n_eff)
    assert abs(float(z.mean())) < 4.5 / math.sqrt(n_eff)
    # the lag-1 estimator: standard error sqrt((1 − ρ²) / n) per dimension, bias −(1 + 3ρ)/n (Marriott–Pope)
    assert abs(ar1_coefficient(z) - rho) < 4.5 * math.sqrt((1 - rho**2) / (n_steps * dim)) + 5 / n_steps


def test_latent_walk_start_and_bad_input():
    gen = torch.Generator().manual_seed(12)
    z0 = torch.full((3,), 5.0)
    z = latent_ou_walk(4, 3, 1.0, gen, z0=z0)
    assert torch.equal(z, z0.expand(4, 3))  # ρ = 1 freezes the walk
    decayed = latent_ou_walk(200, 3, 0.9, gen, z0=z0)
    assert torch.equal(decayed[0], z0) and decayed[-50:].abs().max() < 5.0
    with pytest.raises(ValueError, match="rho"):
        latent_ou_walk(10, 2, 1.5, gen)
    with pytest.raises(ValueError, match="z0"):
        latent_ou_walk(10, 2, 0.5, gen, z0=torch.zeros(3))


def test_multirate_ou_recovers_per_direction_rates():
    from boltzflow.eval.dynamics import fit_latent_ou, multirate_ou_walk

    gen = torch.Generator().manual_seed(5)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    from boltzflow.eval.dynamics import LatentOU

    truth = LatentOU(q, np.array([0.2, 0.9, 0.995]))
    chains = torch.stack([multirate_ou_walk(4000, truth, gen) for _ in range(8)], dim=1)
    assert abs(float(chains.var()) - 1.0) < 0.1
    fitted = fit_latent_ou(chains)
    np.testing.assert_allclose(np.sort(fitted.rho), truth.rho, atol=0.02)
    slow = fitted.basis[:, np.argmax(fitted.rho)]
    assert abs(abs(slow @ q[:, 2]) - 1) < 0.02


def test_integrated_calibration_sees_a_rare_slow_component():
    """A process = fast AR(1) + a rare telegraph switch: lag-1 matching misses the switch, the integrated time
    does not."""
    from boltzflow.eval.dynamics import fit_latent_ou

    rng = np.random.default_rng(1)
    T, chains = 20000, 4
    fast = np.zeros((T, chains))
    for t in range(1, T):
        fast[t] = 0.5 * fast[t - 1] + np.sqrt(1 - 0.25) * rng.normal(size=chains)
    flips = rng.random((T, chains)) < 1e-3
    sign = np.where(np.cumsum(flips, axis=0) % 2 == 0, 1.0, -1.0)
    z = (0.6 * fast + 0.8 * sign)[:, :, None]  # unit variance, a slow mode of weight 0.64
    lag1 = fit_latent_ou(z).rho[0]
    integrated = fit_latent_ou(z, method="integrated", max_lag=2000).rho[0]
    assert lag1 < 0.95
    # exact: tau = 0.36 * (1 + 0.5) / (2 * 0.5) + 0.64 * (1 + q) / (2 * (1 - q)), q = 1 - 2e-3
    q = 1 - 2e-3
    tau = 0.36 * 1.5 / 1.0 + 0.64 * (1 + q) / (2 * (1 - q))
    assert abs(integrated - (2 * tau - 1) / (2 * tau + 1)) < 0.002
    with pytest.raises(ValueError, match="method"):
        fit_latent_ou(z, method="bogus")
