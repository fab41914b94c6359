"""Capped peptides ``peptide:SEQ`` = ACE-SEQ-NME for any one-letter sequence, with MD references where shipped.

``get_system("peptide:GW")`` builds ACE-Gly-Trp-NME offline (:mod:`boltzflow.systems.peptide_build`: PeptideBuilder
backbone, OpenMM hydrogens, minimisation), caches the PDB and returns a :class:`PeptideSystem`, a
:class:`~boltzflow.systems.molecule.MoleculeSystem` with AMBER99SB-ILDN + OBC at 300 K by default. The torch force
field, the Z-matrix from the topology and the backbone (φ, ψ) per residue come from the base class; no code
changes for a new sequence.

Shipped (``boltzflow/data/peptides/``, no build needed): the alanine tetrapeptide ``peptide:AAA`` (42 atoms,
3·42 − 6 = 120 internal coordinates) and hexapeptide ``peptide:AAAAA`` (62 atoms, 180), each with a short MD
reference ``md`` for evaluation (``SEQ-md.npz`` + ``SEQ-md.json`` provenance; how they were made:
``docs/peptides.md`` and ``docs/results/peptides/``).

Observables: ``phi_psi`` (n, n_residues, 2) rad and ``basin`` (n, n_residues), an index into
:data:`~boltzflow.systems.alanine.BASINS` per residue, with alanine dipeptide's basin boundaries.
:func:`ramachandran_per_residue` draws one (φ, ψ) histogram per residue.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.energies.openmm_system import SOLVENTS
from boltzflow.systems.alanine import BASINS, basin_labels
from boltzflow.systems.base import Observable, Reference
from boltzflow.systems.molecule import MoleculeSystem
from boltzflow.systems.peptide_build import parse_sequence, peptide_pdb
from boltzflow.systems.registry import register

SHIPPED = ("AAA", "AAAAA")


def reference_path(sequence: str) -> Path:
    """Path of the shipped MD reference ``boltzflow/data/peptides/SEQ-md.npz`` (it may not exist)."""
    return Path(str(resources.files("boltzflow") / "data" / "peptides" / f"{parse_sequence(sequence)}-md.npz"))


class PeptideSystem(MoleculeSystem):
    """ACE-``sequence``-NME with AMBER99SB-ILDN in OBC implicit solvent (default) or vacuum.

    Args:
        sequence: one-letter codes of the residues between the caps (``"AAA"``, ``"GW"``).
        solvent: ``"obc"`` or ``"vacuum"``.
        temperature_kelvin: temperature of the reduced energy.

    Raises:
        ValueError: empty sequence or unknown residue letter (one line naming it).
    """

    def __init__(self, sequence: str, solvent: str = "obc", temperature_kelvin: float = 300.0) -> None:
        self.sequence = parse_sequence(sequence)
        suffix = "" if solvent == "obc" else f"-{solvent}"
        super().__init__(
            f"peptide:{self.sequence}{suffix}", peptide_pdb(self.sequence), solvent, temperature_kelvin,
            f"ACE-{self.sequence}-NME, AMBER99SB-ILDN{' + OBC' if solvent == 'obc' else ', vacuum'}",
        )

    @property
    def n_residues(self) -> int:
        """Residues between the caps (each has one (φ, ψ) pair)."""
        return len(self.sequence)

    def dataset(self) -> Any:
        """The shipped MD reference as a :class:`~boltzflow.samplers.dataset.MDDataset` (positions float32 nm,
        energies kJ/mol, forces float16 kJ/mol/nm, replica, time, provenance).

        Raises:
            ValueError: this sequence, solvent or temperature has no shipped reference.
        """
        from boltzflow.samplers.dataset import load_dataset

        path = reference_path(self.sequence)
        if self.solvent != "obc" or self.temperature_kelvin != 300.0 or not path.is_file():
            raise ValueError(
                f"{self.name} at {self.temperature_kelvin:g} K has no shipped MD reference; shipped: "
                f"{', '.join('peptide:' + s for s in SHIPPED)} in OBC at 300 K (make one with boltzflow simulate)"
            )
        return load_dataset(path)

    def references(self) -> dict[str, Reference]:
        path = reference_path(self.sequence)
        if self.solvent != "obc" or self.temperature_kelvin != 300.0 or not path.is_file():
            return {}
        meta = _reference_summary(path.with_suffix(".json"))

        def md() -> np.ndarray:
            return np.asarray(self.dataset().xyz, dtype=np.float64)

        return {"md": Reference("md", "samples", f"{meta} ({path.name}, docs/peptides.md)", md)}

    def basins(self, xyz: Tensor | np.ndarray) -> Tensor:
        """Basin index into :data:`~boltzflow.systems.alanine.BASINS` per residue, shape (..., n_residues), int64.

        Args:
            xyz: positions, shape (..., n_atoms, 3), nm.
        """
        angles = self.phi_psi(xyz).detach().cpu().numpy()
        return torch.as_tensor(basin_labels(angles), dtype=torch.int64)

    def basin_populations(self, xyz: Tensor | np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Weighted fraction of frames in each basin, per residue, shape (n_residues, len(BASINS)); rows sum to 1.

        Args:
            xyz: positions, shape (n, n_atoms, 3), nm.
            weights: non-negative weights, shape (n,) (default: equal).
        """
        labels = self.basins(xyz).numpy().reshape(-1, self.n_residues)
        w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (len(labels),) or not (np.all(w >= 0) and w.sum() > 0):
            raise ValueError(f"weights must be {len(labels)} non-negative numbers with a positive sum")
        onehot = labels[..., None] == np.arange(len(BASINS))
        return np.einsum("n,nrb->rb", w / w.sum(), onehot)

    def observables(self) -> dict[str, Observable]:
        return {**super().observables(), "basin": Observable("basin", "index", self.basins)}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "sequence": self.sequence, "n_residues": self.n_residues}


def _reference_summary(provenance_json: Path) -> str:
    """One line from the reference's provenance: replicas kept × length, frames and their spacing, wall time."""
    import json

    if not provenance_json.is_file():
        return "MD reference"
    prov = json.loads(provenance_json.read_text())
    cfg, packing = prov.get("config", {}), prov.get("packing", {})
    replicas = len(packing["replicas_kept"]) if "replicas_kept" in packing else cfg.get("replicas", "?")
    every = f" every {packing['frame_interval_ps']:g} ps" if "frame_interval_ps" in packing else ""
    wall = prov.get("wall_time_s")
    wall_text = f", {wall / 3600:.1f} h wall" if isinstance(wall, int | float) else ""
    ns, kelvin = cfg.get("ns", float("nan")), cfg.get("temperature_kelvin", float("nan"))
    return (f"{replicas} x {ns:g} ns OBC MD at {kelvin:g} K, "
            f"{packing.get('n_frames', '?')} frames{every}{wall_text}")


def ramachandran_per_residue(
    system: MoleculeSystem, xyz: Tensor | np.ndarray, weights: np.ndarray | None = None, bins: int = 60
) -> Any:
    """One (φ, ψ) panel per residue: the free energy −log p of a 2-D histogram, in kT, degrees on both axes.

    Args:
        system: a molecule system with ``phi_psi`` (a :class:`PeptideSystem`, alanine dipeptide).
        xyz: positions, shape (n, n_atoms, 3), nm.
        weights: importance weights, shape (n,) (default: equal).
        bins: histogram bins per axis over (−180°, 180°].

    Returns:
        a ``matplotlib.figure.Figure`` (no pyplot state).
    """
    from matplotlib.figure import Figure

    angles = np.degrees(system.observables()["phi_psi"].fn(_as_tensor(xyz)).detach().cpu().numpy())
    angles = angles.reshape(-1, angles.shape[-2], 2)
    labels = [label for label, _, _ in system.backbone_dihedrals()]  # type: ignore[attr-defined]
    fig = Figure(figsize=(3.2 * len(labels) + 0.8, 3.2))
    axes = fig.subplots(1, len(labels), sharey=True, squeeze=False)[0]
    edges = np.linspace(-180.0, 180.0, bins + 1)
    image = None
    for r, (ax, label) in enumerate(zip(axes, labels, strict=True)):
        h, _, _ = np.histogram2d(angles[:, r, 0], angles[:, r, 1], bins=[edges, edges], weights=weights)
        with np.errstate(divide="ignore"):
            f = -np.log(h / h.sum())
        f -= f[np.isfinite(f)].min()
        image = ax.pcolormesh(edges, edges, np.where(np.isfinite(f), f, np.nan).T, cmap="viridis", vmax=8.0)
        ax.set_title(label)
        ax.set_xlabel("φ (deg)")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
    axes[0].set_ylabel("ψ (deg)")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="free energy (kT)")
    return fig


def _as_tensor(xyz: Tensor | np.ndarray) -> Tensor:
    return xyz if isinstance(xyz, Tensor) else torch.as_tensor(np.asarray(xyz, dtype=np.float64))


@register("peptide:", prefix=True, summary="capped peptide ACE-SEQ-NME from one-letter codes, AMBER99SB-ILDN + OBC",
          examples=tuple(f"peptide:{s}" for s in SHIPPED))
def _peptide(suffix: str, solvent: str = "obc", temperature_kelvin: float = 300.0, **info: object) -> PeptideSystem:
    """``peptide:SEQ`` (OBC) or ``peptide:SEQ-vacuum``: the name a system reports builds it again."""
    sequence, dash, named_solvent = suffix.partition("-")
    if dash:
        if named_solvent not in SOLVENTS:
            raise ValueError(f"peptide:{suffix}: the solvent after '-' must be one of {sorted(SOLVENTS)}")
        solvent = named_solvent
    return PeptideSystem(sequence, solvent, temperature_kelvin)
