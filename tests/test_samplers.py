"""Metropolis and overdamped Langevin against closed forms and the two-particle quadrature."""

import math

import pytest
import torch

from boltzflow.energies.base import Energy
from boltzflow.energies.two_particle import TwoParticleCoulomb, pair_distance, two_particle_quadrature
from boltzflow.errors import BoltzflowError
from boltzflow.samplers import metropolis
from boltzflow.samplers.langevin import overdamped_langevin
from boltzflow.samplers.metropolis import sample_metropolis


class Harmonic(Energy):
    """u(x) = Σ k_i x_i² / 2, shape (..., D) -> (...)."""

    def __init__(self, k: torch.Tensor) -> None:
        super().__init__()
        self.k = k
        self.event_shape = (k.shape[0],)

    def energy(self, x):
        return 0.5 * (self.k * x**2).sum(-1)


def _random_wells(n: int, gen: torch.Generator) -> torch.Tensor:
    """Each particle in a random well (P(same) = 1/2, far from equilibrium), same-well pairs kept apart."""
    signs = 2.0 * torch.randint(0, 2, (n, 2), generator=gen) - 1.0
    offset = torch.full((n,), 0.4)
    return torch.stack([signs[:, 0], offset, signs[:, 1], -offset], dim=-1)


def _check_against_quadrature(x: torch.Tensor, bias_allowance: float = 0.0) -> None:
    """x: (n_frames, n_chains, 4) from independent chains; per-chain means give honest standard errors."""
    q = two_particle_quadrature()
    observables = {
        "mean_r": (pair_distance(x), q.mean_r),
        "p_same_well": ((x[..., 0] * x[..., 2] > 0).double(), q.p_same_well),
        "mean_x1_sq": (x[..., 0] ** 2, q.mean_x1_sq),
    }
    n_chains = x.shape[1]
    for name, (values, exact) in observables.items():
        per_chain = values.mean(0)
        stderr = float(per_chain.std()) / math.sqrt(n_chains)
        error = abs(float(per_chain.mean()) - exact)
        assert error < 4.5 * stderr + bias_allowance, (
            f"{name}: {float(per_chain.mean()):.4f} vs {exact:.4f} ± {stderr:.4f}"
        )


def test_metropolis_matches_quadrature():
    gen = torch.Generator().manual_seed(1)
    n_chains = 3000
    result = sample_metropolis(
        TwoParticleCoulomb(),
        _random_wells(n_chains, gen),
        n_samples=20 * n_chains,
        burn_in=2500,
        thin=10,
        step_size=0.3,
        target_acceptance=0.4,
        generator=gen,
    )
    assert result.samples.shape == (20 * n_chains, 4)
    assert abs(result.acceptance - 0.4) < 0.02
    assert 0.15 < result.step_size < 0.25
    _check_against_quadrature(result.samples.reshape(20, n_chains, 4))


def test_metropolis_gaussian_moments():
    gen = torch.Generator().manual_seed(2)
    k = torch.tensor([1.0, 4.0, 0.25])
    result = sample_metropolis(
        Harmonic(k), torch.zeros(2000, 3), n_samples=40000, burn_in=300, thin=5, generator=gen
    )
    x = result.samples.reshape(20, 2000, 3)  # rows cycle over chains
    for values, exact in ((x, torch.zeros(3)), (k * x**2, torch.ones(3))):
        per_chain = values.mean(0)
        stderr = per_chain.std(0) / math.sqrt(2000)
        assert ((per_chain.mean(0) - exact).abs() < 4.5 * stderr).all()


def test_acceptance_limits_and_infinite_energies():
    gen = torch.Generator().manual_seed(3)
    energy = TwoParticleCoulomb()
    state = metropolis.init(_random_wells(1000, gen), energy)
    _, tiny = metropolis.step(state, energy, 1e-5, gen)
    _, huge = metropolis.step(state, energy, 30.0, gen)
    for info in (tiny, huge):
        assert ((info.accept_prob >= 0) & (info.accept_prob <= 1)).all()
        assert info.accepted.shape == (1000,) and info.accepted.dtype == torch.bool
    assert tiny.accept_prob.mean() > 0.999 and huge.accept_prob.mean() < 0.01
    collided = metropolis.init(torch.tensor([[0.5, 0.0, 0.5, 0.0]]), energy)  # u = +inf
    moved, info = metropolis.step(collided, energy, 0.1, gen)
    assert info.accepted.all() and torch.isfinite(moved.energy).all()
    stay, info = metropolis.step(state, lambda x: torch.full(x.shape[:-1], math.inf), 0.1, gen)
    assert not info.accepted.any() and torch.equal(stay.x, state.x)


def test_step_size_adapts_in_burn_in_then_freezes():
    """Flat energy: every proposal is accepted, so consecutive energy calls differ by exactly σ_k ξ_k."""
    calls = []

    def flat(x):
        calls.append(x.clone())
        return x.new_zeros(x.shape[:-1])

    gen = torch.Generator().manual_seed(4)
    result = sample_metropolis(
        flat,
        torch.zeros(500, 8),
        n_samples=500 * 6,
        burn_in=40,
        thin=2,
        step_size=0.1,
        target_acceptance=0.4,
        generator=gen,
    )
    sigmas = torch.stack([(b - a).std() for a, b in zip(calls[:-1], calls[1:], strict=True)])
    assert len(sigmas) == 40 + 12
    assert sigmas[39] > 2 * sigmas[0]  # burn-in grew σ (acceptance 1 > 0.4)
    production = sigmas[40:]
    torch.testing.assert_close(production, torch.full_like(production, result.step_size), rtol=0.05, atol=0)
    assert result.acceptance == 1.0
    torch.testing.assert_close(result.samples[:500], calls[42])  # thin = 2: the second production state


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"thin": 0}, "thin"),
        ({"step_size": -1.0}, "step_size"),
        ({"target_acceptance": 1.0}, "target_acceptance"),
    ],
)
def test_metropolis_bad_input(kwargs, match):
    args = {"n_samples": 10, "burn_in": 0, "thin": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        sample_metropolis(TwoParticleCoulomb(), torch.zeros(4, 4), **args)
    with pytest.raises(ValueError, match="n_chains, D"):
        sample_metropolis(TwoParticleCoulomb(), torch.zeros(4), n_samples=4, burn_in=0)


def test_langevin_euler_maruyama_on_harmonic():
    """EM recursion x' = (1 − Ddt k) x + sqrt(2Ddt) ξ: lag-1 correlation 1 − Ddt k, var 2/(k(2 − Ddt k))."""
    gen = torch.Generator().manual_seed(5)
    k, diffusion, dt = 4.0, 0.5, 0.1
    x0 = torch.randn(20000, 1, generator=gen) / math.sqrt(k)
    traj = overdamped_langevin(
        Harmonic(torch.tensor([k])), x0, n_steps=60, dt=dt, diffusion=diffusion, save_every=1, generator=gen
    )
    assert traj.shape == (61, 20000, 1) and torch.equal(traj[0], x0)
    a = 1 - diffusion * dt * k
    stationary = 2.0 / (k * (2.0 - diffusion * dt * k))  # 11% above the exact 1/k
    var = traj[-1].var()
    assert abs(float(var) - stationary) < 4.5 * stationary * math.sqrt(2 / 20000)
    lag1 = (traj[-1] * traj[-2]).mean() / (traj[-2] ** 2).mean()
    assert abs(float(lag1) - a) < 0.02
    saved = overdamped_langevin(
        lambda x: 0.5 * k * (x**2).sum(-1),
        x0,
        60,
        dt,
        diffusion,
        save_every=20,
        generator=torch.Generator().manual_seed(5),
    )
    assert saved.shape == (4, 20000, 1)


def test_langevin_callable_matches_energy_and_rejects_blowup():
    k = torch.tensor([4.0, 1.0])
    x0 = torch.randn(10, 2)
    runs = [
        overdamped_langevin(fn, x0, 15, 0.01, 1.0, 5, torch.Generator().manual_seed(6))
        for fn in (Harmonic(k), lambda x: 0.5 * (k * x**2).sum(-1))
    ]
    torch.testing.assert_close(runs[0], runs[1])
    with pytest.raises(BoltzflowError, match="reduce dt"):
        overdamped_langevin(Harmonic(k), x0, 2000, 1.0, 1.0, 100, torch.Generator().manual_seed(6))
    with pytest.raises(ValueError, match="positive"):
        overdamped_langevin(Harmonic(k), x0, 10, -0.1, 1.0)


def test_langevin_matches_quadrature():
    """D = 1/β (the paper's time). Equilibrate from random wells at dt = 0.02, measure at dt = 0.005.

    The O(dt) Euler–Maruyama bias at dt = 0.005 is below the statistical error (≈ 0.004 on mean_r); it is
    allowed for with 0.005 on every observable.
    """
    gen = torch.Generator().manual_seed(7)
    energy = TwoParticleCoulomb()
    n_chains, diffusion = 1200, 1 / energy.beta
    x = overdamped_langevin(
        energy,
        _random_wells(n_chains, gen),
        n_steps=4000,
        dt=0.02,
        diffusion=diffusion,
        save_every=4000,
        generator=gen,
    )[-1]
    traj = overdamped_langevin(
        energy, x, n_steps=2000, dt=0.005, diffusion=diffusion, save_every=20, generator=gen
    )
    _check_against_quadrature(traj[1:], bias_allowance=0.005)
