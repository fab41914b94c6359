"""A fresh weighted draw from trained curve models: 10⁴ CNF samples each, with their exact log weights.

The recipe keeps samples of the first training seed only; this draws from the weights of every seed
(``runs/<target>-<interpolation>-s<seed>.safetensors`` beside its ``.json``, which gives the architecture and the
base scale) and writes ``OUT/<target>-<interpolation>-s<seed>.npz`` (``x``, ``log_w``), the input of
``reweighted_ed.py``. RK4 with 100 steps and the exact divergence, as the recipe's evaluation.

    PYTHONPATH=src python docs/results/fisher-rao/draw_weighted.py OUT runs/gmm40-linear-s1.safetensors [...]
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from boltzflow.eval.weights import ess_fraction
from boltzflow.experiments.fisher_rao_targets import get_target
from boltzflow.training.fisher_rao import build_model
from boltzflow.training.fisher_rao_fit import sample_curve

N, STEPS, SEED = 10_000, 100, 4242
torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for weights in map(Path, sys.argv[2:]):
    cell = json.loads(weights.with_suffix(".json").read_text())
    tc, target = cell["training"], get_target(cell["target"])
    model = build_model(cell["interpolation"], target.energy, target.dim, tc["base_scale"], tc["hidden"],
                        velocity_form=tc["velocity_form"], schedule=tc["schedule"], **target.scales)
    model.load_state_dict(load_file(weights))
    t0 = time.process_time()
    s = sample_curve(model, target.energy, target.dim, N, torch.Generator().manual_seed(SEED), steps=STEPS)
    np.savez(out / f"{weights.stem}.npz", x=s.x.detach().numpy(), log_w=s.log_w.detach().numpy())
    print(f"{weights.stem}: sigma0 {tc['base_scale']}, ESS {ess_fraction(s.log_w):.4f}, "
          f"{time.process_time() - t0:.0f} CPU-s", flush=True)
