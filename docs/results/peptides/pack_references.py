"""Pack the peptide MD runs into the shipped references and measure their per-residue basin populations.

    PYTHONPATH=src python docs/results/peptides/pack_references.py [--stride 5] [--runs runs/peptides]

For each shipped sequence SEQ (runs made by ``docs/results/peptides/run_md.sh``):

1. read every complete replica of ``runs/peptides/SEQ`` (``load_simulation``; a replica that is unfinished or not
   started is left out and named in the provenance: a reference holds whole replicas only);
2. the shipped ``src/boltzflow/data/peptides/SEQ-md.npz`` keeps every ``stride``-th 1 ps frame of each complete
   replica (t = stride, 2·stride, ... ps): positions float32 nm, energies float64 kJ/mol, forces float16
   kJ/mol/nm (as ``samplers.dataset.pack_simulation`` packs them); its ``.json`` is the run's provenance with a
   ``packing`` section (replicas kept and left out, thinning, dtypes, float16 rounding error, sha256);
3. ``docs/results/peptides/SEQ-basins.json``: basin populations per residue, per replica and pooled, from every
   1 ps frame, with the standard error from the spread between replicas; the same on the shipped frames;
4. ``docs/results/peptides/SEQ-ramachandran.png``: free energy of (φ, ψ) per residue from every 1 ps frame, drawn
   from the system's ``phi_psi`` observable.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from boltzflow.io import atomic_path, save_json
from boltzflow.plots import save
from boltzflow.samplers.dataset import MDDataset, load_dataset, load_simulation
from boltzflow.systems.alanine import BASINS
from boltzflow.systems.peptide import SHIPPED, PeptideSystem, ramachandran_per_residue, reference_path

ROOT = Path(__file__).resolve().parents[3]


def complete_replicas(run: Path) -> tuple[MDDataset, list[int], list[int]]:
    """All 1 ps frames of the finished replicas of a run (float64), and the replicas kept and left out."""
    data = load_simulation(run, complete_only=False)
    cfg = data.provenance["config"]
    per_replica = int(round(cfg["ns"] * 1000.0 / cfg["save_every_ps"]))
    counts = np.bincount(data.replica, minlength=cfg["replicas"])
    kept = [r for r in range(cfg["replicas"]) if counts[r] == per_replica]
    if not kept:
        raise SystemExit(f"{run} has no finished replica; resume it first (docs/results/peptides/run_md.sh)")
    mask = np.isin(data.replica, kept)
    fields = {k: getattr(data, k)[mask] for k in ("xyz", "energy_kj", "forces_kj", "replica", "time_ps")}
    left_out = [r for r in range(cfg["replicas"]) if r not in kept]
    return data._replace(**fields), kept, left_out


def thin(full: MDDataset, stride: int, out: Path, kept: list[int], left_out: list[int]) -> dict:
    """Write every ``stride``-th frame of each replica of ``full`` to ``out`` (.npz + .json); return the JSON."""
    frame_index = np.rint(full.time_ps / full.provenance["config"]["save_every_ps"]).astype(np.int64)
    keep = frame_index % stride == 0
    forces = full.forces_kj[keep].astype(np.float16)
    arrays = {
        "xyz": full.xyz[keep].astype(np.float32),
        "energy_kj": full.energy_kj[keep].astype(np.float64),
        "forces_kj": forces,
        "replica": full.replica[keep].astype(np.int16),
        "time_ps": full.time_ps[keep].astype(np.float32),
        "temperature_kelvin": np.float64(full.temperature_kelvin),
    }
    err = np.abs(forces.astype(np.float64) - full.forces_kj[keep])
    cfg = full.provenance["config"]
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        packing = {
            "file": out.name,
            "sha256": hashlib.sha256(tmp.read_bytes()).hexdigest(),
            "n_frames": int(keep.sum()),
            "n_frames_simulated": int(len(keep)),
            "replicas_kept": kept,
            "replicas_left_out": left_out,
            "replicas_left_out_why": "unfinished or not started when packed (whole replicas only)",
            "ns_per_replica": cfg["ns"],
            "ns_total": cfg["ns"] * len(kept),
            "stride_frames": stride,
            "frame_interval_ps": float(stride * cfg["save_every_ps"]),
            "thinning": f"every {stride}th frame of each replica (t = {stride}, {2 * stride}, ... ps) of the "
            f"{cfg['save_every_ps']:g} ps run, packed by docs/results/peptides/pack_references.py",
            "dtypes": {k: str(v.dtype) for k, v in arrays.items()},
            "units": {"xyz": "nm", "energy_kj": "kJ/mol", "forces_kj": "kJ/mol/nm", "time_ps": "ps"},
            "forces_max_abs_kj": float(np.abs(full.forces_kj).max()),
            "forces_max_abs_rounding_error_kj": float(err.max()),
            "positions_note": "float32 positions; energies and forces come from float64 positions",
        }
        provenance = {**full.provenance, "packing": packing}
        save_json(out.with_suffix(".json"), provenance)
    return provenance


def populations(system: PeptideSystem, data: MDDataset) -> dict:
    """Basin populations per residue: per replica, pooled, and the standard error from the replica spread."""
    labels = system.basins(np.asarray(data.xyz, dtype=np.float64)).numpy()  # (n, n_residues)
    replicas = np.unique(data.replica)
    per = np.stack([(labels[data.replica == r][..., None] == np.arange(len(BASINS))).mean(0) for r in replicas])
    pooled = (labels[..., None] == np.arange(len(BASINS))).mean(0)
    sem = per.std(0, ddof=1) / np.sqrt(len(replicas)) if len(replicas) > 1 else np.full_like(pooled, np.nan)
    switches = [
        [int((np.diff(labels[data.replica == r][:, k]) != 0).sum()) for k in range(labels.shape[1])]
        for r in replicas
    ]
    residues = [label for label, _, _ in system.backbone_dihedrals()]
    return {
        "basins": list(BASINS),
        "residues": residues,
        "n_frames": int(len(labels)),
        "pooled": pooled.tolist(),
        "per_replica": per.tolist(),
        "replica_sem": sem.tolist(),
        "replica_max_minus_min": (per.max(0) - per.min(0)).tolist(),
        "basin_changes_per_replica": switches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stride", type=int, default=5, help="keep every STRIDE-th 1 ps frame (default: 5)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "peptides", help="folder of the MD runs")
    parser.add_argument("--sequences", nargs="+", default=list(SHIPPED), help="which runs (default: all shipped)")
    args = parser.parse_args()
    for seq in args.sequences:
        full, kept, left_out = complete_replicas(args.runs / seq)
        shipped = reference_path(seq)
        thin(full, args.stride, shipped, kept, left_out)
        system = PeptideSystem(seq)
        result = {
            "sequence": seq,
            "command": f"PYTHONPATH=src python docs/results/peptides/pack_references.py --stride {args.stride}",
            "run": full.provenance["command"],
            "replicas_kept": kept,
            "ns_per_replica": full.provenance["config"]["ns"],
            "wall_time_s_all_sessions": full.provenance["wall_time_s"],
            "sessions": full.provenance["sessions"],
            "full_1ps": populations(system, full),
            "shipped": populations(system, load_dataset(shipped)),
        }
        save_json(Path(__file__).with_name(f"{seq}-basins.json"), result)
        save(ramachandran_per_residue(system, full.xyz), Path(__file__).with_name(f"{seq}-ramachandran.png"))
        print(seq, shipped, f"{shipped.stat().st_size / 1e6:.2f} MB", result["full_1ps"]["n_frames"], "frames at 1 ps,",
              f"replicas {kept} kept, {left_out} left out")


if __name__ == "__main__":
    main()
