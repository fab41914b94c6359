"""Molecules as systems: a PDB, a force field and a temperature; the one place the AMBER energy is built.

:class:`MoleculeSystem` serves every molecule (alanine dipeptide, ``peptide:SEQ``, a user's PDB):

* ``molecule(constraints)``: the OpenMM topology, positions and ``System`` (``"none"`` for energies of
  unconstrained coordinates, ``"HBonds"`` for MD);
* ``energy()``: :class:`~boltzflow.energies.amber.AmberEnergy` of the unconstrained system at
  ``temperature_kelvin`` (cached; float64 parameters, computes in the dtype and on the device of its input);
* ``zmatrix()``: the Z-matrix from the topology's bond graph, with sibling torsions re-referenced (the
  internal-coordinate layout the BG flows use);
* ``backbone_dihedrals()``: φ/ψ atom quadruples per residue, read from residue and atom names;
* observables: ``phi_psi`` (n, n_residues, 2) radians.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.energies.openmm_system import SOLVENTS, Molecule, build_molecule
from boltzflow.geometry import dihedrals
from boltzflow.systems.base import Observable, System

CAP_RESIDUES = ("ACE", "NME", "NH2")


class MoleculeSystem(System):
    """A molecule from a PDB file with an OpenMM force field, sampled at ``temperature_kelvin``.

    Args:
        name: registry name.
        pdb_path: PDB with all atoms (hydrogens included); its atom order is the order of every array.
        solvent: a key of :data:`~boltzflow.energies.openmm_system.SOLVENTS` (``"obc"`` or ``"vacuum"``).
        temperature_kelvin: temperature of the reduced energy.
        description: one line for listings.
    """

    def __init__(
        self,
        name: str,
        pdb_path: str | Path,
        solvent: str = "obc",
        temperature_kelvin: float = 300.0,
        description: str = "",
    ) -> None:
        if solvent not in SOLVENTS:
            raise ValueError(f"solvent must be one of {sorted(SOLVENTS)}, got {solvent!r}")
        if not temperature_kelvin > 0:
            raise ValueError(f"temperature_kelvin must be > 0, got {temperature_kelvin}")
        self.name = name
        self.pdb_path = Path(pdb_path)
        self.solvent = solvent
        self.temperature_kelvin = float(temperature_kelvin)
        self.description = description
        self.event_shape = (self.n_atoms, 3)

    @property
    def forcefield(self) -> tuple[str, ...]:
        """The OpenMM force-field XML files."""
        return SOLVENTS[self.solvent]

    def molecule(self, constraints: str = "none") -> Molecule:
        """The OpenMM molecule (topology, positions nm, System) with ``constraints`` "none" or "HBonds"."""
        return build_molecule(self.pdb_path, self.forcefield, constraints)

    @cached_property
    def topology(self) -> Any:
        """The ``openmm.app.Topology`` of the PDB."""
        import openmm.app as app

        return app.PDBFile(str(self.pdb_path)).topology

    @cached_property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.topology.getNumAtoms())

    def positions(self) -> np.ndarray:
        """Positions of the PDB, shape (n_atoms, 3), nm, float64."""
        import openmm.app as app
        import openmm.unit as unit

        pdb = app.PDBFile(str(self.pdb_path))
        return np.asarray(pdb.positions.value_in_unit(unit.nanometer), dtype=np.float64)

    def energy(self) -> Any:
        """Reduced AMBER energy (kT) of unconstrained coordinates, by the torch force field (cached)."""
        return self._energy

    @cached_property
    def _energy(self) -> Any:
        from boltzflow.energies.amber import AmberEnergy

        return AmberEnergy.from_system(self.molecule("none").system, self.temperature_kelvin)

    def zmatrix(self) -> Any:
        """Z-matrix from the bond graph with sibling torsions (:func:`~boltzflow.flows.ic_flow.sibling_torsions`)."""
        from boltzflow.flows.ic_flow import sibling_torsions
        from boltzflow.flows.zmatrix import build_zmatrix

        return sibling_torsions(build_zmatrix(self.topology))

    def bonds(self) -> list[tuple[int, int]]:
        """Bonded atom pairs (i < j) of the topology, 0-based."""
        return sorted((min(a.index, b.index), max(a.index, b.index)) for a, b in self.topology.bonds())

    def backbone_dihedrals(self) -> list[tuple[str, tuple[int, int, int, int], tuple[int, int, int, int]]]:
        """``(residue label, φ atoms, ψ atoms)`` for every non-cap residue with both angles defined.

        φ = C(i-1)–N–CA–C and ψ = N–CA–C–N(i+1), from atom names; caps (ACE, NME) provide the outer C and N.
        """
        residues = list(self.topology.residues())
        atoms = [{a.name: a.index for a in r.atoms()} for r in residues]
        out = []
        for i, res in enumerate(residues):
            if res.name in CAP_RESIDUES or i == 0 or i == len(residues) - 1:
                continue
            prev, here, nxt = atoms[i - 1], atoms[i], atoms[i + 1]
            if not ({"N", "CA", "C"} <= here.keys() and "C" in prev and "N" in nxt):
                continue
            phi = (prev["C"], here["N"], here["CA"], here["C"])
            psi = (here["N"], here["CA"], here["C"], nxt["N"])
            out.append((f"{res.name}{res.index + 1}", phi, psi))
        return out

    def phi_psi(self, xyz: Tensor | np.ndarray) -> Tensor:
        """Backbone (φ, ψ) per residue, shape (..., n_residues, 2), radians in (-pi, pi].

        Args:
            xyz: positions, shape (..., n_atoms, 3), nm.
        """
        x = torch.as_tensor(np.asarray(xyz, dtype=np.float64)) if isinstance(xyz, np.ndarray) else xyz
        if tuple(x.shape[-2:]) != self.event_shape:
            raise ValueError(f"{self.name} positions must have shape (..., {self.n_atoms}, 3), got {tuple(x.shape)}")
        quads = [q for _, phi, psi in self.backbone_dihedrals() for q in (phi, psi)]
        if not quads:
            return x.new_zeros(*x.shape[:-2], 0, 2)
        return dihedrals(x, quads).unflatten(-1, (-1, 2))

    def observables(self) -> dict[str, Observable]:
        return {"phi_psi": Observable("phi_psi", "rad", self.phi_psi)}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "n_atoms": self.n_atoms, "forcefield": list(self.forcefield),
                "pdb": self.pdb_path.name}
