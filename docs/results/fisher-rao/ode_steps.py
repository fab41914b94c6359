"""Is the GMM-40 OU model's energy distance an ODE-integration error? The same 4000 base points pushed by RK4 with
100 and 400 steps through the trained field, and through the exact OU field, against an exact sample (Székely's D²,
as in the recipe's table); the floor is the same statistic between two exact samples.

    PYTHONPATH=src python docs/results/fisher-rao/ode_steps.py \
        docs/results/fisher-rao/run10k/runs/gmm40-gradient_flow-s0.safetensors
"""

import sys
import time

import torch
from safetensors.torch import load_file
from torchdiffeq import odeint

from boltzflow.eval.sample_metrics import energy_distance
from boltzflow.experiments.fisher_rao_eval import positions
from boltzflow.experiments.fisher_rao_targets import get_target
from boltzflow.training.fisher_rao import build_model
from boltzflow.training.fisher_rao_gmm import ExactOUPath

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
target, n = get_target("gmm40"), 4000
model = build_model("gradient_flow", target.energy, target.dim, 1.0, [64, 64, 64], velocity_form="gradient",
                    schedule="linear", **target.scales)  # the recipe's architecture
model.load_state_dict(load_file(sys.argv[1]))
z = torch.randn(n, 2, generator=torch.Generator().manual_seed(5))
ref_a = target.sample(n, torch.Generator().manual_seed(11))
ref_b = target.sample(n, torch.Generator().manual_seed(12))

print("floor (exact vs exact)", energy_distance(ref_b, ref_a), flush=True)
for steps in (100, 400):
    t0 = time.process_time()
    print(f"trained field, RK4 {steps} steps", energy_distance(positions(model, z, steps), ref_a),
          f"({time.process_time() - t0:.1f} CPU-s)", flush=True)
exact = ExactOUPath(target.mixture, 1.0)
for steps in (100, 400):
    grid = torch.linspace(0.0, 1.0, steps + 1)
    x = odeint(lambda s, x: exact.velocity(float(s), x), z, grid, method="rk4")[-1]
    print(f"exact OU field, RK4 {steps} steps", energy_distance(x, ref_a), flush=True)
