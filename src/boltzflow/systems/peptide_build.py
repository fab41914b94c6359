"""Capped peptides from a one-letter sequence: ACE-SEQ-NME, built offline, minimised and cached on disk.

How a structure is made (:func:`build_pdb_text`), with no network access and no random numbers:

1. **Backbone and side chains** from PeptideBuilder (ideal residue geometry from Engh & Huber) for the sequence
   ``G + SEQ + G``, with every backbone angle in the β region (φ = −120°, ψ = 140°; φ = −70° for proline, whose
   ring fixes φ) and trans peptide bonds.
2. **Caps** from the two flanking glycines: the first becomes ACE (its N dropped, CA renamed CH3) and the last
   NME (its C and O dropped, CA renamed C). The cap carbons therefore sit exactly where a peptide continues, with
   ideal bond lengths and angles.
3. **Hydrogens** from OpenMM's ``Modeller.addHydrogens`` with the force field's templates (pH 7: Asp, Glu
   deprotonated, Lys, Arg protonated, His tautomer from the geometry).
4. **Minimisation** of the unconstrained AMBER99SB-ILDN + OBC energy (OpenMM Reference platform, double precision,
   L-BFGS to 1 kJ/mol/nm), so the stored structure is a local minimum of the energy the system samples.

PeptideBuilder and OpenMM are used because they do these steps well; this module only glues them together and
handles the two cap residues, which neither tool builds. Builds are deterministic and cached as PDB files under
:func:`cache_dir` (``$BOLTZFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/boltzflow``, else ``~/.cache/boltzflow``),
named by sequence and :data:`BUILD_VERSION`; the shipped sequences are read from ``boltzflow/data/peptides/``.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from boltzflow.io import save_text

THREE_LETTER = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU", "G": "GLY", "H": "HIS",
    "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE", "P": "PRO", "S": "SER", "T": "THR", "W": "TRP",
    "Y": "TYR", "V": "VAL",
}
BUILD_VERSION = 1  # bump when the recipe changes: cached files of older versions are then ignored
BUILD_FORCEFIELD = ("amber99sbildn.xml", "amber99_obc.xml")
PHI_DEG, PSI_DEG, PHI_PRO_DEG = -120.0, 140.0, -70.0
MINIMISE_TOLERANCE_KJ_PER_NM = 1.0


def parse_sequence(sequence: str) -> str:
    """Validate a one-letter sequence (the ``SEQ`` of ``peptide:SEQ``) and return it in upper case.

    Raises:
        ValueError: empty sequence or a letter that is not one of the 20 standard amino acids (one line).
    """
    seq = sequence.strip().upper()
    if not seq:
        raise ValueError("peptide sequence is empty: write peptide:SEQ with one-letter codes, e.g. peptide:AAA")
    bad = sorted({c for c in seq if c not in THREE_LETTER})
    if bad:
        raise ValueError(
            f"peptide sequence {sequence!r} has unknown residue letter(s) {', '.join(map(repr, bad))}; "
            f"use the 20 standard one-letter codes {''.join(sorted(THREE_LETTER))}"
        )
    return seq


def cache_dir() -> Path:
    """Folder of cached builds: ``$BOLTZFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/boltzflow``, else ``~/.cache/...``."""
    if os.environ.get("BOLTZFLOW_CACHE_DIR"):
        return Path(os.environ["BOLTZFLOW_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "boltzflow"


def shipped_pdb(sequence: str) -> Path | None:
    """Path of the shipped PDB of ``sequence`` in ``boltzflow/data/peptides/``, or None."""
    path = Path(str(resources.files("boltzflow") / "data" / "peptides" / f"{parse_sequence(sequence)}.pdb"))
    return path if path.is_file() else None


def cached_pdb_path(sequence: str) -> Path:
    """Where the build of ``sequence`` is cached (whether or not it exists yet)."""
    return cache_dir() / "peptides" / f"ACE-{parse_sequence(sequence)}-NME.v{BUILD_VERSION}.pdb"


def peptide_pdb(sequence: str) -> Path:
    """The PDB of ACE-``sequence``-NME: shipped, else cached, else built now and cached (atomically)."""
    seq = parse_sequence(sequence)
    shipped = shipped_pdb(seq)
    if shipped is not None:
        return shipped
    path = cached_pdb_path(seq)
    if not path.is_file():
        save_text(path, build_pdb_text(seq))
    return path


def build_pdb_text(sequence: str) -> str:
    """Build ACE-``sequence``-NME (steps 1-4 of the module docstring) and return it as PDB text.

    The text holds REMARK lines (sequence, recipe version, minimised energy) and no date, so equal inputs give
    equal files.
    """
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    seq = parse_sequence(sequence)
    pdb = app.PDBFile(io.StringIO(_capped_heavy_atoms_pdb(seq)))
    forcefield = app.ForceField(*BUILD_FORCEFIELD)
    modeller = app.Modeller(pdb.topology, pdb.positions)
    with _seeded_python_random(BUILD_VERSION):  # Modeller places new hydrogens with the global `random`
        modeller.addHydrogens(forcefield, pH=7.0, platform=openmm.Platform.getPlatformByName("Reference"))
    positions, energy_kj = _minimise(modeller.topology, modeller.positions, forcefield)
    out = io.StringIO()
    out.write(f"REMARK   1 ACE-{seq}-NME BUILT BY BOLTZFLOW PEPTIDE_BUILD VERSION {BUILD_VERSION}\n")
    out.write("REMARK   1 PEPTIDEBUILDER BACKBONE, OPENMM MODELLER HYDROGENS, MINIMISED WITH ")
    out.write(f"{' + '.join(BUILD_FORCEFIELD).upper()}\n")
    out.write(f"REMARK   1 MINIMISED POTENTIAL ENERGY {energy_kj:.3f} KJ/MOL\n")
    app.PDBFile.writeModel(modeller.topology, positions * unit.nanometer, out)
    app.PDBFile.writeFooter(modeller.topology, out)
    return out.getvalue()


def _capped_heavy_atoms_pdb(seq: str) -> str:
    """PDB text of the heavy atoms of ACE-seq-NME, from PeptideBuilder's G-seq-G with the glycines made caps."""
    import PeptideBuilder
    from Bio.PDB import PDBIO

    chain = "G" + seq + "G"
    phi = [PHI_PRO_DEG if c == "P" else PHI_DEG for c in chain[1:]]  # PeptideBuilder: from the 2nd residue on
    structure = PeptideBuilder.make_structure(chain, phi, [PSI_DEG] * (len(chain) - 1))
    residues = list(structure.get_residues())
    ace, nme = residues[0], residues[-1]
    for residue, drop in ((ace, ("N",)), (nme, ("C", "O", "OXT"))):
        for name in drop:
            if name in residue:
                residue.detach_child(name)
    ace.resname, nme.resname = "ACE", "NME"
    _rename(ace["CA"], "CH3")
    _rename(nme["CA"], "C")
    writer = PDBIO()
    writer.set_structure(structure)
    text = io.StringIO()
    writer.save(text)
    return text.getvalue()


@contextlib.contextmanager
def _seeded_python_random(seed: int) -> Iterator[None]:
    """Seed Python's global ``random`` for the block and restore its previous state afterwards."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _rename(atom: object, name: str) -> None:
    atom.name = name  # type: ignore[attr-defined]
    atom.fullname = f" {name:<3}"  # type: ignore[attr-defined]


def _minimise(topology: object, positions: object, forcefield: object) -> tuple[np.ndarray, float]:
    """Minimise the unconstrained energy on the Reference platform; positions (n_atoms, 3) nm and energy kJ/mol."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None)  # type: ignore[attr-defined]
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, MINIMISE_TOLERANCE_KJ_PER_NM, 0)
    state = context.getState(getPositions=True, getEnergy=True)
    xyz = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    energy = float(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    del context, integrator
    return xyz, energy
