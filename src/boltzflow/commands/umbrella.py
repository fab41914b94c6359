"""Free energy of a molecule along one backbone φ by umbrella sampling (OpenMM) and MBAR (pymbar), not plain MD.

SYSTEM is any registered molecule (alanine-dipeptide, peptide:AAA, ...); the restrained angle is φ of the
--residue-th residue with both backbone angles (0: the first), and its ψ is recorded beside it.
Harmonic restraints 0.5 k d(φ, φ0)^2 (periodic distance d) at --windows centres evenly spaced over the circle;
each window runs Langevin MD (the system's temperature, 1/ps, 2 fs, HBonds) from the end of its neighbour, and
records φ and ψ every ps. With --exchange the windows run side by side and swap their replicas after every ps
(replica-exchange umbrella sampling: a replica carries its ψ across the φ barrier). MBAR combines the windows
into the unbiased F(φ) and the αL population P(0° < φ < 120°) with its standard error (windows thinned to their
statistical inefficiency first). As a convergence check the analysis is repeated on the first and second half of
every window.

Examples:
  boltzflow umbrella alanine-dipeptide --out runs/umbrella
  boltzflow umbrella alanine-dipeptide --out runs/umbrella --ns-per-window 1   # extends a finished run
  boltzflow umbrella alanine-dipeptide --exchange --out runs/reus              # replica exchange between windows
  boltzflow umbrella peptide:AAA --residue 1 --out runs/umbrella-aaa             # φ of the second alanine

Output (DIR = --out): DIR/window-NN.npz (φ, ψ in rad, times, checkpoint), DIR/umbrella.json (run manifest),
DIR/results.json (F(φ) with errors, αL population ± error, both halves, settings, versions, wall time) and
DIR/free_energy.png. Rerunning the same command resumes at the first unfinished window.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from typing import Any

import numpy as np

from boltzflow.commands.md_options import int_at_least, non_negative_float, positive_float, writable_dir
from boltzflow.errors import BoltzflowError
from boltzflow.runtime import add_device_argument

HELP = "umbrella sampling along a backbone φ + MBAR: F(φ) and the αL population with an error bar"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("system", help="a registered molecule, e.g. alanine-dipeptide (φ = C(ACE)-N-CA-C)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (created, or resumed)")
    p.add_argument("--residue", type=int_at_least(0), default=0,
                   help="which residue's φ to restrain, counted from 0 over the residues with φ and ψ (default: 0)")
    p.add_argument("--windows", type=int_at_least(2), default=36, help="number of windows over 360° (default: 36)")
    p.add_argument("--ns-per-window", type=positive_float, default=0.5,
                   help="production per window, ns (default: 0.5)")
    p.add_argument("--k", type=positive_float, default=150.0, help="force constant, kJ/mol/rad^2 (default: 150)")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="temperature, kelvin (default: the system's)")
    p.add_argument("--equilibrate-ps", type=non_negative_float, default=20.0,
                   help="discarded MD per window, ps (default: 20)")
    p.add_argument("--solvent", choices=("obc", "vacuum"), default=None,
                   help="implicit solvent or vacuum variant of the system (default: the system's own)")
    p.add_argument("--exchange", action="store_true",
                   help="replica-exchange umbrella sampling: neighbouring windows swap replicas every ps, so slow "
                   "coordinates other than φ (ψ) mix across the barrier (default: independent windows)")
    p.add_argument("--platform", choices=("Reference", "CPU"), default="Reference", help="OpenMM platform")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="base seed of the window seeds (default: 0)")
    p.add_argument("--bins", type=int_at_least(4), default=72, help="bins of F(φ) over 360° (default: 72)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_argument(p, "openmm")


def run(args: argparse.Namespace) -> int:
    from boltzflow.commands.simulate import md_system
    from boltzflow.energies.openmm_system import kt_kj_per_mol
    from boltzflow.eval.free_energy import population_halves, umbrella_mbar
    from boltzflow.samplers.umbrella import UmbrellaConfig, load_windows, run_umbrella
    from boltzflow.samplers.umbrella_files import read_manifest

    out = writable_dir(args.out, "--out")
    system = md_system(args.system, args.solvent)
    dihedrals = system.backbone_dihedrals() if callable(getattr(system, "backbone_dihedrals", None)) else []
    if args.residue >= len(dihedrals):
        raise BoltzflowError(f"--residue {args.residue}: {args.system} has {len(dihedrals)} residue(s) with "
                             f"backbone φ and ψ ({', '.join(d[0] for d in dihedrals) or 'none'})")
    label, phi_atoms, psi_atoms = dihedrals[args.residue]
    molecule = system.molecule("HBonds")
    config = UmbrellaConfig(
        pdb_path=str(molecule.pdb_path),
        forcefield=tuple(molecule.forcefield),
        restrained_atoms=tuple(phi_atoms),
        extra_atoms=tuple(psi_atoms),
        n_windows=args.windows,
        ns_per_window=args.ns_per_window,
        k_kj_per_mol_rad2=args.k,
        temperature_kelvin=args.temperature or float(system.temperature_kelvin),
        equilibrate_ps=args.equilibrate_ps,
        seed=args.seed,
        platform=args.platform,
        exchange=args.exchange,
    )
    config.validate()
    command = shlex.join(["boltzflow", *sys.argv[1:]]) if "umbrella" in sys.argv else "boltzflow umbrella"
    done = run_umbrella(config, out, command=command, progress=not args.no_progress, molecule=molecule)
    start = time.perf_counter()
    windows = load_windows(out, config.frames_per_window)
    k_kt = config.k_kj_per_mol_rad2 / kt_kj_per_mol(config.temperature_kelvin)
    full = umbrella_mbar(windows.theta, windows.theta0, k_kt, n_bins=args.bins)
    halves = population_halves(windows.theta, windows.theta0, k_kt)
    info = {"system": args.system, "restrained": f"phi of {label}", "command": command}
    results = _results(config, full, halves, read_manifest(out), info, time.perf_counter() - start)
    from boltzflow.io import save_json
    from boltzflow.plots import save

    save_json(out / "results.json", results)
    save(_figure(full, kt_kj_per_mol(config.temperature_kelvin), f"{args.system} ({label})"), out / "free_energy.png")
    p, e = full.alpha_l_population, full.alpha_l_population_err
    print(
        f"{out}: {config.n_windows} windows x {config.ns_per_window:g} ns "
        f"({done.new_frames} new frames); "
        f"alphaL population (0 < phi < 120 deg) = {p:.4f} +- {e:.4f}; "
        f"halves {halves[0].alpha_l_population:.4f}, "
        f"{halves[1].alpha_l_population:.4f}"
    )
    if full.min_neighbour_overlap < 0.03:
        print(
            f"warning: neighbouring windows barely overlap (min overlap {full.min_neighbour_overlap:.2g}); "
            "use more --windows or a smaller --k"
        )
    return 0


def _finite(x: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), 6) for v in np.asarray(x)]


def _population(r: Any) -> dict[str, Any]:
    values = (r.alpha_l_population, r.alpha_l_population_err, r.delta_f_kt, r.delta_f_err)
    p, p_err, df, df_err = (float(v) if math.isfinite(v) else None for v in values)
    return {
        "alpha_l_population": p,
        "alpha_l_population_err": p_err,
        "delta_f_alpha_l_vs_rest_kt": df,
        "delta_f_alpha_l_vs_rest_err_kt": df_err,
        "n_samples": r.n_samples,
    }


def _results(config: Any, full: Any, halves: Any, manifest: dict, info: dict, analysis_s: float) -> dict:
    import openmm

    import boltzflow
    from boltzflow.eval.free_energy import import_pymbar

    return {
        "format": "boltzflow-umbrella-results-1",
        "command": info["command"],
        "system": info["system"],
        "restrained": info["restrained"],
        "method": "umbrella sampling along phi (harmonic, periodic distance) + MBAR (pymbar), windows "
        "thinned "
        "to their statistical inefficiency; errors are MBAR asymptotic standard errors",
        "settings": {**manifest["config"], "ns_per_window": config.ns_per_window},
        "alpha_l_region_deg": [0.0, 120.0],
        **_population(full),
        "halves": {"first": _population(halves[0]), "second": _population(halves[1])},
        "n_samples_total": full.n_samples_total,
        "statistical_inefficiency_ps": _finite(full.statistical_inefficiency * config.save_every_ps),
        "min_neighbour_overlap": full.min_neighbour_overlap,
        "window_centres_deg": _finite(np.degrees(np.sort(np.asarray(_centres(config))))),
        "phi_deg": _finite(np.degrees(full.phi_grid)),
        "free_energy_kt": _finite(full.free_energy_kt),
        "free_energy_err_kt": _finite(full.free_energy_err),
        "versions": {
            **manifest["versions"],
            "openmm": openmm.version.version,
            "pymbar": import_pymbar().__version__,
            "boltzflow": boltzflow.__version__,
        },
        "sampling_wall_time_s": manifest["wall_time_s"],
        "analysis_wall_time_s": analysis_s,
        "sessions": manifest["sessions"],
    }


def _centres(config: Any) -> np.ndarray:
    from boltzflow.samplers.umbrella import window_centers

    return window_centers(config.n_windows)


def _figure(r: Any, kt_kj: float, title: str) -> Any:
    """F(φ) in kT with ±2 s.e. (kJ/mol on a secondary axis), the αL region shaded; the legend sits below."""
    from matplotlib.figure import Figure

    from boltzflow.plots import legend_below

    fig = Figure(figsize=(6, 4.4), layout="constrained")
    ax = fig.add_subplot()
    phi, f, err = np.degrees(r.phi_grid), r.free_energy_kt, r.free_energy_err
    ax.axvspan(0, 120, color="tab:orange", alpha=0.12, label=r"$\alpha_L$ region (0° < φ < 120°)")
    ax.fill_between(phi, f - 2 * err, f + 2 * err, color="tab:blue", alpha=0.3, label="±2 s.e. (MBAR)")
    ax.plot(phi, f, color="tab:blue", label="umbrella + MBAR")
    ax.set_xlim(-180, 180)
    if np.isfinite(f).any():
        ax.set_ylim(-1.0, 1.15 * np.nanmax(f) + 1.0)
    ax.set_xticks(range(-180, 181, 60))
    ax.set_xlabel("φ (degrees)")
    ax.set_ylabel("F(φ) (kT)")
    ax.secondary_yaxis("right", functions=(lambda v: v * kt_kj, lambda v: v / kt_kj)).set_ylabel("F(φ) (kJ/mol)")
    p, e = r.alpha_l_population, r.alpha_l_population_err
    ax.set_title(f"{title}, αL population {p:.4f} ± {e:.4f}", fontsize=10)
    legend_below(fig, [ax])
    return fig
