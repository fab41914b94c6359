"""Reading MD runs and packed datasets (positions, energies, forces) into one NamedTuple.

``load_alanine_dataset()`` returns the shipped 60 ns alanine dipeptide data (6 x 10 ns, 300 K, OBC implicit
solvent; how it was made: docs/datasets.md). ``load_simulation(run_dir)`` reads a ``boltzflow simulate`` run
and ``pack_simulation(run_dir, out_npz)`` packs one into a compressed ``.npz`` + provenance JSON.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from boltzflow.io import atomic_path, load_npz, save_json

ALANINE_DATASET = "alanine-dipeptide-60ns.npz"
_FORCE_DTYPES = ("float16", "float32", "float64")


class MDDataset(NamedTuple):
    """Frames of one or more MD replicas, ordered by replica, then time.

    Attributes:
        xyz: positions, shape (n, n_atoms, 3), nm.
        energy_kj: potential energies, shape (n,), kJ/mol.
        forces_kj: forces, shape (n, n_atoms, 3), kJ/mol/nm.
        replica: replica index of each frame, shape (n,).
        time_ps: simulation time of each frame within its replica, shape (n,), ps.
        temperature_kelvin: thermostat temperature.
        provenance: how the data were made (settings, seeds, versions, packing).
    """

    xyz: np.ndarray
    energy_kj: np.ndarray
    forces_kj: np.ndarray
    replica: np.ndarray
    time_ps: np.ndarray
    temperature_kelvin: float
    provenance: dict[str, Any]


AlanineDataset = MDDataset


def alanine_dataset_path() -> Path:
    """Path of the shipped alanine dipeptide dataset (it may be absent in a source checkout being built)."""
    return Path(str(resources.files("boltzflow") / "data" / ALANINE_DATASET))


def load_alanine_dataset() -> MDDataset:
    """The shipped 6 x 10 ns alanine dipeptide dataset at 300 K (60,000 frames, 22 atoms).

    Positions are float32 (nm), energies float64 (kJ/mol), forces as stored (see ``provenance["packing"]``).
    The data never visit some (phi, psi) regions; see docs/datasets.md before using them as a reference there.
    """
    path = alanine_dataset_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the alanine dataset {path} is missing; recreate it with the command in docs/datasets.md"
        )
    return load_dataset(path)


def load_dataset(path: str | Path) -> MDDataset:
    """Read a dataset written by ``pack_simulation`` (and its provenance JSON beside it, if present)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset not found: {path}")
    try:
        with open(path, "rb") as fh:  # np.load leaks its own handle when the zip is truncated (numpy 2.x)
            data = load_npz(fh)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable dataset .npz ({str(err).splitlines()[0]})") from None
    missing = sorted({"xyz", "energy_kj", "forces_kj", "replica", "time_ps", "temperature_kelvin"} - set(data))
    if missing:
        raise ValueError(f"{path} is not a dataset written by pack_simulation: it lacks {missing}")
    prov_path = path.with_suffix(".json")
    provenance = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    return MDDataset(
        xyz=data["xyz"],
        energy_kj=data["energy_kj"],
        forces_kj=data["forces_kj"],
        replica=data["replica"],
        time_ps=data["time_ps"],
        temperature_kelvin=float(data["temperature_kelvin"]),
        provenance=provenance,
    )


def load_simulation(run_dir: str | Path, complete_only: bool = False) -> MDDataset:
    """Read all complete chunks of a ``boltzflow simulate`` run (float64, as simulated).

    Args:
        run_dir: the run directory (with provenance.json).
        complete_only: raise if any replica has not finished.

    Raises:
        FileNotFoundError: no provenance.json in ``run_dir``.
        ValueError: frames of a replica are not contiguous in time, or (``complete_only``) a replica is
            unfinished.
    """
    from boltzflow.samplers.md_files import PROVENANCE, chunk_path, complete_chunks

    run = Path(run_dir)
    if not (run / PROVENANCE).is_file():
        raise FileNotFoundError(f"{run} holds no {PROVENANCE}; is it a boltzflow simulate --out directory?")
    prov = json.loads((run / PROVENANCE).read_text())
    cfg = prov["config"]
    per_replica = int(round(cfg["ns"] * 1000.0 / cfg["save_every_ps"]))
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("xyz", "energy_kj", "forces_kj", "time_ps", "replica")
    }
    for r in range(int(cfg["replicas"])):
        chunks = [load_npz(chunk_path(run, r, c)) for c in range(complete_chunks(run, r))]
        times = np.concatenate([c["time_ps"] for c in chunks]) if chunks else np.empty(0)
        expected = cfg["save_every_ps"] * np.arange(1, len(times) + 1)  # OpenMM's clock drifts by ~1e-10 ps
        if not np.allclose(times, expected, rtol=0, atol=1e-3 * cfg["save_every_ps"]):
            raise ValueError(
                f"replica {r} of {run}: frame times are not contiguous; delete its chunks and resume"
            )
        if complete_only and len(times) < per_replica:
            why = f" (the run diverged: {prov['error']})" if prov.get("status") == "diverged" else ""
            raise ValueError(
                f"replica {r} of {run} has {len(times)}/{per_replica} frames; resume the run first{why}"
            )
        for key in ("xyz", "energy_kj", "forces_kj"):
            parts[key] += [c[key] for c in chunks]
        parts["time_ps"].append(times)
        parts["replica"].append(np.full(len(times), r, dtype=np.int16))
    n_atoms = len(_topology_atoms(run))
    cat = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    return MDDataset(
        xyz=cat["xyz"].reshape(-1, n_atoms, 3),
        energy_kj=cat["energy_kj"],
        forces_kj=cat["forces_kj"].reshape(-1, n_atoms, 3),
        replica=cat["replica"],
        time_ps=cat["time_ps"],
        temperature_kelvin=float(cfg["temperature_kelvin"]),
        provenance=prov,
    )


def pack_simulation(
    run_dir: str | Path, out_npz: str | Path, forces_dtype: str = "float16", complete_only: bool = True
) -> Path:
    """Write a run as a compressed ``.npz`` (+ ``.json`` provenance beside it) readable by ``load_dataset``.

    Positions are stored as float32 (nm), energies as float64 (kJ/mol), time as float32 (ps), replica as
    int16, forces as ``forces_dtype`` (float16 keeps a relative precision of 2**-11 ~ 4.9e-4; values beyond
    float16's range are refused). Both files are written atomically.

    Returns:
        the path of the ``.npz``.
    """
    if forces_dtype not in _FORCE_DTYPES:
        raise ValueError(f"forces_dtype must be one of {_FORCE_DTYPES}, got {forces_dtype!r}")
    data = load_simulation(run_dir, complete_only=complete_only)
    if len(data.energy_kj) == 0:
        raise ValueError(f"{run_dir} has no complete chunks to pack")
    max_force = float(np.abs(data.forces_kj).max())
    if forces_dtype == "float16" and max_force > float(np.finfo(np.float16).max):
        raise ValueError(
            f"forces up to {max_force:.0f} kJ/mol/nm overflow float16; use forces_dtype='float32'"
        )
    out = Path(out_npz)
    if out.suffix != ".npz":
        raise ValueError(f"out_npz must end in .npz, got {out}")
    forces = data.forces_kj.astype(forces_dtype)
    arrays = {
        "xyz": data.xyz.astype(np.float32),
        "energy_kj": data.energy_kj.astype(np.float64),
        "forces_kj": forces,
        "replica": data.replica.astype(np.int16),
        "time_ps": data.time_ps.astype(np.float32),
        "temperature_kelvin": np.float64(data.temperature_kelvin),
    }
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        err = np.abs(forces.astype(np.float64) - data.forces_kj)
        provenance = {
            **data.provenance,
            "packing": {
                "file": out.name,
                "sha256": digest,
                "n_frames": int(len(data.energy_kj)),
                "dtypes": {k: str(v.dtype) for k, v in arrays.items()},
                "units": {"xyz": "nm", "energy_kj": "kJ/mol", "forces_kj": "kJ/mol/nm", "time_ps": "ps"},
                "forces_max_abs_kj": max_force,
                "forces_max_abs_rounding_error_kj": float(err.max()),
                "forces_max_rel_rounding_error": float(
                    (err / np.maximum(np.abs(data.forces_kj), 1e-3)).max()
                ),
                "positions_note": "float32 positions; energies and forces come from float64 positions",
            },
        }
        save_json(out.with_suffix(".json"), provenance)
    return out


def _topology_atoms(run: Path) -> list[str]:
    lines = (run / "topology.pdb").read_text().splitlines()
    return [line for line in lines if line.startswith(("ATOM", "HETATM"))]
