"""F(φ) of the reweighted BG samples against the umbrella/MBAR reference on 5° bins, and where αL mass is missed.

Run from the repository root:
    .venv/bin/python docs/results/alanine-bg/phi_profile.py [SAMPLES_NPZ] [UMBRELLA_JSON]
(defaults: docs/results/alanine-bg/bg_samples.npz, (φ, ψ) in degrees and log_w of the run's 10^5 samples; the
committed umbrella run). A run's own DIR/samples/bg.npz (x, log_w) works too.
Both profiles are shifted to a minimum of 0 kT. Bins the BG never samples print as "-".
"""

import json
import sys

import numpy as np
import torch

from boltzflow.systems.alanine import phi_psi

samples = sys.argv[1] if len(sys.argv) > 1 else "docs/results/alanine-bg/bg_samples.npz"
umbrella = sys.argv[2] if len(sys.argv) > 2 else "docs/results/alanine-umbrella.json"
d = np.load(samples)
if "phi_psi_deg" in d.files:
    phi = d["phi_psi_deg"][:, 0].astype(np.float64)
else:
    phi = np.degrees(phi_psi(torch.as_tensor(d["x"], dtype=torch.float64).reshape(-1, 22, 3)).numpy()[:, 0])
w = np.exp(d["log_w"] - d["log_w"].max())
w /= w.sum()
ref = json.loads(open(umbrella).read())
grid, f_ref = np.asarray(ref["phi_deg"]), np.asarray(ref["free_energy_kt"])
edges = np.arange(-180.0, 180.1, 5.0)
centres = (edges[:-1] + edges[1:]) / 2
p, _ = np.histogram(phi, edges, weights=w)
n, _ = np.histogram(phi, edges)
with np.errstate(divide="ignore"):
    f_bg = -np.log(p)
f_bg -= f_bg[np.isfinite(f_bg)].min()
f_u = np.interp(centres, grid, f_ref)
f_u -= f_u.min()
print("phi_deg  flow_samples  F_bg_kT  F_umbrella_kT")
for c, k, a, b in zip(centres, n, f_bg, f_u, strict=True):
    print(f"{c:7.1f}  {k:12d}  {a if np.isfinite(a) else float('nan'):7.2f}  {b:7.2f}".replace("nan", "  -"))
p_u = np.exp(-f_u) / np.exp(-f_u).sum()
in_al = (centres > 0) & (centres < 120)
for lo, hi in ((0, 60), (60, 120)):
    sel = (centres > lo) & (centres < hi)
    print(f"phi in ({lo}, {hi}) deg: BG {p[sel].sum():.4f}, umbrella profile {p_u[sel].sum():.4f}")
print(f"alphaL total: BG {p[in_al].sum():.4f}, umbrella profile {p_u[in_al].sum():.4f}")
