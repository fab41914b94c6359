"""MD data for the alanine dipeptide Boltzmann generator: loading, replica-wise split, internal coordinates.

The shipped MD used HBond constraints; the BG targets the unconstrained force field, so the (numerically) fixed
bond lengths are redrawn from their harmonic Boltzmann distribution (:func:`unconstrain_bonds`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzflow.energies.openmm_system import kt_kj_per_mol
from boltzflow.errors import BoltzflowError
from boltzflow.flows.internal import InternalCoordinates


def load_bg_data(data_path: str | Path | None, temperature_kelvin: float,
                 event_shape: tuple[int, ...]) -> dict[str, Any]:
    """MD frames for the BG: xyz (n, *event_shape) nm float64, forces_kt (n, dim) or None, replica (n,), source.

    Args:
        data_path: an ``.npz`` with ``xyz`` (and optionally ``forces_kj``, ``replica``, ``temperature_kelvin``);
            None: the shipped 60 ns dataset.
        temperature_kelvin: the BG's temperature; data simulated at another one are refused.
        event_shape: the system's (n_atoms, 3); frames of another shape are refused.
    """
    if data_path is None:
        from boltzflow.samplers.dataset import alanine_dataset_path, load_alanine_dataset

        ds = load_alanine_dataset()
        xyz, forces, replica, source = ds.xyz, ds.forces_kj, ds.replica, str(alanine_dataset_path().name)
        temperature = ds.temperature_kelvin
    else:
        with np.load(data_path) as f:
            xyz, forces = f["xyz"], (f["forces_kj"] if "forces_kj" in f.files else None)
            replica = f["replica"] if "replica" in f.files else np.zeros(len(xyz), dtype=np.int64)
            temperature = float(f["temperature_kelvin"]) if "temperature_kelvin" in f.files else temperature_kelvin
        source = str(data_path)
    if abs(temperature - temperature_kelvin) > 1e-6:
        raise BoltzflowError(f"data were simulated at {temperature} K; the BG targets {temperature_kelvin} K")
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.shape[1:] != tuple(event_shape):
        raise BoltzflowError(f"{source}: xyz must have shape (n, {', '.join(map(str, event_shape))}), got {xyz.shape}")
    kt = kt_kj_per_mol(temperature_kelvin)
    forces_kt = None if forces is None else np.asarray(forces, dtype=np.float64).reshape(len(xyz), -1) / kt
    return {"xyz": xyz, "forces_kt": forces_kt, "replica": np.asarray(replica), "source": source}


def split_by_replica(replica: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, test): the last ``test_fraction`` of the frames of every replica are the test set."""
    train, test = [], []
    for r in np.unique(replica):
        idx = np.flatnonzero(replica == r)
        n_test = int(round(test_fraction * len(idx)))
        train.append(idx[: len(idx) - n_test])
        test.append(idx[len(idx) - n_test :])
    return np.concatenate(train), np.concatenate(test)


def to_internal(ic: InternalCoordinates, xyz: np.ndarray) -> torch.Tensor:
    return ic.inverse(torch.as_tensor(xyz, dtype=torch.float64).flatten(-2))[0]


def unconstrain_bonds(
    q: torch.Tensor,
    ic: InternalCoordinates,
    system: Any,
    gen: np.random.Generator,
    temperature_kelvin: float,
    fixed: list[tuple[int, int]] | None = None,
    tol_nm: float = 1e-5,
):
    """Resample the bonds held fixed in the data from their harmonic Boltzmann distribution N(r0, kT/k).

    Args:
        q: internal coordinates of data frames, shape (n, 3 n_atoms - 6), nm/rad.
        ic: the internal-coordinate transform (its Z-matrix names each bond's atoms).
        system: the *unconstrained* ``openmm.System`` (its HarmonicBondForce gives r0 and k).
        gen: random source.
        temperature_kelvin: temperature of the Boltzmann distribution of the bond lengths.
        fixed: the atom pairs to resample; default: Z-matrix bonds whose spread in ``q`` is below ``tol_nm``.
        tol_nm: spread (max - min, nm) under which a bond counts as constrained.

    Returns:
        ``(q with resampled bonds, the resampled atom pairs)``.
    """
    import openmm
    import openmm.unit as unit

    harmonic = {}
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            for i in range(force.getNumBonds()):
                a, b, r0, k = force.getBondParameters(i)
                harmonic[frozenset((a, b))] = (
                    r0.value_in_unit(unit.nanometer),
                    k.value_in_unit(unit.kilojoule_per_mole / unit.nanometer**2),
                )
    rows = ic.zmatrix.rows
    pairs = [(int(rows[r, 0]), int(rows[r, 1])) for r in range(1, len(rows))]
    if fixed is None:
        spread = (q[:, ic.bond_idx].max(0).values - q[:, ic.bond_idx].min(0).values).numpy()
        fixed = [p for p, s in zip(pairs, spread, strict=True) if s < tol_nm]
    q = q.clone()
    kt = kt_kj_per_mol(temperature_kelvin)
    for pair in fixed:
        r0, k = harmonic[frozenset(pair)]
        col = int(ic.bond_idx[pairs.index(tuple(pair))])
        q[:, col] = torch.as_tensor(r0 + math.sqrt(kt / k) * gen.standard_normal(len(q)), dtype=q.dtype)
    return q, fixed


def oversample(x: torch.Tensor, mask: torch.Tensor, factor: int) -> torch.Tensor:
    """``x`` (n, D) with the m rows where ``mask`` (n,) holds repeated ``factor`` times: (n + (factor-1)m, D)."""
    if factor < 1:
        raise ValueError(f"oversampling factor must be >= 1, got {factor}")
    return torch.cat([x] + [x[mask]] * (factor - 1)) if factor > 1 else x
