"""Theorem 1's high-energy cap: properties (i)–(iv) on a 1-D toy and on the two-particle Coulomb energy."""

import math

import pytest
import torch

from boltzflow.energies.base import Energy
from boltzflow.energies.regularize import HighEnergyCap, cap_reduced_energy, smoothstep
from boltzflow.energies.two_particle import TwoParticleCoulomb


class Quartic(Energy):
    """u(x) = x⁴, shape (..., 1) -> (...)."""

    event_shape = (1,)

    def energy(self, x):
        return x[..., 0] ** 4


class InverseDistance(Energy):
    """u(x) = 1/|x|: +inf at 0 with a NaN autograd gradient there (the case the cap must not leak)."""

    event_shape = (1,)

    def energy(self, x):
        return 1.0 / x[..., 0].abs()


def _grad(energy, x):
    return -energy.force(x)


def _fd_grad(energy, x, h=1e-7):
    return torch.stack(
        [(energy(x + h * e) - energy(x - h * e)) / (2 * h) for e in torch.eye(x.shape[-1])], -1
    )


def test_smoothstep():
    t = torch.tensor([-1.0, 0.0, 0.25, 0.5, 1.0, 2.0])
    torch.testing.assert_close(smoothstep(t), torch.tensor([0.0, 0.0, 0.15625, 0.5, 1.0, 1.0]))


@pytest.mark.parametrize("eps", [0.5, 0.1, 0.01])
def test_c1_across_both_thresholds_1d(eps):
    cap = HighEnergyCap(Quartic(), eps)
    for level in (1 / eps, 2 / eps):
        x0 = level**0.25
        for delta in (1e-3, 1e-5):
            below, above = torch.tensor([[x0 - delta]]), torch.tensor([[x0 + delta]])
            jump = (_grad(cap, above) - _grad(cap, below)).abs().item()
            assert (
                jump < 500 * delta * level**0.5
            )  # O(delta), u'' ~ 108 level^0.5; a kink would jump by ~4 level^0.75
            for x in (below, above):  # autograd agrees with one-sided finite differences
                torch.testing.assert_close(_grad(cap, x), _fd_grad(cap, x), rtol=1e-5, atol=1e-5)
    x = torch.linspace(0.0, 3.0 / eps**0.25, 2001)[:, None]
    bound = 2.5 * _grad(Quartic(), x).abs() + 1e-12  # |dU_ε/dU| ≤ (1 − ζ) + h'·(2/ε − U)ε ≤ 2.5
    assert (_grad(cap, x).abs() <= bound).all()
    assert (_grad(cap, x[x[:, 0] ** 4 > 2 / eps]) == 0).all()


@pytest.mark.parametrize("eps", [0.2, 0.05, 1e-3])
def test_unchanged_below_threshold_and_lower_bound(eps):
    base = TwoParticleCoulomb(beta=5.0)
    cap = HighEnergyCap(base, eps)
    x = 0.8 * torch.randn(4000, 4)
    u, u_eps = base(x), cap(x)
    low = u <= 1 / eps
    assert low.any() and (eps < 0.01 or (~low).any())
    assert torch.equal(u_eps[low], u[low])  # (iv), exactly
    assert (u_eps >= torch.minimum(u, torch.full_like(u, 1 / eps))).all()  # (ii): ≥ min(U, 1/ε) ≥ inf U
    assert (u_eps <= torch.maximum(u, torch.full_like(u, 2 / eps))).all()
    assert (u_eps >= 0).all()  # inf U = 0 up to the positive Coulomb term


def test_pointwise_convergence():
    base = TwoParticleCoulomb(beta=5.0)
    x = torch.tensor([[1.0, 0.0, -1.0, 0.0], [0.1, 0.0, 0.15, 0.0], [0.2, 0.1, 0.2, 0.1]])
    u = base(x)
    epsilons = [10.0**-k for k in range(0, 8)]
    values = torch.stack([HighEnergyCap(base, e)(x) for e in epsilons])
    assert torch.equal(values[-1, :2], u[:2])  # (iii): finite U is reached exactly once 1/ε ≥ U
    errors = (values[:, :2] - u[:2]).abs()
    assert (errors[1:] <= errors[:-1]).all()
    torch.testing.assert_close(values[:, 2], torch.tensor([2 / e for e in epsilons]))  # U = inf: 2/ε → inf


def test_collision_gives_cap_with_zero_gradient():
    eps = 0.01
    cap = HighEnergyCap(TwoParticleCoulomb(), eps)
    x = torch.tensor([[0.3, -0.2, 0.3, -0.2], [0.3, -0.2, 0.3 + 1e-3, -0.2]], requires_grad=True)
    u = cap(x)
    torch.testing.assert_close(u, torch.full((2,), 2 / eps))
    (grad,) = torch.autograd.grad(u.sum(), x)
    assert torch.equal(grad, torch.zeros_like(grad))
    toy = HighEnergyCap(InverseDistance(), eps)  # the wrapped backward alone would give NaN here
    x = torch.tensor([[0.0], [1e-4], [0.5]], requires_grad=True)
    (grad,) = torch.autograd.grad(toy(x).sum(), x)
    assert torch.isfinite(grad).all() and grad[0] == 0 and grad[1] == 0
    torch.testing.assert_close(grad[2], torch.tensor([-4.0]))
    assert torch.isfinite(toy.force(torch.zeros(5, 1))).all()


def test_c1_along_a_collision_path_two_particle():
    """Move particle 2 onto particle 1: U crosses 1/ε and 2/ε; the gradient is continuous at both."""
    eps = 0.05
    base = TwoParticleCoulomb(beta=5.0)
    cap = HighEnergyCap(base, eps)
    start = torch.tensor([0.9, 0.0, 0.9, 0.0])
    direction = torch.tensor([0.0, 0.0, 0.0, 1.0])

    def u_at(s):
        return float(base(start + s * direction))

    for level in (1 / eps, 2 / eps):
        lo, hi = 1e-4, 0.7  # u decreases in s on (0, 0.7)
        for _ in range(80):
            s0 = 0.5 * (lo + hi)
            lo, hi = (s0, hi) if u_at(s0) > level else (lo, s0)
        for delta in (1e-4, 1e-6):
            g = [_grad(cap, (start + (s0 + d) * direction)[None]) for d in (-delta, delta)]
            assert (g[1] - g[0]).abs().max() < 1e5 * delta  # u'' ≲ 2e4 here; a kink would jump by ≳ 100
            torch.testing.assert_close(
                g[0], _fd_grad(cap, (start + (s0 - delta) * direction)[None], h=1e-8), rtol=1e-4, atol=1e-4
            )


def test_force_is_minus_gradient_in_the_band():
    cap = HighEnergyCap(TwoParticleCoulomb(beta=5.0), 0.1)
    x = torch.tensor([[1.0, 0.0, 1.0, 0.35], [1.0, 0.0, 1.0, 0.25], [0.5, 0.0, -1.0, 0.2]])
    assert ((cap.wrapped(x) > 10) & (cap.wrapped(x) < 20)).sum() >= 1
    torch.testing.assert_close(cap.force(x), -_fd_grad(cap, x, h=1e-6), rtol=1e-6, atol=1e-6)


def test_cap_reduced_energy_and_bad_input():
    u = torch.tensor([0.0, 10.0, 15.0, 20.0, 25.0, math.inf])
    torch.testing.assert_close(
        cap_reduced_energy(u, 0.1), torch.tensor([0.0, 10.0, 15.0 * 0.5 + 20 * 0.5, 20, 20, 20])
    )
    with pytest.raises(ValueError, match="epsilon > 0"):
        HighEnergyCap(Quartic(), 0.0)
