"""Compare two ``boltzflow umbrella`` runs (same settings, other seeds) and pool them into one αL reference.

Run from the repository root:

    PYTHONPATH=src python docs/results/alanine-umbrella-2ns/combine.py RUN_A RUN_B NS_PER_WINDOW OUT.json

Both runs must share every setting but the seed and hold at least NS_PER_WINDOW ns in every window (a run that
was extended later still holds its first NS_PER_WINDOW ns unchanged at the start of each window). For each run
the script takes what ``boltzflow umbrella`` wrote into RUN/results.json when that analysis was of exactly
NS_PER_WINDOW ns per window, and otherwise redoes it (MBAR over the windows, each thinned to its statistical
inefficiency: the αL population P(0° < φ < 120°), the same on the first and the second half of every window, and
the smallest overlap of neighbouring windows). For both runs pooled it computes F(φ) on 5° bins, the population
and the overlap by MBAR, and the population on the halves (population only: :func:`population_mbar`). The pooled
MBAR treats the 2 x 36 windows as 72 biased states (pairs of them identical): it uses every sample of both runs
in one estimate. The seeds agree when their populations differ by less than twice the combined standard error.
"""

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from boltzflow.energies.openmm_system import kt_kj_per_mol
from boltzflow.eval.free_energy import ALPHA_L, _quiet, import_pymbar, reduced_bias, thin, umbrella_mbar, wrap
from boltzflow.io import save_json
from boltzflow.samplers.umbrella import load_windows


def finite(x):
    return [None if not math.isfinite(v) else round(float(v), 6) for v in np.asarray(x, dtype=float)]


def population(r):
    return {"alpha_l_population": r.alpha_l_population, "alpha_l_population_err": r.alpha_l_population_err,
            "delta_f_alpha_l_vs_rest_kt": r.delta_f_kt, "delta_f_alpha_l_vs_rest_err_kt": r.delta_f_err,
            "n_samples": r.n_samples}


def population_mbar(theta, theta0, k_kt, decorrelate=True):
    """The αL population and its MBAR standard error only (no F(φ) grid: one expectation instead of 73).

    Same estimate as ``umbrella_mbar(...).alpha_l_population``; theta is a list of 1-D windows (rad)."""
    windows = [thin(t, c)[0] for t, c in zip(theta, theta0, strict=True)] if decorrelate else list(theta)
    samples = wrap(np.concatenate(windows))
    with _quiet():
        mbar = import_pymbar().MBAR(reduced_bias(samples, theta0, k_kt), np.array([w.size for w in windows]))
        inside = ((samples > ALPHA_L[0]) & (samples < ALPHA_L[1])).astype(float)
        out = mbar.compute_expectations(inside, u_kn=np.zeros(samples.size))
    p, err = float(np.ravel(out["mu"])[0]), float(np.ravel(out["sigma"])[0])
    return {"alpha_l_population": p, "alpha_l_population_err": err, "n_samples": int(samples.size)}


def halves(theta, theta0, k_kt):
    half = theta.shape[1] // 2
    return {"first": population_mbar(theta[:, :half], theta0, k_kt),
            "second": population_mbar(theta[:, half:], theta0, k_kt)}


def run_summary(run, manifest, theta, theta0, k_kt, ns, save_every_ps):
    """One run's analysis: from its results.json when that was made at ``ns`` ns per window, else redone."""
    keys = ("command", "started", "ns_per_window", "wall_time_s")
    sessions = [{k: s.get(k) for k in keys} for s in manifest["sessions"]]
    results = run / "results.json"
    saved = json.loads(results.read_text()) if results.is_file() else {}
    if saved.get("settings", {}).get("ns_per_window") == ns:
        summary = {k: saved[k] for k in ("alpha_l_population", "alpha_l_population_err", "delta_f_alpha_l_vs_rest_kt",
                                         "delta_f_alpha_l_vs_rest_err_kt", "n_samples", "halves",
                                         "min_neighbour_overlap", "n_samples_total")}
        summary["statistical_inefficiency_ps_max"] = max(saved["statistical_inefficiency_ps"])
        summary["source"] = f"{results} (boltzflow umbrella's own analysis)"
    else:
        full = umbrella_mbar(theta, theta0, k_kt)
        summary = {**population(full), "halves": halves(theta, theta0, k_kt),
                   "min_neighbour_overlap": full.min_neighbour_overlap, "n_samples_total": full.n_samples_total,
                   "statistical_inefficiency_ps_max": float(full.statistical_inefficiency.max() * save_every_ps),
                   "source": "recomputed by combine.py"}
    return {"run": str(run), "seed": manifest["config"]["seed"], **summary, "sessions": sessions}


def main(runs: list[Path], ns: float, out: Path) -> None:
    t0 = time.perf_counter()
    manifests = [json.loads((run / "umbrella.json").read_text()) for run in runs]
    cfg = [m["config"] for m in manifests]
    differ = sorted(k for k in cfg[0] if k not in ("seed", "pdb_path") and cfg[0][k] != cfg[1].get(k))
    if differ or cfg[0]["seed"] == cfg[1]["seed"]:
        raise SystemExit(f"the runs must differ in the seed only; they differ in {differ or 'nothing'}")
    n = int(round(ns * 1000.0 / cfg[0]["save_every_ps"]))
    windows = [load_windows(run, n) for run in runs]
    k_kt = windows[0].k_kj_per_mol_rad2 / kt_kj_per_mol(windows[0].temperature_kelvin)
    per_run = [run_summary(run, m, w.theta, w.theta0, k_kt, ns, cfg[0]["save_every_ps"])
               for run, m, w in zip(runs, manifests, windows, strict=True)]
    (p1, e1), (p2, e2) = [(r["alpha_l_population"], r["alpha_l_population_err"]) for r in per_run]
    sigma = math.hypot(e1, e2)
    theta = np.concatenate([w.theta for w in windows])
    theta0 = np.concatenate([w.theta0 for w in windows])
    pooled = umbrella_mbar(theta, theta0, k_kt)
    pooled_summary = {**population(pooled), "halves": halves(theta, theta0, k_kt),
                      "min_neighbour_overlap": pooled.min_neighbour_overlap, "n_samples_total": pooled.n_samples_total,
                      "statistical_inefficiency_ps_max": float(pooled.statistical_inefficiency.max()
                                                               * cfg[0]["save_every_ps"])}
    reference = {
        "format": "boltzflow-umbrella-reference-1",
        "command": "PYTHONPATH=src python " + " ".join(sys.argv),
        "system": "alanine-dipeptide",
        "method": "pooled MBAR (pymbar) over all windows of two independent "
                  f"{'replica-exchange ' if cfg[0].get('exchange') else ''}umbrella runs along phi (same "
                  "settings, other seeds); windows thinned to their statistical inefficiency; errors are MBAR "
                  "asymptotic standard errors",
        "settings": {**{k: v for k, v in cfg[0].items() if k not in ("seed", "pdb_path")},
                     "ns_per_window": ns, "seeds": [r["seed"] for r in per_run]},
        "alpha_l_region_deg": [0.0, 120.0],
        **pooled_summary,
        "seed_agreement": {"difference": p1 - p2, "combined_err": sigma, "z": abs(p1 - p2) / sigma,
                           "within_2_sigma": bool(abs(p1 - p2) < 2 * sigma)},
        "runs": per_run,
        "phi_deg": finite(np.degrees(pooled.phi_grid)),
        "free_energy_kt": finite(pooled.free_energy_kt),
        "free_energy_err_kt": finite(pooled.free_energy_err),
        "versions": {"pymbar": import_pymbar().__version__, "openmm": manifests[0]["versions"]["openmm"]},
        "analysis_wall_time_s": time.perf_counter() - t0,
    }
    save_json(out, reference)
    s, h = reference["seed_agreement"], pooled_summary["halves"]
    print(f"{ns:g} ns/window, seeds {per_run[0]['seed']}/{per_run[1]['seed']}: {p1:.4f} +- {e1:.4f} vs "
          f"{p2:.4f} +- {e2:.4f}, z = {s['z']:.2f}; pooled {pooled.alpha_l_population:.4f} +- "
          f"{pooled.alpha_l_population_err:.4f}, halves {h['first']['alpha_l_population']:.4f} / "
          f"{h['second']['alpha_l_population']:.4f}; min overlap {pooled.min_neighbour_overlap:.3f}; wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    main([Path(sys.argv[1]), Path(sys.argv[2])], float(sys.argv[3]), Path(sys.argv[4]))
