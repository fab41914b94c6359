"""Fine-tune the shipped BG at a raised temperature and watch αL and the 300 K ESS (the negative result in
alanine-bg.md, "What did not work").

Loss per step: w_n NLL (256 training frames) + w_k reverse KL + w_i IW-NLL (kl_batch flow samples each) against
exp(-u/τ), Adam, gradient norm clipped at 100. After every block of STEPS steps at each τ of the list: Kish ESS at
300 K, flow and reweighted αL fractions and the ESS without αL samples, on 10^4 flow samples (seed 5).

Run from the repository root (one thread, about 0.5 s a step):
    .venv/bin/python docs/results/alanine-bg/tempered_finetune.py CHECKPOINT TAUS STEPS W_NLL,W_KL,W_IW KL_BATCH LR
The measured runs started from the checkpoint shipped before αL seeding (commit 928a306):
    git show 928a306:src/boltzflow/data/alanine-dipeptide-bg.pt > /tmp/bg-unseeded.pt
    ... /tmp/bg-unseeded.pt 2,2,2,1.5,1.5,1.2,1,1 80 0.3,0.4,0.3 256 1e-4
    ... /tmp/bg-unseeded.pt 2,2,2,2,2,2 80 0.0,0.3,0.7 256 1e-4
"""

import math
import sys
import time

import numpy as np
import torch

from boltzflow.energies.amber import AmberEnergy
from boltzflow.energies.openmm_system import alanine_dipeptide
from boltzflow.eval.weights import weight_summary
from boltzflow.experiments.alanine_bg import _alpha_l
from boltzflow.experiments.bg_data import load_bg_data, split_by_replica, to_internal, unconstrain_bonds
from boltzflow.flows.ic_flow import sibling_torsions
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.zmatrix import build_zmatrix
from boltzflow.training.checkpoint import load_flow
from boltzflow.training.energy_fit import bg_samples, mixed_objective
from boltzflow.training.losses import linlog_cut

torch.set_num_threads(1)
checkpoint = sys.argv[1]
taus = [float(t) for t in sys.argv[2].split(",")]
steps = int(sys.argv[3])
wn, wk, wi = map(float, sys.argv[4].split(","))
kl_batch, lr = int(sys.argv[5]), float(sys.argv[6])
mol = alanine_dipeptide(solvent="obc", constraints="none")
energy = AmberEnergy.from_system(mol.system, 300.0)
ic = InternalCoordinates(sibling_torsions(build_zmatrix(mol.topology)))
data = load_bg_data(None, 300.0)
train_idx, _ = split_by_replica(data["replica"], 0.1)
q, _ = unconstrain_bonds(to_internal(ic, data["xyz"][train_idx]), ic, mol.system, np.random.default_rng(0), 300.0)
x = ic.forward(q)[0].float()
u = lambda v: energy(v.unflatten(-1, (22, 3)))  # noqa: E731
flow = load_flow(checkpoint)[0].float().train()
opt = torch.optim.Adam(flow.parameters(), lr=lr)
torch.manual_seed(1)


def report(tag):
    f = flow.double().eval()
    s = bg_samples(f, u, 10_000, torch.Generator().manual_seed(5), chunk_size=5000)
    in_al = _alpha_l(s.x)
    w = torch.softmax(torch.nan_to_num(s.log_w, nan=-math.inf), 0)
    print(f"{tag} ESS {weight_summary(s.log_w).ess_fraction:.4f} aL_flow {float(in_al.mean()):.4f} "
          f"aL_rw {float((w * in_al).sum()):.4f} ESS_noaL {weight_summary(s.log_w[in_al == 0]).ess_fraction:.4f}",
          flush=True)
    flow.float().train()


report("start")
t0 = time.time()
for tau in taus:
    loss_fn = mixed_objective(lambda v: linlog_cut(u(v), high=1e3), wn, wk, 0.0, kl_batch, temperature_factor=tau,
                              dim=66, iw_weight=wi)
    for _ in range(steps):
        loss = loss_fn(flow, x[torch.randint(len(x), (256,))])
        opt.zero_grad()
        if torch.isfinite(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
            opt.step()
    report(f"tau {tau} after {steps} steps t={time.time() - t0:.0f}s")
