"""Combine two finished ``boltzflow umbrella`` runs (other seeds, same settings) into one αL reference.

Run from the repository root, after both runs have written their results.json:

    PYTHONPATH=src python docs/results/alanine-umbrella-2ns/combine.py RUN_A RUN_B OUT.json

It checks that the runs share every setting but the seed, compares their αL populations (difference over the
combined standard error), and pools all windows of both runs into one MBAR (36 centres x 2 runs = 72 biased
states of the same 36 ensembles): the F(φ) and αL population of the pooled MBAR are the reference. The pooled
analysis is repeated on the first and second half of every window as a convergence check. Per-run numbers are
read from each run's results.json (written by the command itself).
"""

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from boltzflow.energies.openmm_system import kt_kj_per_mol
from boltzflow.eval.free_energy import import_pymbar, population_halves, umbrella_mbar
from boltzflow.io import save_json
from boltzflow.samplers.umbrella import load_windows


def finite(x):
    return [None if not math.isfinite(v) else round(float(v), 6) for v in np.asarray(x, dtype=float)]


def population(r):
    return {"alpha_l_population": r.alpha_l_population, "alpha_l_population_err": r.alpha_l_population_err,
            "delta_f_alpha_l_vs_rest_kt": r.delta_f_kt, "delta_f_alpha_l_vs_rest_err_kt": r.delta_f_err,
            "n_samples": r.n_samples}


def run_summary(path: Path) -> dict:
    res = json.loads((path / "results.json").read_text())
    keys = ("alpha_l_population", "alpha_l_population_err", "halves", "min_neighbour_overlap", "n_samples",
            "n_samples_total", "sampling_wall_time_s", "analysis_wall_time_s", "command")
    return {"run": str(path), "seed": res["settings"]["seed"], "ns_per_window": res["settings"]["ns_per_window"],
            "statistical_inefficiency_ps_max": max(v for v in res["statistical_inefficiency_ps"] if v is not None),
            **{k: res[k] for k in keys}}


def main(a: Path, b: Path, out: Path) -> None:
    t0 = time.perf_counter()
    runs = [run_summary(a), run_summary(b)]
    settings = [json.loads((p / "results.json").read_text())["settings"] for p in (a, b)]
    differ = sorted(k for k in settings[0] if k not in ("seed", "pdb_path") and settings[0][k] != settings[1].get(k))
    if differ or settings[0]["seed"] == settings[1]["seed"]:
        raise SystemExit(f"the runs must differ in the seed only; they differ in {differ or 'nothing'}")
    (p1, e1), (p2, e2) = [(r["alpha_l_population"], r["alpha_l_population_err"]) for r in runs]
    sigma = math.hypot(e1, e2)
    w = [load_windows(a), load_windows(b)]
    n = min(x.theta.shape[1] for x in w)
    theta = np.concatenate([x.theta[:, :n] for x in w])
    theta0 = np.concatenate([x.theta0 for x in w])
    k_kt = w[0].k_kj_per_mol_rad2 / kt_kj_per_mol(w[0].temperature_kelvin)
    pooled = umbrella_mbar(theta, theta0, k_kt)
    halves = population_halves(theta, theta0, k_kt)
    ivw = (p1 / e1**2 + p2 / e2**2) / (1 / e1**2 + 1 / e2**2)
    reference = {
        "format": "boltzflow-umbrella-reference-1",
        "command": "PYTHONPATH=src python " + " ".join(sys.argv),
        "system": "alanine-dipeptide",
        "method": "pooled MBAR (pymbar) over all windows of two independent umbrella runs along phi (same "
                  "settings, other seeds); windows thinned to their statistical inefficiency; errors are MBAR "
                  "asymptotic standard errors of the pooled estimate",
        "settings": {k: v for k, v in settings[0].items() if k != "seed"} | {"seeds": [r["seed"] for r in runs]},
        "alpha_l_region_deg": [0.0, 120.0],
        **population(pooled),
        "halves": {"first": population(halves[0]), "second": population(halves[1])},
        "runs": runs,
        "seed_agreement": {"difference": p1 - p2, "combined_err": sigma, "z": abs(p1 - p2) / sigma,
                           "within_2_sigma": abs(p1 - p2) < 2 * sigma},
        "inverse_variance_mean": {"alpha_l_population": ivw, "alpha_l_population_err": (e1**-2 + e2**-2) ** -0.5},
        "n_samples_total": pooled.n_samples_total,
        "frames_per_window_used": n,
        "min_neighbour_overlap": pooled.min_neighbour_overlap,
        "phi_deg": finite(np.degrees(pooled.phi_grid)),
        "free_energy_kt": finite(pooled.free_energy_kt),
        "free_energy_err_kt": finite(pooled.free_energy_err),
        "versions": {"pymbar": import_pymbar().__version__},
        "sampling_wall_time_s": sum(r["sampling_wall_time_s"] for r in runs),
        "analysis_wall_time_s": time.perf_counter() - t0,
    }
    save_json(out, reference)
    s = reference["seed_agreement"]
    print(f"seeds {runs[0]['seed']}/{runs[1]['seed']}: {p1:.4f} +- {e1:.4f} vs {p2:.4f} +- {e2:.4f}, "
          f"z = {s['z']:.2f}; pooled {pooled.alpha_l_population:.4f} +- {pooled.alpha_l_population_err:.4f}, "
          f"halves {halves[0].alpha_l_population:.4f} +- {halves[0].alpha_l_population_err:.4f} / "
          f"{halves[1].alpha_l_population:.4f} +- {halves[1].alpha_l_population_err:.4f}; "
          f"min overlap {pooled.min_neighbour_overlap:.3f}; wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
