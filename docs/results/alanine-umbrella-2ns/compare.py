"""F(φ) of every shipped umbrella candidate and of the two 2 ns seeds on one plot, αL region shaded.

    PYTHONPATH=src python docs/results/alanine-umbrella-2ns/compare.py

Writes docs/results/alanine-umbrella-2ns/free_energy_candidates.png. Each profile is shifted so that its minimum
over φ < 0 is 0 kT; the band is ± one MBAR standard error of each bin (as MBAR reports it: too small where ψ is slow,
see alanine-umbrella-2ns.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from boltzflow.plots import save
from boltzflow.systems.alanine import UMBRELLA_REFERENCES, load_umbrella_reference

HERE = Path(__file__).resolve().parent


def profile(ref: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    phi = np.asarray(ref["phi_deg"], dtype=float)
    f = np.array([np.nan if v is None else v for v in ref["free_energy_kt"]], dtype=float)
    err = np.array([np.nan if v is None else v for v in ref["free_energy_err_kt"]], dtype=float)
    return phi, f - np.nanmin(f[phi < 0]), err


def main() -> None:
    curves = [(f"{name} (αL {100 * ref['alpha_l_population']:.2f} %)", ref)
              for name in UMBRELLA_REFERENCES for ref in [load_umbrella_reference(name)]]
    for seed in (10, 11):
        ref = json.loads((HERE / f"results-s{seed}.json").read_text())
        curves.append((f"2 ns seed {seed} alone (αL {100 * ref['alpha_l_population']:.2f} %)", ref))
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    ax.axvspan(0, 120, color="0.92", label="αL region (0° < φ < 120°)")
    for label, ref in curves:
        phi, f, err = profile(ref)
        (line,) = ax.plot(phi, f, label=label, lw=1.3)
        ax.fill_between(phi, f - err, f + err, color=line.get_color(), alpha=0.25, lw=0)
    ax.set_xlabel("φ (deg)")
    ax.set_ylabel("F(φ) (kT), min over φ < 0 set to 0")
    ax.set_xlim(-180, 180)
    ax.legend(fontsize=7, loc="upper left")
    save(fig, HERE / "free_energy_candidates.png")


if __name__ == "__main__":
    main()
