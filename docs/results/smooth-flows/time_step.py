"""Wall time of one full-scale smooth + FM training step (paper 004 eq. (5), ω_f = 0.001), one thread."""
import time

import torch

from boltzflow.experiments.smooth_flows import Config, build, prepare_data
from boltzflow.experiments.smooth_flows import SmoothData
from boltzflow.systems.registry import get_system
from boltzflow.training.energy_fit import pack_forces
from boltzflow.training.force_matching import eq5_objective

torch.set_num_threads(1)
cfg = Config()
system = get_system(cfg.system)
d = prepare_data(system, SmoothData(train_frames=1280, test_frames=10), 0)
info = {}
import sys

from boltzflow.training.losses import linlog_cut

u_flat = system.flat_energy()
grid = [(k, wk, wf) for k in ("smooth", "spline") for wk in (0.0, 0.1) for wf in (0.0, 0.001)]
if len(sys.argv) > 1:
    grid = [g for g in grid if g[1] == float(sys.argv[1])]
for kind, wk, wf in grid:
    torch.manual_seed(0)
    flow, _ = build(kind, cfg.flow, d["ic"], d["stats"], info)
    flow = flow.float()
    opt = torch.optim.Adam(flow.parameters(), lr=5e-4)
    loss_fn = eq5_objective(system.dim, wk, wf, lambda v: linlog_cut(u_flat(v)), 128)
    batch = pack_forces(*d["train"]).float()
    times = []
    for k in range(6):
        b = batch[128 * k: 128 * (k + 1)]
        t, c = time.perf_counter(), time.process_time()
        loss = loss_fn(flow, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append((time.perf_counter() - t, time.process_time() - c))
    n_par = sum(p.numel() for p in flow.parameters())
    wall = sorted(t[0] for t in times[1:])[2]
    cpu = sorted(t[1] for t in times[1:])[2]
    print(f"{kind} w_k={wk} w_f={wf}: params {n_par}, one step of batch 128, median of 5: wall {wall:.3f} s, cpu {cpu:.3f} s")
