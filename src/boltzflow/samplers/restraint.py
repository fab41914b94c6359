"""The harmonic dihedral restraint of umbrella sampling, as an OpenMM force and as its NumPy twin.

The bias is ``0.5 k d(θ, θ0)^2`` with ``d`` the shortest distance on the circle, so a window centred near ±180°
sees no jump where the angle wraps. :func:`dihedral_restraint` is what OpenMM integrates and
:func:`bias_energy_kj` the same function in NumPy (the tests hold the two against each other and a closed form).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch

from boltzflow.geometry import dihedrals

RESTRAINT_EXPRESSION = (
    "0.5*umbrella_k*min(dtheta, 2*pi-dtheta)^2; dtheta = abs(theta-umbrella_theta0); pi = 3.1415926535"
)


def window_centers(n_windows: int) -> np.ndarray:
    """Centres ``-pi + 2 pi i / n``, shape (n_windows,), rad."""
    return -math.pi + 2.0 * math.pi * np.arange(n_windows) / n_windows


def periodic_distance(theta: np.ndarray, theta0: np.ndarray | float) -> np.ndarray:
    """Shortest angular distance |θ - θ0| on the circle, in [0, pi] (broadcasts), rad."""
    d = np.abs(np.remainder(np.asarray(theta) - theta0 + math.pi, 2.0 * math.pi) - math.pi)
    return np.minimum(d, 2.0 * math.pi - d)


def bias_energy_kj(theta: np.ndarray, theta0: np.ndarray | float, k_kj_per_mol_rad2: float) -> np.ndarray:
    """The restraint energy 0.5 k d(θ, θ0)^2 in kJ/mol (NumPy twin of the OpenMM force; broadcasts)."""
    return 0.5 * k_kj_per_mol_rad2 * periodic_distance(theta, theta0) ** 2


def dihedral_restraint(atoms: tuple[int, int, int, int], theta0: float, k_kj_per_mol_rad2: float) -> Any:
    """``CustomTorsionForce`` 0.5 k d(θ, θ0)^2; global parameters ``umbrella_theta0``, ``umbrella_k``."""
    import openmm

    force = openmm.CustomTorsionForce(RESTRAINT_EXPRESSION)
    force.addGlobalParameter("umbrella_theta0", float(theta0))
    force.addGlobalParameter("umbrella_k", float(k_kj_per_mol_rad2))
    force.addTorsion(*[int(a) for a in atoms], [])
    return force


def restrained_system(system: Any, atoms: tuple[int, int, int, int], theta0: float, k: float) -> Any:
    """A copy of ``system`` with :func:`dihedral_restraint` added (the input is left unchanged)."""
    out = copy.deepcopy(system)
    out.addForce(dihedral_restraint(atoms, theta0, k))
    return out


def dihedral(xyz: np.ndarray, atoms: tuple[int, int, int, int]) -> float | np.ndarray:
    """Dihedral of ``atoms`` in positions (..., n_atoms, 3) nm: shape (...) rad (a float for one frame)."""
    x = torch.as_tensor(np.asarray(xyz, dtype=np.float64))
    out = dihedrals(x, [list(atoms)])[..., 0].numpy()
    return float(out) if out.ndim == 0 else out


def chain_order(positions: np.ndarray, atoms: tuple[int, int, int, int], centers: np.ndarray) -> list[int]:
    """Window indices in the order a chain of windows is started: from the one nearest the dihedral ``atoms`` of
    ``positions`` (n_atoms, 3), ascending round the ring of ``centers`` (n_windows,)."""
    first = int(np.argmin(periodic_distance(centers, dihedral(positions, atoms))))
    return [(first + i) % len(centers) for i in range(len(centers))]
