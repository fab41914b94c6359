"""Evaluate AMBER energies (and forces) of every frame of a trajectory, with the torch force field or OpenMM.

Examples:
  boltzflow energy --pdb mol.pdb --in frames.npz --out energies.npz --forces
  boltzflow energy --pdb mol.pdb --in traj.xtc --out energies.npz --backend openmm
  boltzflow energy --pdb mol.pdb --forcefield amber99sbildn.xml --in frames.npz --out vacuum.npz

Input (--in): an .npz with an array ``xyz`` of shape (n, n_atoms, 3) in nm, or any trajectory mdtraj reads
(.xtc, .dcd, .h5, .pdb, ...) with the PDB as topology. The system is built with NoCutoff from the PDB and the
force-field XML files (default AMBER99SB-ILDN + OBC implicit solvent). With ``--constraints none``
(default) every harmonic X-H bond term is part of the energy; ``--constraints HBonds`` drops them, as
OpenMM does for a System built for constrained MD. The energy is always evaluated on the coordinates as given.

Output (--out): an .npz with energy_kj (n,) kJ/mol, energy_kt (n,) in kT at --temperature, and with --forces
forces_kj (n, n_atoms, 3) kJ/mol/nm. Nothing is written when anything fails.

--device cuda runs the torch backend on the GPU (chunk by chunk); the OpenMM backend runs on its Reference platform
and accepts only --device cpu.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np

from boltzflow.commands.md_options import int_at_least, positive_float, writable_file
from boltzflow.errors import BoltzflowError
from boltzflow.runtime import add_device_argument, resolve_device

HELP = "energies (kJ/mol and kT) and optionally forces of trajectory frames, torch or OpenMM backend"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pdb", required=True, metavar="FILE", help="topology and force-field input (PDB)")
    p.add_argument(
        "--forcefield",
        nargs="+",
        metavar="XML",
        default=["amber99sbildn.xml", "amber99_obc.xml"],
        help="OpenMM force-field files (default: amber99sbildn.xml amber99_obc.xml)",
    )
    p.add_argument(
        "--in", dest="frames", required=True, metavar="FRAMES", help=".npz with xyz (nm) or a trajectory"
    )
    p.add_argument("--out", required=True, metavar="FILE.npz", help="output .npz")
    p.add_argument(
        "--backend", choices=("torch", "openmm"), default="torch", help="evaluator (default: torch)"
    )
    p.add_argument("--forces", action="store_true", help="also store forces_kj")
    p.add_argument(
        "--temperature", type=positive_float, default=300.0, help="temperature for kT, kelvin (default: 300)"
    )
    p.add_argument(
        "--constraints", choices=("none", "HBonds"), default="none", help="system constraints (default: none)"
    )
    p.add_argument("--chunk-size", type=int_at_least(1), default=1024,
                   help="frames per torch evaluation (default: 1024)")
    add_device_argument(p, "torch", "the torch backend's energies and forces (--backend openmm: cpu only)")


def run(args: argparse.Namespace) -> int:
    from boltzflow.energies.openmm_system import build_molecule, kt_kj_per_mol
    from boltzflow.io import save_npz

    out = writable_file(args.out, "--out", ".npz")
    device = resolve_device(args.device)
    if args.backend == "openmm" and device.type != "cpu":
        raise BoltzflowError(f"--device {args.device} applies to --backend torch; the OpenMM backend runs on its "
                             "Reference platform (CPU)")
    molecule = build_molecule(args.pdb, tuple(args.forcefield), constraints=args.constraints)
    xyz = load_frames(args.frames, args.pdb)
    if xyz.shape[1:] != (molecule.n_atoms, 3):
        raise BoltzflowError(
            f"{args.frames} has frames of shape {xyz.shape[1:]} but {Path(args.pdb).name} has "
            f"{molecule.n_atoms} atoms: give frames of shape (n, {molecule.n_atoms}, 3)"
        )
    bad = np.flatnonzero(~np.isfinite(xyz).all(axis=(1, 2)))
    if bad.size:
        raise BoltzflowError(
            f"{args.frames}: {bad.size} frame(s) contain NaN/inf coordinates (first: frame {bad[0]})"
        )
    try:
        if args.backend == "torch":
            energy_kj, forces_kj = _torch_backend(molecule.system, xyz, args.chunk_size, device)
        else:
            energy_kj, forces_kj = _openmm_backend(molecule.system, xyz, args.temperature)
    except ValueError as err:  # the OpenMM bridge refuses non-finite energies itself
        raise BoltzflowError(f"{args.frames}: {err}") from None
    bad = np.flatnonzero(~(np.isfinite(energy_kj) & np.isfinite(forces_kj).all(axis=(1, 2))))
    if bad.size:
        raise BoltzflowError(
            f"{args.frames}: {bad.size} frame(s) have a non-finite energy or force (first: frame {bad[0]}; "
            "overlapping atoms?); nothing written"
        )
    result = {"energy_kj": energy_kj, "energy_kt": energy_kj / kt_kj_per_mol(args.temperature)}
    if args.forces:
        result["forces_kj"] = forces_kj
    save_npz(out, **result)
    print(
        f"wrote {out}: {len(energy_kj)} frames, mean energy {energy_kj.mean():.3f} kJ/mol "
        f"({args.backend})"
    )
    return 0


def load_frames(path: str, pdb: str) -> np.ndarray:
    """Frames as float64 (n, n_atoms, 3) nm from an npz (``xyz``) or an mdtraj-readable trajectory.

    Raises:
        FileNotFoundError: ``path`` does not exist or is a directory.
        BoltzflowError: an unreadable, empty, truncated or pickled file, or an ``xyz`` that is not a real
            array of shape (n >= 1, n_atoms, 3).
    """
    p = Path(path)
    if p.is_dir():
        raise FileNotFoundError(f"--in expects a frames file, got the directory {p}")
    if not p.is_file():
        raise FileNotFoundError(f"frames file not found: {p}")
    xyz = _read_npz(p) if p.suffix == ".npz" else _read_trajectory(p, pdb)
    if xyz.ndim != 3 or xyz.shape[-1] != 3 or len(xyz) == 0:
        raise BoltzflowError(f"{p}: expected frames of shape (n, n_atoms, 3) with n >= 1, got {xyz.shape}")
    return xyz


def _read_npz(p: Path) -> np.ndarray:
    from boltzflow.io import load_npz

    try:
        with open(p, "rb") as fh:  # np.load leaks its own handle when the zip is truncated (numpy 2.x)
            xyz = load_npz(fh, ["xyz"])["xyz"]
    except KeyError:
        raise BoltzflowError(f"{p} has no array 'xyz' (positions (n, n_atoms, 3) in nm)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # empty, truncated, pickled, not an npz
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BoltzflowError(f"{p} is not a readable .npz of plain arrays ({detail})") from None
    if xyz.dtype.kind not in "fiu":
        raise BoltzflowError(f"{p}: 'xyz' must hold real numbers (nm), got dtype {xyz.dtype}")
    return np.asarray(xyz, dtype=np.float64)


def _read_trajectory(p: Path, pdb: str) -> np.ndarray:
    import mdtraj

    try:
        return np.asarray(mdtraj.load(str(p), top=str(pdb)).xyz, dtype=np.float64)
    except Exception as err:  # mdtraj raises many types with long messages
        raise BoltzflowError(f"mdtraj cannot read {p} with topology {pdb}: {str(err).splitlines()[0]}") from None


def _torch_backend(system, xyz: np.ndarray, chunk_size: int, device=None) -> tuple[np.ndarray, np.ndarray]:
    from boltzflow.energies.amber import AmberEnergy

    result = AmberEnergy.from_system(system).to(device).energy_and_force(xyz, chunk_size=chunk_size)
    return result.energy_kj.cpu().numpy(), result.force_kj.cpu().numpy()


def _openmm_backend(system, xyz: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    from boltzflow.energies.openmm_bridge import OpenMMEnergy

    with OpenMMEnergy(system, temperature_kelvin=temperature, platform="Reference") as bridge:
        return bridge.evaluate(xyz)
