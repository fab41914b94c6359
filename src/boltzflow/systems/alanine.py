"""Alanine dipeptide (ACE-ALA-NME, 22 atoms): backbone dihedrals and conformational basins (paper 001 §6.2).

Atom indices refer to the shipped PDB (``boltzflow/data/alanine-dipeptide.pdb``), the atom order of every
alanine dataset in this package. They are read from the topology by residue and atom name.

Basins on the Ramachandran plane (degrees; φ, ψ in (-180, 180]). The boundaries follow the usual coarse
partition of alanine dipeptide's (φ, ψ) map; a point belongs to the first basin whose test it passes:

* ``C7eq/beta``: φ < 0 and (ψ > 120 or ψ <= -120)   -- extended region (C5, PII and C7eq),
* ``alphaR``:    φ < 0 and -120 < ψ <= 120        -- right-handed helix and bridge region,
* ``alphaL``:    0 < φ < 120                       -- the left-handed helix and C7ax (φ > 0 basins),
* ``other``:     everything else (φ >= 120, φ = 0).

The φ > 0 boundary (0°, 120°) is the one the alanine issue uses for αL; φ < 0 is split at ψ = ±120°.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.geometry import dihedrals
from boltzflow.systems.base import Observable, Reference
from boltzflow.systems.molecule import MoleculeSystem
from boltzflow.systems.registry import register

BASINS = ("C7eq/beta", "alphaR", "alphaL", "other")


@cache
def backbone_dihedral_indices() -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Atom indices of φ = C(ACE)–N–CA–C and ψ = N–CA–C–N(NME) in the shipped PDB (0-based)."""
    import openmm.app as app

    from boltzflow.energies.openmm_system import alanine_dipeptide_pdb

    topology = app.PDBFile(str(alanine_dipeptide_pdb())).topology
    names = {(atom.residue.name, atom.name): atom.index for atom in topology.atoms()}
    wanted = [("ACE", "C"), ("ALA", "N"), ("ALA", "CA"), ("ALA", "C"), ("NME", "N")]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"alanine dipeptide PDB lacks atoms {missing}; use the shipped ACE-ALA-NME file")
    c_ace, n, ca, c, n_nme = (names[w] for w in wanted)
    return (c_ace, n, ca, c), (n, ca, c, n_nme)


def phi_psi(xyz: Tensor | np.ndarray) -> Tensor:
    """Backbone dihedrals (φ, ψ) of alanine dipeptide frames.

    Args:
        xyz: positions, shape (..., 22, 3), nm (any length unit works).

    Returns:
        angles in radians, shape (..., 2), in (-pi, pi]; a tensor of the input's dtype (float64 for NumPy).
    """
    x = torch.as_tensor(np.asarray(xyz, dtype=np.float64)) if isinstance(xyz, np.ndarray) else xyz
    if x.shape[-2:] != (22, 3):
        raise ValueError(f"alanine dipeptide positions must have shape (..., 22, 3), got {tuple(x.shape)}")
    return dihedrals(x, list(backbone_dihedral_indices()))


def basin_labels(angles: Tensor | np.ndarray) -> np.ndarray:
    """Basin index into :data:`BASINS` for each (φ, ψ) point.

    Args:
        angles: (φ, ψ), shape (..., 2), radians.

    Returns:
        int array, shape (...).
    """
    a = np.degrees(np.asarray(angles, dtype=np.float64))
    if a.shape[-1] != 2:
        raise ValueError(f"angles must have shape (..., 2) (phi, psi), got {a.shape}")
    phi, psi = a[..., 0], a[..., 1]
    extended = (phi < 0) & ((psi > 120) | (psi <= -120))
    alpha_r = (phi < 0) & ~extended
    alpha_l = (phi > 0) & (phi < 120)
    return np.select([extended, alpha_r, alpha_l], [0, 1, 2], default=3)


def basin_populations(angles: Tensor | np.ndarray) -> dict[str, float]:
    """Fraction of points in each basin of :data:`BASINS` (they sum to 1).

    Args:
        angles: (φ, ψ), shape (n, 2), radians.
    """
    labels = basin_labels(angles).reshape(-1)
    if labels.size == 0:
        raise ValueError("basin_populations needs at least one point")
    counts = np.bincount(labels, minlength=len(BASINS))
    return {name: float(c) / labels.size for name, c in zip(BASINS, counts, strict=True)}


def wrap_angle(x: Tensor) -> Tensor:
    """Map angles (radians) to [-pi, pi)."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def format_populations(pops: Mapping[str, float]) -> str:
    """One line such as ``C7eq/beta 0.612, alphaR 0.370, alphaL 0.017, other 0.001``."""
    return ", ".join(f"{k} {v:.3f}" for k, v in pops.items())


def load_umbrella(path: str | Path | None = None) -> dict[str, Any]:
    """An umbrella/MBAR reference file as :func:`load_umbrella_reference` returns it (``phi_grid`` in rad added).

    Args:
        path: a JSON written by ``boltzflow umbrella`` (or its ``{"umbrella": ...}`` wrapper); None: the shipped
            default candidate :data:`DEFAULT_UMBRELLA`, so that switching the default switches every reproduction.

    Raises:
        BoltzflowError: ``path`` does not exist.
    """
    if path is None:
        return load_umbrella_reference(DEFAULT_UMBRELLA)
    from boltzflow.errors import BoltzflowError

    path = Path(path)
    if not path.is_file():
        raise BoltzflowError(f"umbrella reference not found: {path}")
    ref = json.loads(path.read_text())
    return _with_radian_grid(ref.get("umbrella", ref))


def _with_radian_grid(ref: dict[str, Any]) -> dict[str, Any]:
    """``ref`` with ``phi_grid`` (rad) from its ``phi_deg`` bin centres."""
    return {**ref, "phi_grid": np.radians(np.asarray(ref["phi_deg"], dtype=np.float64)).tolist()}


# --- the system -----------------------------------------------------------------------------------------------

UMBRELLA_REFERENCE = "alanine-umbrella.json"  # shipped copy of docs/results/alanine-umbrella.json

# Umbrella-sampling (φ) + MBAR references of the αL population and F(φ), OBC at 300 K, one JSON file each in
# boltzflow/data/: name -> (file, what is known about its convergence). See docs/results/alanine-umbrella-2ns.md.
UMBRELLA_REFERENCES: dict[str, tuple[str, str]] = {
    "umbrella-0.5ns": (UMBRELLA_REFERENCE, "NOT converged: the halves of its windows disagree "
                       "(docs/results/alanine-umbrella.md)"),
    "umbrella-1ns": ("alanine-umbrella-1ns.json", "one seed only; halves differ by 1.6 sigma "
                     "(docs/results/alanine-umbrella.md)"),
    "umbrella-2ns": ("alanine-umbrella-2ns.json", "NOT converged: MBAR errors too small, psi is slow "
                     "(docs/results/alanine-umbrella-2ns.md)"),
    "umbrella-4ns": ("alanine-umbrella-4ns.json", "NOT converged: the seeds still disagree (MBAR z = 2.55, blocks "
                     "z = 2.98) (docs/results/alanine-umbrella-4ns.md)"),
    "reus-2ns": ("alanine-umbrella-reus-2ns.json", "converged: replica exchange between the windows; seeds agree, "
                 "halves, blocks and overlap checked (docs/results/alanine-umbrella-reus.md)"),
}
# What the reference `umbrella` means: the first candidate shown converged (two seeds agreeing within 2 sigma,
# halves, blocks and overlap checked: docs/results/alanine-umbrella-reus.md). It was "umbrella-0.5ns" before.
DEFAULT_UMBRELLA = "reus-2ns"


def load_umbrella_reference(name: str = DEFAULT_UMBRELLA) -> dict:
    """A shipped umbrella reference: ``alpha_l_population[_err]``, ``phi_grid`` (bin centres, rad), ``phi_deg``,
    ``free_energy_kt``, ``free_energy_err_kt`` (kT), ``settings`` and the provenance of the run(s) as written by
    ``boltzflow umbrella`` (one run) or ``docs/results/alanine-umbrella-2ns/combine.py`` (two seeds pooled).

    Args:
        name: a key of :data:`UMBRELLA_REFERENCES`.

    Raises:
        ValueError: unknown name.
    """
    from importlib import resources

    if name not in UMBRELLA_REFERENCES:
        raise ValueError(f"unknown umbrella reference {name!r}; choose one of {sorted(UMBRELLA_REFERENCES)}")
    return _with_radian_grid(json.loads((resources.files("boltzflow") / "data" / UMBRELLA_REFERENCES[name][0])
                                        .read_text()))


def describe_umbrella_reference(name: str) -> str:
    """One line of provenance: windows, ns per window, seeds (and whether they agree), the αL population with its
    MBAR error, what is known about its convergence."""
    ref = load_umbrella_reference(name)
    cfg = ref["settings"]
    seeds = cfg.get("seeds", [cfg.get("seed")])
    text = (f"umbrella on phi + MBAR, {cfg['n_windows']} windows x {cfg['ns_per_window']:g} ns, "
            f"seed{'s' if len(seeds) > 1 else ''} {'+'.join(map(str, seeds))}: alphaL "
            f"{100 * ref['alpha_l_population']:.2f} +- {100 * ref['alpha_l_population_err']:.2f} % (MBAR s.e.)")
    if "seed_agreement" in ref:
        agree = ref["seed_agreement"]
        text += f"; the seeds {'agree' if agree['within_2_sigma'] else 'DISAGREE'} (z = {agree['z']:.2f})"
    return f"{text}; {UMBRELLA_REFERENCES[name][1]}"


class AlanineDipeptide(MoleculeSystem):
    """ACE-ALA-NME (22 atoms), AMBER99SB-ILDN in OBC implicit solvent (default) or vacuum, 300 K.

    References (OBC at 300 K only): ``md`` (the shipped 6 x 10 ns dataset), ``umbrella`` (F(φ) and the αL
    population from umbrella sampling + MBAR: the candidate named by :data:`DEFAULT_UMBRELLA`) and every candidate
    of :data:`UMBRELLA_REFERENCES` by its own name. Observables: ``phi_psi`` (n, 1, 2) rad and ``basin`` (index
    into :data:`BASINS`).
    """

    def __init__(self, solvent: str = "obc", temperature_kelvin: float = 300.0, **info: object) -> None:
        from boltzflow.energies.openmm_system import alanine_dipeptide_pdb

        name = "alanine-dipeptide" if solvent == "obc" else f"alanine-dipeptide-{solvent}"
        super().__init__(name, alanine_dipeptide_pdb(), solvent, temperature_kelvin,
                         f"ACE-ALA-NME, AMBER99SB-ILDN{' + OBC' if solvent == 'obc' else ', vacuum'}")

    def references(self) -> dict[str, Reference]:
        if self.solvent != "obc" or self.temperature_kelvin != 300.0:
            return {}
        from boltzflow.samplers.dataset import load_alanine_dataset

        def md() -> np.ndarray:
            return np.asarray(load_alanine_dataset().xyz, dtype=np.float64)

        def umbrella(name: str, alias: str | None = None) -> Reference:
            text = describe_umbrella_reference(name)
            return Reference(alias or name, "free_energy", f"= {name}: {text}" if alias else text,
                             lambda: load_umbrella_reference(name))

        return {
            "md": Reference("md", "samples", "6 x 10 ns OBC MD at 300 K, 60,000 frames (docs/datasets.md)", md),
            "umbrella": umbrella(DEFAULT_UMBRELLA, alias="umbrella"),
            **{name: umbrella(name) for name in UMBRELLA_REFERENCES},
        }

    def observables(self) -> dict[str, Observable]:
        def basin(x: Tensor) -> Tensor:
            return torch.as_tensor(basin_labels(self.phi_psi(x)[..., 0, :].detach().cpu()))

        return {**super().observables(), "basin": Observable("basin", "index", basin)}


@register("alanine-dipeptide", summary="ACE-ALA-NME, AMBER99SB-ILDN + OBC, 300 K (22 atoms)")
def _alanine(solvent: str = "obc", temperature_kelvin: float = 300.0, **info: object) -> AlanineDipeptide:
    return AlanineDipeptide(solvent, temperature_kelvin)


@register("alanine-dipeptide-vacuum", summary="ACE-ALA-NME, AMBER99SB-ILDN in vacuum, 300 K (22 atoms)")
def _alanine_vacuum(temperature_kelvin: float = 300.0, **info: object) -> AlanineDipeptide:
    return AlanineDipeptide("vacuum", temperature_kelvin)
