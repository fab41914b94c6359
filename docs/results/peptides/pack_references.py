"""Pack the peptide MD runs into the shipped references and measure their per-residue basin populations.

    PYTHONPATH=src python docs/results/peptides/pack_references.py [--stride 5] [--runs runs/peptides]

For each shipped sequence SEQ (runs made by ``docs/results/peptides/run_md.sh``):

1. ``pack_simulation(runs/peptides/SEQ, runs/peptides/SEQ-full.npz)``: every 1 ps frame, positions float32,
   energies float64, forces float16 (the package's packing, with its rounding-error report);
2. the shipped ``src/boltzflow/data/peptides/SEQ-md.npz`` keeps every ``stride``-th frame of each replica
   (t = stride, 2·stride, ... ps) so that both peptides together stay a few MB; its ``.json`` is the run's
   provenance with a ``packing`` section describing the thinning;
3. ``docs/results/peptides/SEQ-basins.json``: basin populations per residue, per replica and over all frames,
   from the full 1 ps data, with the spread between replicas, and the same on the shipped (thinned) frames;
4. ``docs/results/peptides/SEQ-ramachandran.png``: free energy of (φ, ψ) per residue from the full 1 ps data.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from boltzflow.io import atomic_path, save_json
from boltzflow.plots import save
from boltzflow.samplers.dataset import MDDataset, load_dataset, pack_simulation
from boltzflow.systems.alanine import BASINS
from boltzflow.systems.peptide import SHIPPED, PeptideSystem, ramachandran_per_residue, reference_path

ROOT = Path(__file__).resolve().parents[3]


def thin(full: MDDataset, stride: int, out: Path) -> dict:
    """Write every ``stride``-th frame of each replica of ``full`` to ``out`` (.npz + .json); return the JSON."""
    frame_index = np.rint(full.time_ps / full.time_ps[0]).astype(np.int64)  # 1, 2, ... within each replica
    keep = frame_index % stride == 0
    arrays = {
        "xyz": full.xyz[keep].astype(np.float32),
        "energy_kj": full.energy_kj[keep].astype(np.float64),
        "forces_kj": full.forces_kj[keep],
        "replica": full.replica[keep].astype(np.int16),
        "time_ps": full.time_ps[keep].astype(np.float32),
        "temperature_kelvin": np.float64(full.temperature_kelvin),
    }
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        packing = {
            **full.provenance["packing"],
            "file": out.name,
            "sha256": digest,
            "n_frames": int(keep.sum()),
            "n_frames_simulated": int(len(keep)),
            "stride_frames": stride,
            "frame_interval_ps": float(stride * full.time_ps[0]),
            "thinning": f"every {stride}th frame of each replica (t = {stride}, {2 * stride}, ... ps) of the 1 ps "
            "run, packed by docs/results/peptides/pack_references.py",
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
    args = parser.parse_args()
    for seq in SHIPPED:
        full_npz = pack_simulation(args.runs / seq, args.runs / f"{seq}-full.npz", forces_dtype="float16")
        full = load_dataset(full_npz)
        shipped = reference_path(seq)
        thin(full, args.stride, shipped)
        system = PeptideSystem(seq)
        result = {
            "sequence": seq,
            "command": f"PYTHONPATH=src python docs/results/peptides/pack_references.py --stride {args.stride}",
            "run": full.provenance["command"],
            "wall_time_s": full.provenance["wall_time_s"],
            "full_1ps": populations(system, full),
            "shipped": populations(system, load_dataset(shipped)),
        }
        save_json(Path(__file__).with_name(f"{seq}-basins.json"), result)
        save(ramachandran_per_residue(system, full.xyz), Path(__file__).with_name(f"{seq}-ramachandran.png"))
        print(seq, shipped, f"{shipped.stat().st_size / 1e6:.2f} MB", result["full_1ps"]["n_frames"], "frames")


if __name__ == "__main__":
    main()
