"""ESS and αL populations of one training checkpoint on 2·10^4 flow samples (the mid-run checks in alanine-bg.md).

Run from the repository root, e.g.
    .venv/bin/python docs/results/alanine-bg/ess_checkpoint.py runs/alanine-bg-full/checkpoints/nll.pt best 20000
    .venv/bin/python docs/results/alanine-bg/ess_checkpoint.py runs/alanine-bg-full/checkpoints/bg.pt last 20000
"""

import sys

import torch

from boltzflow.energies.amber import AmberEnergy
from boltzflow.energies.openmm_system import alanine_dipeptide
from boltzflow.eval.weights import weight_summary
from boltzflow.experiments.alanine_bg import _alpha_l
from boltzflow.training.checkpoint import load_flow
from boltzflow.training.energy_fit import bg_samples

torch.set_num_threads(1)
energy = AmberEnergy.from_system(alanine_dipeptide(solvent="obc", constraints="none").system, 300.0)
flow, ckpt = load_flow(sys.argv[1], sys.argv[2])
print("epochs trained:", len(ckpt["history"]))
s = bg_samples(flow.double(), lambda x: energy(x.unflatten(-1, (22, 3))), int(sys.argv[3]),
               torch.Generator().manual_seed(5), chunk_size=5000)
in_al = _alpha_l(s.x)
w = torch.softmax(s.log_w, 0)
print(f"ESS {weight_summary(s.log_w).ess_fraction:.4f}, alphaL flow {float(in_al.mean()):.5f}, "
      f"alphaL reweighted {float((w * in_al).sum()):.3g}")
