"""Median reduced energy of a peptide run's saved flow samples (first draw) against the MD reference's, and the
Ramachandran TV between md-nll's training frames and the evaluation frames (what two MD samples of these sizes
score at the 100 x 100 resolution of the metric: a floor for the table's Ram TV).

Usage: ``PYTHONPATH=src python docs/results/systems/peptide-energies.py runs/peptide-AAA-medium ...`` (the sample
files are not committed: they are in the run folders that ``reproduce`` wrote).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from boltzflow.eval.evaluate import ramachandran_tv
from boltzflow.experiments.cmt_report import reference_split
from boltzflow.io import load_npz
from boltzflow.systems.registry import get_system


def _tv_floor(system, x: torch.Tensor, n_reference: int) -> float:
    picked, rest = reference_split(len(x), n_reference)
    angles = system.observables()["phi_psi"].fn
    return ramachandran_tv(angles(x[rest]).numpy(), angles(x[picked]).numpy())


def main(folders: list[str]) -> None:
    torch.set_num_threads(1)
    md = {}
    for folder in map(Path, folders):
        res = json.loads((folder / "results.json").read_text())
        name = res["system"]
        if name not in md:
            system = get_system(name)
            x = torch.as_tensor(np.asarray(system.references()["md"].load(), dtype=np.float64))
            with torch.no_grad():
                md[name] = float(system.flat_energy()(x.reshape(len(x), -1)).median())
                n_ref = res["config"]["evaluation"]["n_reference"]
                print(f"{name}: Ram TV of the {len(x) - min(n_ref, len(x))} training vs the {n_ref} evaluation MD "
                      f"frames {_tv_floor(system, x, n_ref):.3f}")
        for path in sorted((folder / "samples").glob("*.npz")):
            u = load_npz(path)["u"]
            print(f"{folder.name} {path.stem}: median u {np.median(u):.4g} kT (MD {md[name]:.3g} kT), "
                  f"share above 1000 kT {(u > 1e3).mean():.3f}, n = {len(u)}")


if __name__ == "__main__":
    main(sys.argv[1:])
