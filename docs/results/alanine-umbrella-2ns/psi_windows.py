"""Per window of each run: g of φ − φ0, cos ψ, sin ψ and of the indicator −120° < ψ ≤ 60°, and its mean per block.

    PYTHONPATH=src python docs/results/alanine-umbrella-2ns/psi_windows.py NS_PER_WINDOW RUN [RUN ...]

Prints one row per window: its centre (degrees), the four g (ps), the fraction of frames with −120° < ψ ≤ 60° (the
αR-like ψ state; ψ ≈ 130° is the β-like one) over the window and in each of its four consecutive blocks. This is
the slow ψ degree of freedom that φ's restraint does not hold, window by window.
"""

from __future__ import annotations

import sys

import numpy as np
from convergence import inefficiency

from boltzflow.eval.free_energy import wrap
from boltzflow.samplers.umbrella_files import load_windows, read_manifest


def rows(run: str, ns: float) -> list[list[float]]:
    dt = read_manifest(run)["config"]["save_every_ps"]
    w = load_windows(run, int(round(ns * 1000.0 / dt)))
    out = []
    for theta, psi, c in zip(w.theta, w.extra, w.theta0, strict=True):
        inside = ((psi > -2 * np.pi / 3) & (psi <= np.pi / 3)).astype(float)
        g = [inefficiency(x) * dt for x in (wrap(theta - c), np.cos(psi), np.sin(psi), inside)]
        blocks = [float(b.mean()) for b in np.array_split(inside, 4)]
        out.append([float(np.degrees(c)), *g, float(inside.mean()), *blocks])
    return out


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    print("run   centre   g_phi  g_cos_psi  g_sin_psi  g_psi_in  frac(-120<psi<=60)  in 4 blocks")
    for run in sys.argv[2:]:
        for r in rows(run, float(sys.argv[1])):
            blocks = " ".join(f"{b:.2f}" for b in r[6:])
            g = f"{r[1]:7.1f} {r[2]:10.1f} {r[3]:10.1f} {r[4]:9.1f}"
            print(f"{run[-3:]} {r[0]:8.0f} {g} {r[5]:12.3f}       {blocks}")
