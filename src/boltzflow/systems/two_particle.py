"""The two-particle Coulomb system of paper 001 §6.1: energy + reference-data recipe + observables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from boltzflow.energies.two_particle import TwoParticleCoulomb, pair_distance, two_particle_quadrature
from boltzflow.samplers.metropolis import sample_metropolis
from boltzflow.systems.base import Observable, System
from boltzflow.systems.registry import register

COLLISION_RADIUS = 0.3  # r < 0.3 is (essentially) empty under the true distribution at beta = 5


@dataclass
class TwoParticleSystem(System):
    """Two particles in a 2-D double well with Coulomb repulsion, eq. (15), or its soft-core form, eq. (16).

    Coordinates are ordered (x1, x2, y1, y2): particle 1 at (x1, x2), particle 2 at (y1, y2).

    Attributes:
        lam: Coulomb strength λ.
        beta: inverse temperature β; the reduced energy is u = βU.
        softcore_eps: soft-core ε of eq. (16); 0 gives the singular potential.
    """

    lam: float = 0.7
    beta: float = 5.0
    softcore_eps: float = 0.0

    name = "two-particle"
    event_shape = (4,)
    description = "two particles in a 2-D double well with Coulomb repulsion (paper 001 §6.1)"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"two-particle beta must be a positive number, got {self.beta}")
        if not (np.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"two-particle lam must be a non-negative number, got {self.lam}")
        if not (np.isfinite(self.softcore_eps) and self.softcore_eps >= 0):
            raise ValueError(f"two-particle softcore_eps must be a non-negative number, got {self.softcore_eps}")

    def observables(self) -> dict[str, Observable]:
        return {"r": Observable("r", "", lambda x: pair_distance(x))}

    def energy(self) -> TwoParticleCoulomb:
        """The reduced energy u = βU."""
        return TwoParticleCoulomb(lam=self.lam, beta=self.beta, softcore_eps=self.softcore_eps)

    def params(self) -> dict[str, float]:
        return {"lam": self.lam, "beta": self.beta, "softcore_eps": self.softcore_eps}

    def reference_samples(
        self,
        n: int,
        seed: int = 0,
        n_chains: int = 2000,
        burn_in: int = 20_000,
        thin: int = 100,
        progress: bool = False,
    ) -> tuple[np.ndarray, float]:
        """Equilibrium samples by batched random-walk Metropolis (float64).

        The well occupation (same well / different wells) mixes slowly, so chains start with the occupation drawn
        from its exact probability (by quadrature) and then run a long burn-in during which the step size adapts;
        it is frozen afterwards.

        Returns:
            ``(samples of shape (n, 4), acceptance rate)``.
        """
        gen = torch.Generator().manual_seed(seed)
        p_same = two_particle_quadrature(self.lam, self.beta, self.softcore_eps).p_same_well
        same = torch.rand(n_chains, generator=gen, dtype=torch.float64) < p_same
        side = torch.where(torch.rand(n_chains, generator=gen, dtype=torch.float64) < 0.5, 1.0, -1.0)
        x0 = torch.zeros(n_chains, 4, dtype=torch.float64)
        x0[:, 0] = side
        x0[:, 2] = torch.where(same, side, -side)
        x0[:, 1] = torch.where(same, 0.5, 0.0)
        x0[:, 3] = torch.where(same, -0.5, 0.0)
        x0 += 0.1 * torch.randn(n_chains, 4, generator=gen, dtype=torch.float64)
        energy = self.energy().double()
        result = sample_metropolis(energy, x0, n_samples=n, burn_in=burn_in, thin=thin, step_size=0.3,
                                   target_acceptance=0.4, generator=gen, progress=progress)
        return result.samples.numpy(), float(result.acceptance)


def observables(x: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Distance statistics of samples ``x`` of shape (n, 4): min r, mean r, collision fraction (r < 0.3)."""
    r = pair_distance(torch.as_tensor(np.asarray(x), dtype=torch.float64)).numpy()
    return {
        "min_r": float(r.min()),
        "mean_r": float(r.mean()),
        "collision_fraction": float(np.mean(r < COLLISION_RADIUS)),
    }


@register("two-particle", summary="two particles, 2-D double well + Coulomb (paper 001 §6.1), reduced units")
def _two_particle(lam: float = 0.7, beta: float = 5.0, softcore_eps: float = 0.0) -> TwoParticleSystem:
    return TwoParticleSystem(lam, beta, softcore_eps)
