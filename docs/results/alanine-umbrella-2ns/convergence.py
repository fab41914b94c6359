"""Are the MBAR error bars of the umbrella αL population honest? Slow ψ, ψ-aware thinning and block estimates.

Run from the repository root:

    PYTHONPATH=src python docs/results/alanine-umbrella-2ns/convergence.py NS_PER_WINDOW OUT.json RUN [RUN ...]

``boltzflow umbrella`` thins every window to the statistical inefficiency g of the restrained coordinate φ
(1-3 ps in almost every window). The windows also record ψ, which φ's restraint does not hold. This script
measures, for the first NS_PER_WINDOW ns of every window of each RUN:

1. g of φ − φ0 and of cos ψ and sin ψ per window (pymbar's ``statistical_inefficiency``, in frames = ps);
2. the αL population by MBAR with each window thinned to max(g_φ, g_cos ψ, g_sin ψ) instead of g_φ alone, so
   that MBAR's asymptotic error counts roughly independent ψ samples too ("ψ-aware");
3. the αL population from each of ``--blocks`` consecutive blocks of every window (MBAR as
   ``boltzflow umbrella`` does it, φ-thinned), and the standard error from their spread, std / √blocks;
4. for two or more runs: the pairwise agreement of the first two runs under each error model, and the
   ψ-aware population of all runs pooled (MBAR over all their windows as separate states).

A g estimated from a 2 ns series is itself uncertain when it is hundreds of ps; the ψ-aware error is therefore
a lower bound on the true one, not an upper bound.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
from combine import population_mbar  # this folder's combine.py (the script's folder is on sys.path)

from boltzflow.energies.openmm_system import kt_kj_per_mol
from boltzflow.eval.free_energy import import_pymbar, wrap
from boltzflow.io import save_json
from boltzflow.samplers.umbrella_files import load_windows, read_manifest

BLOCKS = 4


def inefficiency(x: np.ndarray) -> float:
    """pymbar's statistical inefficiency of a series (1 for a constant one), in frames."""
    if np.ptp(x) == 0.0:
        return 1.0
    return float(import_pymbar().timeseries.statistical_inefficiency(x))


def window_inefficiencies(theta: np.ndarray, psi: np.ndarray, theta0: np.ndarray) -> np.ndarray:
    """g of (φ − φ0, cos ψ, sin ψ) per window, shape (n_windows, 3), frames."""
    return np.array([[inefficiency(wrap(t - c)), inefficiency(np.cos(p)), inefficiency(np.sin(p))]
                     for t, p, c in zip(theta, psi, theta0, strict=True)])


def psi_aware(theta: np.ndarray, theta0: np.ndarray, k_kt: float, g: np.ndarray) -> dict:
    """MBAR αL population with window k subsampled every ceil(max g_k) frames (no further thinning)."""
    stride = np.ceil(g.max(axis=1)).astype(int)
    kept = [t[::s] for t, s in zip(theta, stride, strict=True)]
    return {**population_mbar(kept, theta0, k_kt, decorrelate=False), "stride_frames": stride.tolist()}


def blocks(theta: np.ndarray, theta0: np.ndarray, k_kt: float, n_blocks: int) -> dict:
    """αL population from each block of consecutive frames of every window, and the SE of their mean."""
    size = theta.shape[1] // n_blocks
    p = [population_mbar(theta[:, b * size:(b + 1) * size], theta0, k_kt)["alpha_l_population"]
         for b in range(n_blocks)]
    return {"n_blocks": n_blocks, "block_ns": size / 1000.0, "alpha_l_population_blocks": p,
            "mean": float(np.mean(p)), "sem": float(np.std(p, ddof=1) / math.sqrt(n_blocks))}


def analyse(run: Path, ns: float) -> tuple[dict, tuple[np.ndarray, np.ndarray, float, np.ndarray]]:
    """Everything above for one run, and its (theta, theta0, k_kt, g) for pooling."""
    cfg = read_manifest(run)["config"]
    w = load_windows(run, int(round(ns * 1000.0 / cfg["save_every_ps"])))
    k_kt = w.k_kj_per_mol_rad2 / kt_kj_per_mol(w.temperature_kelvin)
    g = window_inefficiencies(w.theta, w.extra, w.theta0)
    full = population_mbar(w.theta, w.theta0, k_kt)
    worst = np.argsort(-g[:, 1:].max(axis=1))[:6]
    summary = {
        "run": str(run), "seed": cfg["seed"], "ns_per_window": ns,
        "phi_thinned": full,
        "psi_aware": psi_aware(w.theta, w.theta0, k_kt, g),
        "blocks": blocks(w.theta, w.theta0, k_kt, BLOCKS),
        "window_centres_deg": np.round(np.degrees(w.theta0), 3).tolist(),
        "g_phi_ps": (g[:, 0] * cfg["save_every_ps"]).round(2).tolist(),
        "g_psi_ps": (g[:, 1:].max(axis=1) * cfg["save_every_ps"]).round(2).tolist(),
        "slowest_psi_windows_deg": np.degrees(w.theta0[worst]).round(1).tolist(),
    }
    return summary, (w.theta, w.theta0, k_kt, g)


def agreement(a: dict, b: dict) -> dict:
    """|P_a − P_b| in units of the combined error, under each error model."""
    out = {}
    for model, p, e in (("phi_thinned", "alpha_l_population", "alpha_l_population_err"),
                        ("psi_aware", "alpha_l_population", "alpha_l_population_err"),
                        ("blocks", "mean", "sem")):
        d, s = a[model][p] - b[model][p], math.hypot(a[model][e], b[model][e])
        out[model] = {"difference": d, "combined_err": s, "z": abs(d) / s, "within_2_sigma": bool(abs(d) < 2 * s)}
    return out


def main(ns: float, out: Path, runs: list[Path]) -> None:
    t0 = time.perf_counter()
    analysed = [analyse(run, ns) for run in runs]
    per_run = [a[0] for a in analysed]
    theta, theta0, g = (np.concatenate([a[1][i] for a in analysed]) for i in (0, 1, 3))
    k_kt = analysed[0][1][2]
    result = {"command": "PYTHONPATH=src python " + " ".join(sys.argv), "runs": per_run,
              "agreement_first_two": agreement(*per_run[:2]) if len(per_run) > 1 else None,
              "pooled_psi_aware": psi_aware(theta, theta0, k_kt, g) if len(per_run) > 1 else None,
              "analysis_wall_time_s": time.perf_counter() - t0}
    save_json(out, result)
    for r in per_run:
        f, q, b = r["phi_thinned"], r["psi_aware"], r["blocks"]
        print(f"seed {r['seed']} {ns:g} ns: phi-thinned {f['alpha_l_population']:.4f} +- "
              f"{f['alpha_l_population_err']:.4f} (n={f['n_samples']}); psi-aware {q['alpha_l_population']:.4f} +- "
              f"{q['alpha_l_population_err']:.4f} (n={q['n_samples']}); {b['n_blocks']} blocks "
              f"{', '.join(f'{p:.4f}' for p in b['alpha_l_population_blocks'])} -> {b['mean']:.4f} +- {b['sem']:.4f};"
              f" max g_psi {max(r['g_psi_ps']):.0f} ps at {r['slowest_psi_windows_deg'][:3]} deg")
    if result["agreement_first_two"]:
        q = result["pooled_psi_aware"]
        print(" ".join(f"{k}: z={v['z']:.2f}" for k, v in result["agreement_first_two"].items()),
              f"; pooled psi-aware {q['alpha_l_population']:.4f} +- {q['alpha_l_population_err']:.4f} -> {out}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(float(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
