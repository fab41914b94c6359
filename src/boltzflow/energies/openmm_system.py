"""Build OpenMM systems from a PDB file and force-field names (OpenMM is imported only here and in the bridge)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

BOLTZMANN_KJ_PER_MOL_K = 0.008314462618  # k_B * N_A in kJ/(mol K)

SOLVENTS = {
    "obc": ("amber99sbildn.xml", "amber99_obc.xml"),
    "vacuum": ("amber99sbildn.xml",),
}


def kt_kj_per_mol(temperature_kelvin: float) -> float:
    """k_B T in kJ/mol."""
    return BOLTZMANN_KJ_PER_MOL_K * temperature_kelvin


def alanine_dipeptide_pdb() -> Path:
    """Path of the shipped 22-atom ACE-ALA-NME PDB (atom order used by every alanine dataset)."""
    return Path(str(resources.files("boltzflow") / "data" / "alanine-dipeptide.pdb"))


@dataclass
class Molecule:
    """A molecule ready for simulation.

    Attributes:
        topology: ``openmm.app.Topology``.
        positions: shape (n_atoms, 3), nm.
        system: ``openmm.System``.
        forcefield: the XML files used.
        constraints: "HBonds" or "none".
        pdb_path: the source PDB.
    """

    topology: object
    positions: np.ndarray
    system: object
    forcefield: tuple[str, ...]
    constraints: str
    pdb_path: str

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])


def read_pdb(path: str | Path) -> Any:
    """``openmm.app.PDBFile`` of ``path`` with at least one atom and finite coordinates.

    Raises:
        FileNotFoundError: ``path`` does not exist or is a directory.
        ValueError: the file is not a PDB OpenMM can read, or holds no atoms (one line naming the file).
    """
    import openmm.app as app
    import openmm.unit as unit

    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"PDB file expected, got the directory {path}")
    if not path.is_file():
        raise FileNotFoundError(f"PDB file not found: {path}")
    try:
        with open(path) as fh:  # PDBFile(path) leaves its file open when parsing fails
            pdb = app.PDBFile(fh)
        n_atoms = pdb.topology.getNumAtoms()
        xyz = np.asarray(pdb.positions.value_in_unit(unit.nanometer), dtype=np.float64) if n_atoms else None
    except Exception as err:  # OpenMM's parser raises IndexError, ValueError, AttributeError, UnicodeError...
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path} is not a PDB file OpenMM can read ({detail})") from None
    if n_atoms == 0:
        raise ValueError(f"{path} holds no ATOM/HETATM records: give a PDB with the molecule's atoms")
    if xyz.shape != (n_atoms, 3) or not np.isfinite(xyz).all():
        raise ValueError(f"{path} has missing or non-finite coordinates")
    return pdb


def build_molecule(
    pdb_path: str | Path,
    forcefield: Sequence[str] = SOLVENTS["obc"],
    constraints: str = "HBonds",
    add_hydrogens: bool = False,
) -> Molecule:
    """Read a PDB and build its OpenMM ``System`` (NoCutoff).

    Args:
        pdb_path: PDB file; with ``add_hydrogens`` missing hydrogens are added from the force field's templates.
        forcefield: OpenMM force-field XML names, e.g. ``("amber99sbildn.xml", "amber99_obc.xml")``.
        constraints: "HBonds" (MD default) or "none" (energy evaluation of unconstrained coordinates).
        add_hydrogens: run ``Modeller.addHydrogens`` first (for heavy-atom-only PDBs).

    Raises:
        FileNotFoundError: the PDB does not exist (or is a directory).
        ValueError: unknown constraints option, a file that is not a PDB with atoms, or a force field OpenMM
            cannot apply.
    """
    import openmm.app as app
    import openmm.unit as unit

    cons = {"hbonds": app.HBonds, "none": None}
    if constraints.lower() not in cons:
        raise ValueError(f"constraints must be 'HBonds' or 'none', got {constraints!r}")
    path = Path(pdb_path)
    pdb = read_pdb(path)
    try:
        ff = app.ForceField(*forcefield)
    except Exception as err:  # OpenMM raises ValueError/OSError with long messages
        raise ValueError(f"cannot load force field {list(forcefield)}: {err}") from None
    topology, positions = pdb.topology, pdb.positions
    if add_hydrogens:
        modeller = app.Modeller(topology, positions)
        modeller.addHydrogens(ff)
        topology, positions = modeller.topology, modeller.positions
    try:
        system = ff.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=cons[constraints.lower()])
    except Exception as err:
        raise ValueError(f"force field {list(forcefield)} cannot parameterise {path.name}: {err}") from None
    xyz = np.asarray(positions.value_in_unit(unit.nanometer), dtype=np.float64)
    name = "HBonds" if constraints.lower() == "hbonds" else "none"
    return Molecule(topology, xyz, system, tuple(forcefield), name, str(path))


def alanine_dipeptide(solvent: str = "obc", constraints: str = "HBonds") -> Molecule:
    """Alanine dipeptide with AMBER99SB-ILDN, in OBC implicit solvent (default) or vacuum."""
    if solvent not in SOLVENTS:
        raise ValueError(f"solvent must be one of {sorted(SOLVENTS)}, got {solvent!r}")
    return build_molecule(alanine_dipeptide_pdb(), SOLVENTS[solvent], constraints)
