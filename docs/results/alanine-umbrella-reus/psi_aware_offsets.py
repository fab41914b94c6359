"""How much the ψ-aware αL estimate depends on which frames the thinning keeps.

    PYTHONPATH=src python docs/results/alanine-umbrella-reus/psi_aware_offsets.py RUN [RUN ...] > OUT.txt

convergence.py's ψ-aware estimate keeps frames 0, s, 2s, ... of each window (s = ceil(max g) of φ, cos ψ, sin ψ).
This redoes it with the same strides and a random start offset in [0, s) per window (6 draws, generator seed 0),
printing each estimate (run, trial, the offset of the φ = 130° window, population, MBAR error) and a summary line.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "alanine-umbrella-2ns"))
from combine import population_mbar  # noqa: E402
from convergence import window_inefficiencies  # noqa: E402

from boltzflow.energies.openmm_system import kt_kj_per_mol  # noqa: E402
from boltzflow.samplers.umbrella_files import load_windows  # noqa: E402

TRIALS = 7  # offset 0 (convergence.py's choice), then 6 random offsets


def main(run: str) -> None:
    w = load_windows(run, 2000)
    k_kt = w.k_kj_per_mol_rad2 / kt_kj_per_mol(w.temperature_kelvin)
    stride = np.ceil(window_inefficiencies(w.theta, w.extra, w.theta0).max(axis=1)).astype(int)
    rng = np.random.default_rng(0)
    out = []
    for trial in range(TRIALS):
        off = [0 if trial == 0 else int(rng.integers(s)) for s in stride]
        kept = [t[o::s] for t, o, s in zip(w.theta, off, stride, strict=True)]
        r = population_mbar(kept, w.theta0, k_kt, decorrelate=False)
        out.append(r["alpha_l_population"])
        print(run, trial, off[31], r["alpha_l_population"], r["alpha_l_population_err"], flush=True)
    p = np.array(out[1:])
    print(f"{run} offset 0: {out[0]:.4f}; {len(p)} random offsets: mean {p.mean():.4f}, sd {p.std(ddof=1):.4f}, "
          f"range {p.min():.4f}-{p.max():.4f}", flush=True)


if __name__ == "__main__":
    for run in sys.argv[1:]:
        main(run)
