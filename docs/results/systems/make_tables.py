"""Markdown tables of docs/results/systems.md from the runs' results.json (prints to stdout).

    PYTHONPATH=src python docs/results/systems/make_tables.py
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["gmm40", "manywell32", "dw4", "lj13"]
METHODS = {"nll": "NLL (data)", "reverse_kl": "reverse KL"}


def pm(d, digits=3, scale=1.0):
    """'mean ± sd' of a {mean, sd} dict."""
    if d is None:
        return "–"
    m, s = d["mean"] * scale, d["sd"] * scale
    big = max(abs(m), abs(s))
    if big != 0 and (big < 1e-2 or big >= 1e4):
        return f"{m:.{digits - 1}e} ± {s:.1e}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def load():
    runs = []
    for path in sorted(HERE.glob("*/results.json")):
        run = json.loads(path.read_text())
        if "method" in run:  # the baselines runner's; the peptide-* folders are cmt runs (peptide-rows.py)
            runs.append(run)
    return sorted(runs, key=lambda r: (ORDER.index(r["system"]) if r["system"] in ORDER else 99, r["method"]))


def _steps(r):
    """Optimiser steps of a run from its settings (for results written before ``training.steps`` existed)."""
    sc = r["baseline_scale"]
    if r["method"] == "reverse_kl":
        return sc["reverse_kl"]["epochs"] * sc["kl_steps"]
    n = sc["n_train"] if r["system"] not in ("dw4", "lj13") else 10_000
    n_fit = n - round(sc["nll"]["val_fraction"] * n)
    return sc["nll"]["epochs"] * -(-n_fit // sc["nll"]["batch_size"])


def _energy_summary(r):
    """Median u of the saved model samples and of the MCMC reference, and the share of samples above 100 kT."""
    import numpy as np
    import torch

    from boltzflow.io import load_npz
    from boltzflow.systems.registry import get_system

    system = get_system(r["system"])
    energy = system.energy().double()
    with torch.no_grad():
        u = energy(torch.as_tensor(load_npz(HERE / f"{r['system']}-{r['method']}" / "samples.npz")["x"]).double())
        u_ref = energy(torch.as_tensor(system.reference("mcmc").load()))
    share = float((u > 100).double().mean())
    return f"{np.median(u.numpy()):.3g} / {np.median(u_ref.numpy()):.3g} | {share:.3f} (n = {len(u)})"


def main():
    runs = load()
    out = ["| system | method | ESS fraction | log Z error (stderr) | NLL held-out (nats) | EUBO − log Z | "
           "training steps | wall (s) | CPU (s) | load avg (start → end) |", "|" + " --- |" * 10]
    for r in runs:
        e, t = r["evaluation"], r["timing"]
        d, g = e["draws"], e["generic"]
        lz = f"{pm(d['log_z']['error'])} ({d['log_z']['stderr']['mean']:.3f})" if "log_z" in d else "–"
        eubo = f"{g['eubo'] - g['log_z']['exact']:.3f}" if "log_z" in g else f"{g['eubo']:.3f} (EUBO)"
        steps = r["training"].get("steps") or _steps(r)
        out.append(f"| {r['system']} | {METHODS[r['method']]} | {pm(d['ess_fraction'])} | {lz} | "
                   f"{g['nll_reference']:.3f} | {eubo} | {steps} | {r['provenance']['wall_seconds']:.0f} | "
                   f"{t['cpu_seconds_total']:.0f} | {t['loadavg_start'][0]:.1f} → {t['loadavg_end'][0]:.1f} |")
    out += ["", "| system | method | modes covered raw / reweighted (of 40) | mode-weight TV raw / reweighted | "
            "max mode-weight error raw / reweighted | energy distance raw | reweighted | floor | n per set |",
            "|" + " --- |" * 9]
    for r in runs:
        d = r["evaluation"]["draws"]
        if "energy_distance" not in d:
            continue
        ed, mo = d["energy_distance"], d.get("modes")
        modes = (f"{pm(mo['raw']['n_covered'], 1)} / {pm(mo['reweighted']['n_covered'], 1)}",
                 f"{pm(mo['raw']['tv'])} / {pm(mo['reweighted']['tv'])}",
                 f"{pm(mo['raw']['max_abs_error'])} / {pm(mo['reweighted']['max_abs_error'])}") if mo else ("–",) * 3
        out.append(f"| {r['system']} | {METHODS[r['method']]} | {' | '.join(modes)} | {pm(ed['raw'])} | "
                   f"{pm(ed['reweighted'])} | {pm(ed['floor'])} | {int(ed['n']['mean'])} |")
    out += ["", "| system | method | deep-well share raw | reweighted | exact sample | modes visited per draw |",
            "|" + " --- |" * 6]
    for r in runs:
        w = r["evaluation"]["draws"].get("wells")
        if w is None:
            continue
        out.append(f"| {r['system']} | {METHODS[r['method']]} | {pm(w['deep_fraction'])} | "
                   f"{pm(w['deep_fraction_reweighted'])} | {pm(w['deep_fraction_exact'])} | "
                   f"{pm(w['n_modes_visited'], 0)} |")
    out += ["", "| system | method | distance W2 | floor | energy W2 (kT) | floor (kT) | n per set | "
            "median u: model / reference (kT) | share of model samples with u > 100 kT |", "|" + " --- |" * 9]
    for r in runs:
        w = r["evaluation"]["draws"].get("particle_w2")
        if w is None:
            continue
        out.append(f"| {r['system']} | {METHODS[r['method']]} | {pm(w['distance_w2'])} | "
                   f"{pm(w['distance_w2_floor'])} | "
                   f"{pm(w['energy_w2'])} | {pm(w['energy_w2_floor'])} | {int(w['n']['mean'])} | "
                   f"{_energy_summary(r)} |")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
