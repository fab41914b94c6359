"""The CNF: ODE transport and log-density against closed forms and autograd Jacobians, in float64."""

import math

import pytest
import torch
from scipy.linalg import expm
from torchdiffeq import odeint

from boltzflow.flows.cnf import (
    CNF,
    IsotropicNormal,
    divergence_exact,
    divergence_hutchinson,
    rademacher,
)

A = torch.tensor([[0.3, -1.1, 0.2], [0.7, -0.4, 0.0], [0.1, 0.5, 0.2]], dtype=torch.float64)


def linear_velocity(t, x):
    return x @ A.T


def swirl(t, x):
    """A nonlinear, time-dependent field (not divergence-free)."""
    r2 = (x**2).sum(-1, keepdim=True)
    rot = torch.stack([-x[..., 1], x[..., 0], torch.zeros_like(x[..., 2])], -1)
    t = torch.as_tensor(t, dtype=x.dtype)
    return (1 + t) * rot / (1 + r2) + torch.sin(x + t) * 0.3 - 0.2 * x**3 / (1 + r2)


def test_isotropic_normal_density_and_samples():
    base = IsotropicNormal(3, scale=2.5)
    x = torch.randn(5, 3, dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, 2.5).log_prob(x).sum(-1)
    torch.testing.assert_close(base.log_prob(x), ref)
    s = base.sample(200_000, torch.Generator().manual_seed(1))
    assert s.dtype == torch.float64 and s.shape == (200_000, 3)
    assert abs(float(s.std()) - 2.5) < 0.01
    with pytest.raises(ValueError, match="scale"):
        IsotropicNormal(2, scale=0.0)


def test_exact_divergence_matches_jacobian_trace():
    x = torch.randn(7, 3, dtype=torch.float64)
    t = torch.tensor(0.4, dtype=torch.float64)
    v, div = divergence_exact(swirl, t, x)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda y: swirl(t, y), x[i])
        torch.testing.assert_close(div[i], torch.trace(jac))
    torch.testing.assert_close(v, swirl(t, x))
    assert not v.requires_grad and not div.requires_grad


def test_hutchinson_is_unbiased():
    n, reps = 4, 40_000
    x = torch.randn(n, 3, dtype=torch.float64)
    t = torch.tensor(0.7, dtype=torch.float64)
    _, exact = divergence_exact(swirl, t, x)
    xr = x.repeat(reps, 1)
    noise = rademacher(xr.shape, xr, torch.Generator().manual_seed(3))
    _, est = divergence_hutchinson(swirl, t, xr, noise)
    est = est.reshape(reps, n)
    mean, se = est.mean(0), est.std(0) / math.sqrt(reps)
    assert bool((se > 0).all())  # the estimator is genuinely random here
    assert bool(((mean - exact).abs() < 5 * se).all()), (mean, exact, se)


def test_linear_field_matches_matrix_exponential():
    base = IsotropicNormal(3, scale=1.3)
    cnf = CNF(linear_velocity, base, steps=200)
    out = cnf.sample(50, torch.Generator().manual_seed(0), times=[0.25, 0.5])
    expected = out.z @ torch.from_numpy(expm(A.numpy())).T
    torch.testing.assert_close(out.x, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.log_prob, base.log_prob(out.z) - torch.trace(A), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.times, torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64))
    half = out.z @ torch.from_numpy(expm(0.5 * A.numpy())).T
    torch.testing.assert_close(out.path[2], half, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.path[0], out.z)
    torch.testing.assert_close(out.path[-1], out.x)


def test_nonlinear_log_prob_matches_autograd_jacobian_both_directions():
    base = IsotropicNormal(3)
    cnf = CNF(swirl, base, steps=100, chunk_size=3)  # chunking must not change anything
    out = cnf.sample(6, torch.Generator().manual_seed(2))
    grid = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)

    def flow_map(z):
        return odeint(swirl, z, grid, method="rk4")[-1]

    for i in range(6):
        jac = torch.autograd.functional.jacobian(flow_map, out.z[i])
        logdet = torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(out.log_prob[i], base.log_prob(out.z[i]) - logdet, rtol=1e-8, atol=1e-8)
    # the inverse direction: x -> z by integrating back, and the same density
    torch.testing.assert_close(cnf.log_prob(out.x), out.log_prob, rtol=1e-7, atol=1e-7)
    z_back, _, times, _ = cnf.transport(out.x, 1.0, 0.0)
    torch.testing.assert_close(z_back, out.z, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(times, torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_adaptive_solver_and_hutchinson_sampling():
    base = IsotropicNormal(3)
    exact = CNF(linear_velocity, base, method="dopri5", rtol=1e-10, atol=1e-10)
    out = exact.sample(20, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.log_prob, base.log_prob(out.z) - torch.trace(A), rtol=1e-8, atol=1e-8)
    hutch = CNF(linear_velocity, base, steps=20, divergence="hutchinson")
    est = hutch.sample(20_000, torch.Generator().manual_seed(1))
    err = est.log_prob - (base.log_prob(est.z) - torch.trace(A))
    assert float(err.std()) > 0.1  # one probe per trajectory: a noisy estimate of log q ...
    assert abs(float(err.mean())) < 5 * float(err.std()) / math.sqrt(20_000)  # ... that is unbiased


def test_bad_arguments():
    base = IsotropicNormal(2)
    with pytest.raises(ValueError, match="divergence"):
        CNF(linear_velocity, base, divergence="trace")
    with pytest.raises(ValueError, match="steps"):
        CNF(linear_velocity, base, steps=0)
    cnf = CNF(lambda t, x: -x, base, steps=4)
    with pytest.raises(ValueError, match="times"):
        cnf.sample(3, times=[1.5])
    with pytest.raises(ValueError, match="noise"):
        divergence_hutchinson(lambda t, x: -x, torch.tensor(0.0), torch.zeros(3, 2), torch.zeros(3, 3))
