"""DW4 and LJ13: particle clusters of the equivariant-flow literature, with shipped long-MCMC reference samples.

Definitions (Köhler, Klein & Noé 2020, "Equivariant flows"; the same constants in bgflow, in Klein et al. 2023
"Equivariant flow matching" and in Midgley et al. 2023 "SE(3) equivariant augmented coupling flows"):

* **DW4**: 4 particles in 2-D, u = (1/τ) Σ_{i<j} [a s + b s² + c s⁴], s = d_ij − d0, with a = 0, b = −4, c = 0.9,
  d0 = 4, τ = 1 (:data:`DW4_CONSTANTS`).
* **LJ13**: 13 particles in 3-D, u = (ε/τ) Σ_{i<j} [(r_m/d_ij)¹² − 2 (r_m/d_ij)⁶] + ½ Σ_i |x_i − x̄|², with
  ε = r_m = τ = 1 and a harmonic constant 1 (:data:`LJ13_CONSTANTS`).

Centre of mass. Both energies are translation invariant, so exp(−u) is not normalisable on R^{n·d}; the target is
its restriction to the zero centre-of-mass subspace {Σ_i x_i = 0} of dimension (n − 1)·d, and every shipped sample
has its centre of mass removed. A flow should live there in one of two ways:

1. a plain flow on R^{(n−1)·d}: train on ``to_com_free(x)`` (NLL) or against :meth:`ParticleSystem.com_free_energy`
   (reverse KL) and map its samples back with ``from_com_free``. The map uses an orthonormal (Helmert) basis of
   the subspace, an isometry, so densities carry over without a log-det term;
2. an equivariant flow with a mean-free Gaussian base on the subspace (Köhler et al. 2020), whose layers keep
   the centre of mass at zero.

A flow on all n·d coordinates trained by reverse KL drifts off along the flat centre-of-mass directions, and one
trained by NLL on centred data has a degenerate density; both give meaningless log-weights.

Reference samples: ``data/systems/{dw4,lj13}-mcmc.npz`` (float32 positions, centre of mass removed) and a
provenance JSON beside each (command, settings, acceptance, autocorrelation, noise floors, wall time), made by
:mod:`boltzflow.systems.particles_reference`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.energies.base import Energy
from boltzflow.energies.particles import (
    LennardJonesClusterEnergy,
    MultiDoubleWellEnergy,
    pair_distances,
)
from boltzflow.systems.base import Observable, Reference, System
from boltzflow.systems.registry import register

DW4_CONSTANTS = {"n_particles": 4, "spatial_dim": 2, "a": 0.0, "b": -4.0, "c": 0.9, "d0": 4.0, "tau": 1.0}
LJ13_CONSTANTS = {"n_particles": 13, "spatial_dim": 3, "epsilon": 1.0, "r_min": 1.0, "tau": 1.0, "harmonic": 1.0}


@cache
def _helmert(n: int) -> np.ndarray:
    """Orthonormal basis of {v in R^n : Σ v = 0}, shape (n, n − 1) (Helmert's contrasts)."""
    q = np.zeros((n, n - 1))
    for k in range(1, n):
        q[:k, k - 1] = 1.0 / math.sqrt(k * (k + 1))
        q[k, k - 1] = -k / math.sqrt(k * (k + 1))
    return q


def com_basis(n_particles: int, like: Tensor | None = None) -> Tensor:
    """Helmert basis Q of the zero-sum subspace of R^n, shape (n, n − 1), orthonormal columns, Qᵀ1 = 0.

    Args:
        n_particles: n (>= 2).
        like: tensor whose dtype and device the basis takes (float64 on the CPU when None).
    """
    q = torch.as_tensor(_helmert(int(n_particles)))
    return q if like is None else q.to(dtype=like.dtype, device=like.device)


def to_com_free(x: Tensor) -> Tensor:
    """Coordinates in the zero centre-of-mass subspace: (..., n, d) -> (..., (n − 1)·d), y = Qᵀ x.

    The centre of mass of ``x`` is projected out; ``from_com_free(to_com_free(x)) == remove_com(x)``.
    """
    q = com_basis(x.shape[-2], x)
    return (q.T @ x).flatten(-2)


def from_com_free(y: Tensor, n_particles: int) -> Tensor:
    """Positions with zero centre of mass from subspace coordinates: (..., (n − 1)·d) -> (..., n, d), x = Q y.

    The map is an isometry onto the subspace: a density on R^{(n−1)d} is the same density on the subspace.
    """
    q = com_basis(n_particles, y)
    return q @ y.unflatten(-1, (n_particles - 1, -1))


def data_dir() -> Path:
    """Folder of the shipped model-system references."""
    return Path(str(resources.files("boltzflow") / "data" / "systems"))


class ParticleSystem(System):
    """A cluster of n identical particles in d dimensions with a translation-invariant energy.

    Args:
        name: registry name (``"dw4"``, ``"lj13"``).
        energy: the reduced energy, event shape (n, d).
        description: one line for listings.
        reference_file: stem of the shipped MCMC sample under ``data/systems/`` (``"dw4-mcmc"``).
    """

    def __init__(self, name: str, energy: Energy, description: str, reference_file: str) -> None:
        self.name = name
        self._energy = energy
        self.event_shape = tuple(energy.event_shape)
        self.description = description
        self.reference_file = reference_file

    @property
    def n_particles(self) -> int:
        return self.event_shape[0]

    @property
    def com_free_dim(self) -> int:
        """Dimension (n − 1)·d of the zero centre-of-mass subspace where the distribution lives."""
        return (self.event_shape[0] - 1) * self.event_shape[1]

    def energy(self) -> Energy:
        return self._energy

    def com_free_energy(self) -> Callable[[Tensor], Tensor]:
        """u on subspace coordinates, (..., (n − 1)·d) -> (...): what a plain flow is trained against."""
        return lambda y: self._energy(from_com_free(y, self.n_particles))

    def to_com_free(self, x: Tensor) -> Tensor:
        """(..., n, d) -> (..., (n − 1)·d); see :func:`to_com_free`."""
        return to_com_free(x)

    def from_com_free(self, y: Tensor) -> Tensor:
        """(..., (n − 1)·d) -> (..., n, d); see :func:`from_com_free`."""
        return from_com_free(y, self.n_particles)

    def observables(self) -> dict[str, Observable]:
        return {"distances": Observable("distances", "", pair_distances)}

    def provenance(self) -> dict[str, Any] | None:
        """The shipped reference's provenance JSON, or None when it is absent."""
        path = data_dir() / f"{self.reference_file}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def reference_samples(self) -> np.ndarray:
        """The shipped MCMC sample, shape (n, n_particles, d), float64, centre of mass removed."""
        from boltzflow.io import load_npz

        path = data_dir() / f"{self.reference_file}.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; make it with the command in docs/systems.md")
        return load_npz(path, ["x"])["x"].astype(np.float64)

    def references(self) -> dict[str, Reference]:
        prov = self.provenance()
        if prov is None:
            return {}
        s = prov["settings"]
        tau_d = sum(p["tau_int_mean_distance"] for p in prov["per_seed"]) / len(prov["per_seed"])
        text = (f"{prov['n_samples']} samples, Metropolis MCMC: {len(prov['seeds'])} seeds x {s['n_chains']} chains, "
                f"burn-in {s['burn_in']}, thin {s['thin']} steps, acceptance {prov['acceptance']:.2f}, tau_int "
                f"{prov['tau_int_energy']:.0f} (u) and {tau_d:.0f} (mean distance) steps, {prov['wall_seconds']:.0f} s "
                f"(data/systems/{self.reference_file}.json)")
        return {"mcmc": Reference("mcmc", "samples", text, self.reference_samples)}

    def summary(self) -> dict[str, Any]:
        prov = self.provenance()
        extra = {} if prov is None else {"mcmc_provenance": {k: v for k, v in prov.items() if k != "per_seed"}}
        return {**super().summary(), "n_particles": self.n_particles, "com_free_dim": self.com_free_dim, **extra}


@register("dw4", summary="4 particles in 2-D, pairwise double well (Köhler et al. 2020), reduced units")
def _dw4() -> ParticleSystem:
    return ParticleSystem("dw4", MultiDoubleWellEnergy(**DW4_CONSTANTS),
                          "4 particles in 2-D with a pairwise double-well potential (DW4)", "dw4-mcmc")


@register("lj13", summary="13 Lennard-Jones particles in 3-D + harmonic COM restraint (Köhler et al. 2020)")
def _lj13() -> ParticleSystem:
    return ParticleSystem("lj13", LennardJonesClusterEnergy(**LJ13_CONSTANTS),
                          "13 Lennard-Jones particles in 3-D with a harmonic centre-of-mass restraint (LJ13)",
                          "lj13-mcmc")

