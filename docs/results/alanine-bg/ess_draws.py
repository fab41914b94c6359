"""ESS of an alanine BG checkpoint on independent draws of 10^5 samples, and what its spread comes from.

Run from the repository root:  .venv/bin/python docs/results/alanine-bg/ess_draws.py [CHECKPOINT]
(default: the shipped pretrained checkpoint; for a training run: runs/<run>/checkpoints/bg.pt, its best weights)
"""

import math
import sys

import torch

from boltzflow.energies.amber import AmberEnergy
from boltzflow.energies.openmm_system import alanine_dipeptide
from boltzflow.eval.weights import weight_summary
from boltzflow.systems.alanine import phi_psi
from boltzflow.training.checkpoint import load_flow
from boltzflow.training.energy_fit import bg_samples

torch.set_num_threads(1)
energy = AmberEnergy.from_system(alanine_dipeptide(solvent="obc", constraints="none").system, 300.0)
path = sys.argv[1] if len(sys.argv) > 1 else "alanine-dipeptide-bg"  # the shipped model, by name
flow = load_flow(path)[0].double()
for seed in (11, 101, 102, 103):  # 11: the draw of the reproduce run (seed + 11)
    s = bg_samples(flow, lambda x: energy(x.unflatten(-1, (22, 3))), 100_000, torch.Generator().manual_seed(seed),
                   chunk_size=5000)
    lw = s.log_w
    phi = phi_psi(s.x.reshape(-1, 22, 3))[:, 0]
    in_al = (phi > 0) & (phi < 2 * math.pi / 3)
    ess = weight_summary(lw).ess_fraction
    ess_wo_al = weight_summary(lw[~in_al]).ess_fraction
    w = torch.softmax(lw, 0)
    print(f"seed {seed}: ESS {ess:.3f}; flow samples in alphaL {int(in_al.sum())}, their weight share "
          f"{float(w[in_al].sum()):.4f}, largest single weight {float(w.max()):.4f}; ESS of the non-alphaL samples "
          f"{ess_wo_al:.3f}", flush=True)
