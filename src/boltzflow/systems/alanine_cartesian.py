"""Alanine dipeptide in 66 Cartesian coordinates (paper 001 §6.3): alignment, standardisation, pairs, LJ.

Data recipe: every frame is Kabsch-aligned (proper rotations, centroids matched) to the *mean structure*,
found by iterative alignment that starts from the shipped PDB structure (a fixed reference, so the result
does not depend on how the input frames are oriented), then flattened to 66 numbers in nm. The flow models
standardised coordinates (zero mean, unit variance per coordinate) through a fixed Affine
de-standardisation, so everything outside the flow (distances, energies) is in nm and kJ/mol.

The non-bonded pair set P is every atom pair not joined by one or two bonds in the topology's bond graph (1-4
pairs are included): 174 pairs for the 22-atom molecule. The paper's Lennard-Jones observable uses one
σ = 0.17 nm and ε = 1 kJ/mol for every pair of P.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from boltzflow.geometry import distances, kabsch_align

N_ATOMS = 22
N_NONBONDED_PAIRS = 174
PAPER_LJ_SIGMA_NM = 0.17
PAPER_LJ_EPSILON_KJ = 1.0


class AlignedData(NamedTuple):
    """Frames with rigid motions removed.

    Attributes:
        xyz: aligned positions, shape (n, 22, 3), nm, float64.
        reference: the mean structure they are aligned to, shape (22, 3), nm.
    """

    xyz: np.ndarray
    reference: np.ndarray


class Standardizer(NamedTuple):
    """Per-coordinate affine map of flattened frames: s = (x - loc) / scale.

    Attributes:
        loc: mean, shape (66,), nm.
        scale: standard deviation, shape (66,), nm (> 0).
    """

    loc: np.ndarray
    scale: np.ndarray


class PCA(NamedTuple):
    """Principal axes of the standardised data.

    Attributes:
        mean: shape (D,).
        components: orthonormal rows, shape (k, D), by decreasing variance.
        explained_variance: shape (k,).
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray


def bond_graph_pairs(bonds: np.ndarray | list, n_atoms: int) -> np.ndarray:
    """Atom pairs (i < j) separated by three or more bonds in a bond graph, or not connected at all.

    Args:
        bonds: bonded atom pairs, shape (m, 2), 0-based.
        n_atoms: number of atoms.

    Returns:
        int64 array of shape (p, 2), sorted lexicographically.
    """
    adj = np.zeros((n_atoms, n_atoms), dtype=bool)
    b = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if b.size and (b.min() < 0 or b.max() >= n_atoms):
        raise ValueError(f"bond indices must lie in [0, {n_atoms}), got {b.min()}..{b.max()}")
    adj[b[:, 0], b[:, 1]] = adj[b[:, 1], b[:, 0]] = True
    two = (adj.astype(np.int64) @ adj.astype(np.int64)) > 0  # joined through a common neighbour (1-3)
    close = adj | two | np.eye(n_atoms, dtype=bool)
    i, j = np.nonzero(np.triu(~close, k=1))
    return np.stack([i, j], axis=1).astype(np.int64)


@cache
def topology_bonds() -> tuple[tuple[int, int], ...]:
    """Bonds of the shipped alanine dipeptide PDB's topology (OpenMM residue templates), 0-based."""
    import openmm.app as app

    from boltzflow.energies.openmm_system import alanine_dipeptide_pdb

    topology = app.PDBFile(str(alanine_dipeptide_pdb())).topology
    return tuple(sorted((min(a.index, b.index), max(a.index, b.index)) for a, b in topology.bonds()))


def nonbonded_pairs() -> np.ndarray:
    """The pair set P of eq. (17) for alanine dipeptide: shape (174, 2), int64 (1-4 pairs included)."""
    pairs = bond_graph_pairs(np.asarray(topology_bonds()), N_ATOMS)
    if len(pairs) != N_NONBONDED_PAIRS:
        raise ValueError(
            f"expected {N_NONBONDED_PAIRS} non-bonded pairs, found {len(pairs)}; is the PDB intact?"
        )
    return pairs


def reference_structure() -> np.ndarray:
    """Positions of the shipped PDB, shape (22, 3), nm: the fixed start of the iterative alignment."""
    import openmm.app as app
    import openmm.unit as unit

    from boltzflow.energies.openmm_system import alanine_dipeptide_pdb

    pdb = app.PDBFile(str(alanine_dipeptide_pdb()))
    return np.asarray(pdb.positions.value_in_unit(unit.nanometer), dtype=np.float64)


def align_to_mean(xyz: np.ndarray, start: np.ndarray | None = None, iterations: int = 5) -> AlignedData:
    """Kabsch-align frames to their mean structure (iteratively, starting from a fixed reference).

    Each iteration aligns every frame to the current reference and replaces the reference by the mean of the
    aligned frames. Because the first reference is fixed (``start``, the shipped PDB by default), the output
    does not change when the input frames are rotated or translated.

    Args:
        xyz: positions, shape (n, n_atoms, 3), nm.
        start: first reference, shape (n_atoms, 3), nm; default :func:`reference_structure`.
        iterations: alignment rounds (>= 1).

    Returns:
        :class:`AlignedData` in float64.
    """
    x = torch.as_tensor(np.asarray(xyz, dtype=np.float64))
    if x.ndim != 3 or x.shape[-1] != 3 or len(x) == 0:
        raise ValueError(f"xyz must have shape (n, n_atoms, 3) with n >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("xyz contains NaN or inf; clean the frames first")
    ref = torch.as_tensor(reference_structure() if start is None else np.asarray(start, dtype=np.float64))
    ref = ref - ref.mean(0)
    aligned = x
    for _ in range(max(1, iterations)):
        aligned = kabsch_align(x, ref)
        ref = aligned.mean(0)
    return AlignedData(aligned.numpy(), ref.numpy())


def fit_standardizer(x: np.ndarray, min_scale: float = 1e-6) -> Standardizer:
    """Per-coordinate mean and standard deviation of flattened frames.

    Args:
        x: shape (n, D), nm.
        min_scale: lower bound on the standard deviation, nm (guards frozen coordinates).
    """
    x = np.asarray(x, dtype=np.float64)
    return Standardizer(x.mean(0), np.maximum(x.std(0), min_scale))


def standardize(x: np.ndarray, st: Standardizer) -> np.ndarray:
    """(x - loc) / scale, x of shape (..., D) in nm -> dimensionless."""
    return (np.asarray(x, dtype=np.float64) - st.loc) / st.scale


def unstandardize(s: np.ndarray, st: Standardizer) -> np.ndarray:
    """Inverse of :func:`standardize`: shape (..., D) -> nm."""
    return np.asarray(s, dtype=np.float64) * st.scale + st.loc


def to_xyz(x: Tensor) -> Tensor:
    """Flattened frames (..., 66) -> positions (..., 22, 3) (same unit)."""
    return x.reshape(*x.shape[:-1], N_ATOMS, 3)


def min_distance(x: Tensor, pairs: Tensor | np.ndarray) -> Tensor:
    """Smallest distance over the pairs, x (..., n_atoms, 3) nm -> (...) nm."""
    return distances(x, torch.as_tensor(pairs, device=x.device)).amin(-1)


def paper_lj_energy(
    x: Tensor,
    pairs: Tensor | np.ndarray,
    sigma: float = PAPER_LJ_SIGMA_NM,
    epsilon: float = PAPER_LJ_EPSILON_KJ,
) -> Tensor:
    """The paper's Lennard-Jones observable: sum over pairs of 4ε[(σ/r)^12 - (σ/r)^6].

    Args:
        x: positions, shape (..., n_atoms, 3), nm.
        pairs: atom pairs, shape (m, 2).
        sigma: σ, nm.
        epsilon: ε, kJ/mol.

    Returns:
        energy, shape (...), kJ/mol.
    """
    r = distances(x, torch.as_tensor(pairs, device=x.device))
    s6 = (sigma / r) ** 6
    return (4.0 * epsilon * (s6 * s6 - s6)).sum(-1)


def fit_pca(x: np.ndarray, k: int = 2) -> PCA:
    """Top-``k`` principal axes of ``x`` (n, D) via SVD of the centred data."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    return PCA(mean, vt[:k], s[:k] ** 2 / max(len(x) - 1, 1))


def pca_project(x: np.ndarray, pca: PCA) -> np.ndarray:
    """Coordinates along the principal axes, (n, D) -> (n, k)."""
    return (np.asarray(x, dtype=np.float64) - pca.mean) @ pca.components.T
