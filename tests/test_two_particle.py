"""Two-particle Coulomb energy (eq. 15/16) and its quadrature ground truth."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

from boltzflow.energies.two_particle import TwoParticleCoulomb, pair_distance, two_particle_quadrature


def _reference_potential(x: np.ndarray, lam: float, eps: float) -> np.ndarray:
    x1, x2, y1, y2 = x.T
    r = np.hypot(x1 - y1, x2 - y2)
    return (x1**2 - 1) ** 2 + x2**2 + (y1**2 - 1) ** 2 + y2**2 + lam / np.sqrt(r**2 + eps**2)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_potential_matches_eq_15_16(eps):
    x = torch.randn(50, 4)
    energy = TwoParticleCoulomb(lam=0.7, beta=5.0, softcore_eps=eps)
    xn = x.numpy()
    expected = _reference_potential(xn, 0.7, eps)
    np.testing.assert_allclose(energy.potential(x).numpy(), expected, rtol=1e-13)
    np.testing.assert_allclose(energy.energy(x).numpy(), 5.0 * expected, rtol=1e-13)
    np.testing.assert_allclose(
        pair_distance(x).numpy(), np.hypot(xn[:, 0] - xn[:, 2], xn[:, 1] - xn[:, 3]), rtol=1e-14
    )
    assert energy(x.reshape(5, 10, 4)).shape == (5, 10)


def test_collision_is_inf_without_nan():
    energy = TwoParticleCoulomb()
    x = torch.tensor([[0.3, -0.2, 0.3, -0.2], [1.0, 0.0, -1.0, 0.0]])
    u = energy.energy(x)
    assert u[0] == math.inf and torch.isfinite(u[1])
    force = energy.force(x)
    assert torch.isfinite(force).all()
    soft = TwoParticleCoulomb(softcore_eps=0.1)
    np.testing.assert_allclose(
        float(soft.potential(x[:1])), 0.91**2 + 0.04 + 0.91**2 + 0.04 + 7.0, rtol=1e-12
    )


@pytest.mark.parametrize("eps", [0.0, 0.03, 0.5])
def test_force_is_minus_gradient(eps):
    energy = TwoParticleCoulomb(softcore_eps=eps)
    x = torch.randn(20, 4)
    x[:, 2] += 1.0  # keep away from r = 0
    h = 1e-6
    fd = torch.stack([(energy(x + h * e) - energy(x - h * e)) / (2 * h) for e in torch.eye(4)], dim=-1)
    torch.testing.assert_close(energy.force(x), -fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_analytic_force_equals_autograd(eps):
    from boltzflow.energies.base import Energy

    energy = TwoParticleCoulomb(softcore_eps=eps)
    x = torch.randn(50, 4)
    torch.testing.assert_close(energy.force(x), Energy.force(energy, x), rtol=1e-10, atol=1e-10)
    collided = torch.tensor([[0.5, 0.2, 0.5, 0.2]])
    assert torch.isfinite(energy.force(collided)).all()


def test_known_minimum():
    """Opposite wells, x2 = y2 = 0, x1 = −y1 = a with 8a(a² − 1) = λ/(2a²) (d/da of 2(a²−1)² + λ/(2a) = 0)."""
    lam = 0.7
    a = optimize.brentq(lambda a: 8 * a * (a**2 - 1) - lam / (2 * a**2), 0.5, 2.0)
    energy = TwoParticleCoulomb(lam=lam, beta=1.0)
    x = torch.tensor([a, 0.0, -a, 0.0])
    assert torch.linalg.norm(energy.force(x)) < 1e-10
    hessian = torch.autograd.functional.hessian(energy.energy, x)
    assert torch.linalg.eigvalsh(hessian).min() > 0
    assert a > 1.0  # the repulsion pushes the particles outwards


def test_bad_input():
    with pytest.raises(ValueError, match="expects configurations of shape"):
        TwoParticleCoulomb()(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="beta"):
        TwoParticleCoulomb(beta=0.0)
    with pytest.raises(ValueError, match="softcore_eps"):
        TwoParticleCoulomb(softcore_eps=-1.0)


def test_quadrature_without_coulomb_factorises():
    """λ = 0: independent particles, closed forms from 1-D integrals."""
    beta = 5.0
    q = two_particle_quadrature(lam=0.0, beta=beta)
    z1 = integrate.quad(lambda t: math.exp(-beta * (t * t - 1) ** 2), -4, 4, epsabs=1e-14)[0]
    m2 = integrate.quad(lambda t: t * t * math.exp(-beta * (t * t - 1) ** 2), -4, 4, epsabs=1e-14)[0] / z1
    assert q.p_same_well == pytest.approx(0.5, abs=1e-12)
    assert q.mean_x1_sq == pytest.approx(m2, rel=1e-10)
    assert q.mean_x2_sq == pytest.approx(1 / (2 * beta), rel=1e-10)
    assert q.log_z == pytest.approx(2 * math.log(z1) + math.log(math.pi / beta), abs=1e-10)


def _brute_force_4d(n: int, lam: float = 0.7, beta: float = 5.0) -> tuple[float, float]:
    """The obvious twin: a direct 4-D Gauss–Legendre product, x1, y1 split at 0."""
    t, w = np.polynomial.legendre.leggauss(n)
    xa, wa = np.concatenate([1.2 * (t - 1), 1.2 * (t + 1)]), np.concatenate([1.2 * w, 1.2 * w])
    ya, wy = 2.0 * t, 2.0 * w
    x1, x2, y1, y2 = np.meshgrid(xa, ya, xa, ya, indexing="ij", sparse=True)
    weight = (
        wa[:, None, None, None] * wy[None, :, None, None] * wa[None, None, :, None] * wy[None, None, None, :]
    )
    r = np.sqrt((x1 - y1) ** 2 + (x2 - y2) ** 2)
    with np.errstate(divide="ignore"):
        f = weight * np.exp(-beta * ((x1**2 - 1) ** 2 + x2**2 + (y1**2 - 1) ** 2 + y2**2 + lam / r))
    return float((f * r).sum() / f.sum()), float((f * (x1 * y1 > 0)).sum() / f.sum())


def test_quadrature_matches_brute_force_and_converges():
    q = two_particle_quadrature()
    mean_r, p_same = _brute_force_4d(28)
    assert q.mean_r == pytest.approx(mean_r, abs=2e-5)
    assert q.p_same_well == pytest.approx(p_same, abs=2e-5)
    fine = two_particle_quadrature(n_nodes=140, x_max=2.6, d_max=6.0)
    for a, b in zip(q, fine, strict=True):
        assert a == pytest.approx(b, abs=1e-8)


def test_quadrature_depends_on_softcore():
    sing, soft = two_particle_quadrature(softcore_eps=0.0), two_particle_quadrature(softcore_eps=0.5)
    assert sing.mean_r == pytest.approx(1.98841, abs=1e-5)
    assert sing.p_same_well == pytest.approx(0.025395, abs=1e-6)
    assert soft.p_same_well > 2 * sing.p_same_well and soft.mean_r < sing.mean_r - 0.03
    tiny = two_particle_quadrature(softcore_eps=1e-8)
    assert tiny.mean_r == pytest.approx(sing.mean_r, abs=1e-12)
