"""Median reduced energy of a peptide run's saved flow samples (first draw) against the MD reference's.

Usage: ``PYTHONPATH=src python docs/results/systems/peptide-energies.py runs/peptide-AAA-medium ...`` (the sample
files are not committed: they are in the run folders that ``reproduce`` wrote).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from boltzflow.io import load_npz
from boltzflow.systems.registry import get_system


def main(folders: list[str]) -> None:
    torch.set_num_threads(1)
    md = {}
    for folder in map(Path, folders):
        name = json.loads((folder / "results.json").read_text())["system"]
        if name not in md:
            system = get_system(name)
            x = torch.as_tensor(np.asarray(system.references()["md"].load(), dtype=np.float64))
            with torch.no_grad():
                md[name] = float(system.flat_energy()(x.reshape(len(x), -1)).median())
        for path in sorted((folder / "samples").glob("*.npz")):
            u = load_npz(path)["u"]
            print(f"{folder.name} {path.stem}: median u {np.median(u):.4g} kT (MD {md[name]:.3g} kT), "
                  f"share above 1000 kT {(u > 1e3).mean():.3f}, n = {len(u)}")


if __name__ == "__main__":
    main(sys.argv[1:])
