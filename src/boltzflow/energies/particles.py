"""Pair potentials of particle clusters: the multi-double-well (DW4) and the Lennard-Jones cluster (LJ13).

Both are the standard targets of the equivariant-flow literature, written as in Köhler, Klein & Noé, "Equivariant
flows" (ICML 2020) and as implemented in bgflow (``MultiDoubleWellPotential``, ``LennardJonesPotential``) and in
Midgley et al. 2023 (SE(3) augmented coupling flows, ``eacf/targets/target_energy``); every pair i < j counts once:

* double well: u(x) = (1/τ) Σ_{i<j} [a (d_ij − d0) + b (d_ij − d0)² + c (d_ij − d0)⁴];
* Lennard-Jones: u(x) = (ε/τ) Σ_{i<j} [(r_m/d_ij)¹² − 2 (r_m/d_ij)⁶] + (k/2) Σ_i |x_i − x̄|², the harmonic term
  holding the cluster together around its centre of mass x̄ (bgflow's ``oscillator``; not divided by τ, as in
  Midgley et al.'s code; at τ = 1 the question does not arise).

Two conventions for LJ13 are in use. Köhler et al.'s formula, bgflow and Midgley et al. count each pair once (used
here, ε = 1). DEM (Akhound-Sadegh et al. 2024) sums over ordered pairs, each pair twice, and its authors report
(github.com/jarridrb/DEM issue #2) that this is what matches the MCMC datasets of Klein et al. 2023, which DEM and its
successors evaluate on; ``LennardJonesClusterEnergy(epsilon=2.0)`` is that convention. The two are different
distributions (the doubled one is the same cluster at half the temperature for the pair term), so compare numbers
only within one convention.

Both energies are invariant under translations, rotations and permutations of the particles. The translation
invariance makes exp(−u) non-normalisable on R^{n·d}: the distribution lives on the zero centre-of-mass subspace
(see :mod:`boltzflow.systems.particles`). Lengths and energies are dimensionless (reduced units).
"""

from __future__ import annotations

import torch
from torch import Tensor

from boltzflow.energies.base import Energy


def pair_squared_distances(x: Tensor) -> Tensor:
    """Squared distances d_ij² for all pairs i < j (row-major order of ``torch.triu_indices``).

    Args:
        x: positions, shape (..., n, d) (any spatial dimension d).

    Returns:
        shape (..., n (n − 1) / 2).
    """
    n = x.shape[-2]
    i, j = torch.triu_indices(n, n, 1, device=x.device)
    return ((x[..., i, :] - x[..., j, :]) ** 2).sum(-1)


def pair_distances(x: Tensor) -> Tensor:
    """Distances d_ij for all pairs i < j, shape (..., n, d) -> (..., n (n − 1) / 2).

    The gradient is zero (not NaN) where two particles coincide.
    """
    sq = pair_squared_distances(x)
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def remove_com(x: Tensor) -> Tensor:
    """Positions relative to their centre of mass (equal masses), shape (..., n, d) -> (..., n, d)."""
    return x - x.mean(-2, keepdim=True)


class MultiDoubleWellEnergy(Energy):
    """Pairwise double-well energy u = (1/τ) Σ_{i<j} [a s + b s² + c s⁴], s = d_ij − d0.

    Args:
        n_particles: number of particles n.
        spatial_dim: dimension d of each particle's position.
        a, b, c, d0: pair-potential constants (DW4: 0, −4, 0.9, 4).
        tau: temperature τ (DW4: 1).
    """

    def __init__(
        self, n_particles: int = 4, spatial_dim: int = 2, a: float = 0.0, b: float = -4.0, c: float = 0.9,
        d0: float = 4.0, tau: float = 1.0,
    ) -> None:
        super().__init__()
        if n_particles < 2 or spatial_dim < 1 or not tau > 0 or not c > 0:
            raise ValueError(f"need n_particles >= 2, spatial_dim >= 1, tau > 0, c > 0; got "
                             f"{n_particles}, {spatial_dim}, {tau}, {c}")
        self.event_shape = (int(n_particles), int(spatial_dim))
        self.a, self.b, self.c, self.d0, self.tau = float(a), float(b), float(c), float(d0), float(tau)

    def pair_energy(self, d: Tensor) -> Tensor:
        """a s + b s² + c s⁴ with s = d − d0 (elementwise, before dividing by τ)."""
        s = d - self.d0
        s2 = s * s
        return self.a * s + self.b * s2 + self.c * s2 * s2

    def energy(self, x: Tensor) -> Tensor:
        """u(x), shape (..., n, d) -> (...)."""
        self.check_shape(x)
        return self.pair_energy(pair_distances(x)).sum(-1) / self.tau

    def extra_repr(self) -> str:
        return f"n={self.event_shape[0]}, d={self.event_shape[1]}, a={self.a}, b={self.b}, c={self.c}, d0={self.d0}"


class LennardJonesClusterEnergy(Energy):
    """Lennard-Jones cluster with a harmonic restraint to the centre of mass.

    u = (ε/τ) Σ_{i<j} [(r_m/d)¹² − 2 (r_m/d)⁶] + (k/2) Σ_i |x_i − x̄|².

    Args:
        n_particles: number of particles n.
        spatial_dim: dimension d of each particle's position.
        epsilon: well depth ε (LJ13: 1).
        r_min: position of the pair minimum r_m = 2^{1/6} σ (LJ13: 1).
        tau: temperature τ (LJ13: 1).
        harmonic: force constant k of the centre-of-mass restraint (LJ13: 1; 0 switches it off).
    """

    def __init__(
        self, n_particles: int = 13, spatial_dim: int = 3, epsilon: float = 1.0, r_min: float = 1.0,
        tau: float = 1.0, harmonic: float = 1.0,
    ) -> None:
        super().__init__()
        if n_particles < 2 or spatial_dim < 1 or not tau > 0 or not r_min > 0 or harmonic < 0:
            raise ValueError(f"need n_particles >= 2, spatial_dim >= 1, tau > 0, r_min > 0, harmonic >= 0; got "
                             f"{n_particles}, {spatial_dim}, {tau}, {r_min}, {harmonic}")
        self.event_shape = (int(n_particles), int(spatial_dim))
        self.epsilon, self.r_min, self.tau, self.harmonic = float(epsilon), float(r_min), float(tau), float(harmonic)

    def lj_energy(self, x: Tensor) -> Tensor:
        """The Lennard-Jones sum ε Σ_{i<j} [(r_m/d)¹² − 2 (r_m/d)⁶] (not divided by τ), (..., n, d) -> (...)."""
        self.check_shape(x)
        q = self.r_min**2 / pair_squared_distances(x)  # no square root: (r_m/d)^6 = q^3
        inv6 = q * q * q
        return self.epsilon * (inv6 * inv6 - 2 * inv6).sum(-1)

    def energy(self, x: Tensor) -> Tensor:
        """u(x), shape (..., n, d) -> (...)."""
        lj = self.lj_energy(x) / self.tau
        return lj + 0.5 * self.harmonic * (remove_com(x) ** 2).sum((-2, -1))

    def extra_repr(self) -> str:
        return (f"n={self.event_shape[0]}, d={self.event_shape[1]}, epsilon={self.epsilon}, r_min={self.r_min}, "
                f"tau={self.tau}, harmonic={self.harmonic}")
